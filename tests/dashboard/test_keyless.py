"""The dashboard of a service without API keys (no ``MEDIAFORGE_API_KEYS``): it never asks for a key, every call
goes without one, and a job another client submits shows up and finishes live."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.dashboard.conftest import open_page, serve
from tests.service_fixtures import submit, wav_bytes

JOB_S = 180_000  # ms: as in test_dashboard.py


@pytest.fixture(scope="module")
def keyless_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with serve(tmp_path_factory.mktemp("keyless"), api_keys="") as url:
        yield url


def test_the_page_works_without_asking_a_key(browser: Any, keyless_url: str) -> None:
    page, console = open_page(browser, keyless_url, key=None)
    requests: list[Any] = []
    page.on("request", lambda request: requests.append(request))
    page.goto(f"{keyless_url}/#/jobs")
    page.locator("#jobs[data-live]").wait_for()
    with httpx.Client(base_url=keyless_url, timeout=60) as api:  # another client, no key either
        audio = api.post("/v1/artifacts", params={"filename": "a.wav"}, content=wav_bytes(0.2)).json()["id"]
        job = submit(api, {"kind": "audio.tokenize", "model": "slow-echo", "inputs": {"audio": audio},
                           "params": {"seconds": 0.2, "steps": 2}})
    page.locator(f'tr[data-job="{job["id"]}"] [data-state="succeeded"]').wait_for(timeout=JOB_S)
    page.click(f'tr[data-job="{job["id"]}"] a')
    page.locator('#outputs [data-artifact="tokens"]').wait_for()
    page.click("header nav >> text=Models")
    page.locator("#models").wait_for()
    assert not page.locator("#auth").is_visible()
    assert page.evaluate("sessionStorage.getItem('mediaforge.apiKey')") is None
    assert requests and not [r.url for r in requests if r.headers.get("authorization")]
    console.check()  # no 401 anywhere
    page.context.close()
