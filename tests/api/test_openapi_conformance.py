"""The OpenAPI document says what the server does: schemathesis, every check, against the real service.

Every operation in ``/openapi.json`` is run through schemathesis' four phases (examples, coverage, fuzzing and
stateful sequences) with all of its checks: status codes, content types, headers and bodies as documented,
schema-valid requests accepted and invalid ones refused, 405 with the right ``Allow``, and (with API keys set,
the document then names the bearer key of each guarded operation) requests without the key refused. Examples
are bounded and the seed fixed, so each run is repeatable and takes about 20 s on two cores.
"""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.service_fixtures import submit, upload, wait_for, wav_bytes
from workers.settings import get_settings

MAX_EXAMPLES = 25
SEED = 20261204
KEY = "k-conformance"

CONFIG = """\
[parameters]
"path.job_id" = "{job_id}"
"path.artifact_id" = "{artifact_id}"
"path.kind" = "audio.tokenize"

# A job's (and each workflow step's) model, inputs and params are checked against the zoo, the caller's
# artifacts and the kind's params schema: a body that only matches the JSON schema (random model names, artifact
# ids never uploaded) is refused with a 422 naming the problem, which is what the API documents for it.
[[operations]]
include-name = ["POST /v1/jobs", "POST /v1/workflows"]
checks.positive_data_acceptance.expected-statuses = ["2XX", 401, 409, 422, 429]
"""


@pytest.fixture(params=["keyless", "keyed"])
def caller(request: pytest.FixtureRequest, api_app: Any, service_settings: Any) -> Iterator[dict[str, str]]:
    """The caller's headers: none with no keys set (the default), or a bearer key with ``api_keys`` set (failed
    authentications unthrottled: schemathesis sends many on purpose, and 429s would hide what it checks)."""
    if request.param == "keyless":
        yield {}
        return
    keyed = service_settings.model_copy(update={"api_keys": [KEY], "auth_failures_per_minute": 1e6,
                                                "auth_failure_burst": 1_000_000})
    api_app.dependency_overrides[get_settings] = lambda: keyed
    api_app.state.service.settings = keyed
    yield {"Authorization": f"Bearer {KEY}"}
    api_app.dependency_overrides.clear()
    api_app.state.service.settings = service_settings


@pytest.fixture
def known_ids(api_url: str, caller: dict[str, str]) -> dict[str, str]:
    """A finished job of the caller's and its input, so that the path-parameter operations reach real resources
    (200, 409) and their response bodies are checked, not only their 404s."""
    with httpx.Client(base_url=api_url, timeout=60, headers=caller) as http:
        audio_id = upload(http, wav_bytes(0.2))
        job = submit(http, {"kind": "audio.tokenize", "model": "wavtokenizer-tiny", "inputs": {"audio": audio_id}})
        assert wait_for(http, job["id"])["state"] == "succeeded"
        # The first /v1/kinds imports every pipeline module (seconds on a busy machine): not what is measured.
        assert http.get("/v1/kinds").status_code == 200
    return {"job_id": job["id"], "artifact_id": audio_id}


def _operations(api_url: str) -> set[str]:
    paths: dict[str, Any] = httpx.get(f"{api_url}/openapi.json").json()["paths"]
    return {f"{method.upper()} {path}" for path, operations in paths.items() for method in operations}


def test_openapi_document_matches_the_server(api_url: str, caller: dict[str, str], known_ids: dict[str, str],
                                             tmp_path: Path) -> None:
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG.format(**known_ids))
    junit = tmp_path / "junit.xml"
    command = [sys.executable, "-m", "schemathesis.cli", "--no-color", "--config-file", str(config), "run",
               f"{api_url}/openapi.json", "--checks", "all", "--max-examples", str(MAX_EXAMPLES), "--seed",
               str(SEED), "--no-shrink", "--workers", "1", "--request-timeout", "30", "--report", "junit",
               "--report-junit-path", str(junit), *[f"--header={k}: {v}" for k, v in caller.items()]]
    run = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-20000:] + run.stderr[-4000:]
    tested = {case.get("name") for case in ET.parse(junit).iter("testcase")}  # and "Stateful tests"
    assert _operations(api_url) <= tested, json.dumps(sorted(_operations(api_url) - tested))
    security = httpx.get(f"{api_url}/openapi.json").json()["paths"]["/v1/jobs"]["get"].get("security")
    assert security == ([{"bearer": []}] if caller else None)
