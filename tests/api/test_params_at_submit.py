"""Params through the real service (API -> Redis -> Celery -> Ray): what the schema refuses is a 422 at submit,
naming the field and its range, and what it accepts is stored so that the model host accepts it too."""

from __future__ import annotations

import io

import httpx
import pytest
from PIL import Image

from tests.service_fixtures import submit, wait_for


def test_xar_class_alias_is_stored_by_its_name_and_the_job_runs(http: httpx.Client) -> None:
    job = submit(http, {"kind": "image.generate", "model": "xar-tiny",
                        "params": {"class": 0, "num_inference_steps": 2}})
    assert job["params"]["class"] == 0 and "class_" not in job["params"]
    done = wait_for(http, job["id"], timeout_s=180)
    assert done["state"] == "succeeded", done["error"]
    assert done["params"] == job["params"]
    png = http.get(f"/v1/artifacts/{done['outputs']['image_000']}")
    assert png.status_code == 200 and Image.open(io.BytesIO(png.content)).mode == "RGB"


@pytest.mark.parametrize("value", ["Infinity", "-Infinity", "NaN", "1e308"])
def test_speech_max_seconds_out_of_range_is_422_naming_the_field_and_range(http: httpx.Client, value: str) -> None:
    # The body is written out: json.dumps would write the same tokens, but this says what the client sends.
    body = ('{"kind": "speech.generate", "model": "flow-omni-tiny", '
            f'"params": {{"text": "a red ball", "max_seconds": {value}}}}}')
    before = _speech_job_ids(http)
    response = http.post("/v1/jobs", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert detail.startswith("invalid params for speech.generate: max_seconds: "), detail
    assert "(allowed: 0 < max_seconds <= 60)" in detail
    assert _speech_job_ids(http) == before  # refused at the door: no job was queued


def _speech_job_ids(http: httpx.Client) -> list[str]:
    response = http.get("/v1/jobs", params={"kind": "speech.generate", "limit": 500})
    assert response.status_code == 200, response.text
    return [job["id"] for job in response.json()["data"]]
