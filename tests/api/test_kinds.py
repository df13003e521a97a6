"""``GET /v1/kinds`` and ``mediaforge kinds`` through the real service: every job kind with its inputs, its params'
JSON schema (by alias, with defaults and limits) and the zoo models that serve it; the CLI prints the same."""

from __future__ import annotations

import json

import httpx
from typer.testing import CliRunner

from api.cli import app
from pipelines.registry import JOB_KINDS


def _by_kind(http: httpx.Client) -> dict[str, dict]:
    response = http.get("/v1/kinds")
    assert response.status_code == 200
    return {k["kind"]: k for k in response.json()["kinds"]}


def test_every_kind_with_its_inputs_params_and_models(http: httpx.Client) -> None:
    kinds = _by_kind(http)
    assert set(kinds) == set(JOB_KINDS)
    tokenize = kinds["audio.tokenize"]
    assert tokenize["family"] == "audio" and tokenize["inputs"] == {"audio": "audio"}
    assert {"wavtokenizer-tiny", "slow-echo"} <= set(tokenize["models"])
    assert tokenize["params_schema"].get("properties", {}) == {}  # WavTokenizer's, the first registered
    seconds = tokenize["params_schema_by_model"]["slow-echo"]["properties"]["seconds"]
    assert (seconds["default"], seconds["minimum"], seconds["maximum"]) == (1.0, 0.0, 60.0)
    assert kinds["audio.detokenize"]["inputs"] == {"tokens": "tokens"}


def test_models_of_one_kind_keep_their_own_params(http: httpx.Client) -> None:
    generate = _by_kind(http)["image.generate"]
    assert generate["inputs"] == {} and {"sd-shapes-tiny", "xar-tiny"} <= set(generate["models"])
    by_model = generate["params_schema_by_model"]
    assert "prompt" in by_model["sd-shapes-tiny"]["properties"]
    assert "class" in by_model["xar-tiny"]["properties"]  # by alias: what a job's params say
    assert "prompt" not in by_model["xar-tiny"]["properties"]


def test_one_kind_and_unknown_kind(http: httpx.Client) -> None:
    one = http.get("/v1/kinds/speech.generate")
    assert one.status_code == 200 and one.json() == _by_kind(http)["speech.generate"]
    assert "text" in one.json()["params_schema"]["properties"]
    missing = http.get("/v1/kinds/audio.teleport")
    assert missing.status_code == 404 and missing.json()["detail"] == "job kind audio.teleport not found"


def test_cli_prints_what_the_api_answers(http: httpx.Client) -> None:
    runner = CliRunner()
    listed = runner.invoke(app, ["kinds", "--json"])
    assert listed.exit_code == 0, listed.output
    assert json.loads(listed.output) == http.get("/v1/kinds").json()
    one = runner.invoke(app, ["kinds", "audio.tokenize", "--json"])
    assert json.loads(one.output) == http.get("/v1/kinds/audio.tokenize").json()

    table = runner.invoke(app, ["kinds", "audio.tokenize"], env={"COLUMNS": "200"})
    assert table.exit_code == 0, table.output
    assert "wavtokenizer-tiny" in table.output and "audio.tokenize params on slow-echo" in table.output
    assert ">= 0.0, <= 60.0" in table.output  # slow-echo's seconds

    unknown = runner.invoke(app, ["kinds", "audio.teleport"])
    assert unknown.exit_code == 2 and "unknown job kind 'audio.teleport'" in unknown.output
