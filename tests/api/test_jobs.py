"""REST round trips through the real service: upload, submit, wait, download; idempotency; list; cancel; SSE;
job records with their output files and ISO times; the OpenAPI document's upload body and 405s' ``Allow``."""

from __future__ import annotations

import io
import json
from datetime import datetime
from typing import Any

import httpx
import numpy as np
import pytest
import soundfile as sf
from safetensors.numpy import load

from tests.service_fixtures import paused_queue, submit, upload, wait_for, wav_bytes


def test_tokenize_then_detokenize_round_trip(http: httpx.Client) -> None:
    audio_id = upload(http, wav_bytes(1.0))
    job = submit(http, {"kind": "audio.tokenize", "model": "wavtokenizer-tiny", "inputs": {"audio": audio_id}})
    assert job["state"] == "queued" and job["inputs"] == {"audio": audio_id}
    done = wait_for(http, job["id"])
    assert done["state"] == "succeeded", done["error"]
    assert done["progress"] == 1.0 and done["attempts"] == 1
    tokens = http.get(f"/v1/artifacts/{done['outputs']['tokens']}")
    assert tokens.status_code == 200 and tokens.headers["content-type"] == "application/x-safetensors"
    codes = load(tokens.content)["codes"]
    assert codes.shape == (1, 1, 75) and codes.min() >= 0 and codes.max() < 4096

    back = wait_for(http, submit(http, {"kind": "audio.detokenize", "model": "wavtokenizer-tiny",
                                        "inputs": {"tokens": done["outputs"]["tokens"]}})["id"])
    assert back["state"] == "succeeded", back["error"]
    wav = http.get(f"/v1/artifacts/{back['outputs']['audio']}")
    samples, rate = sf.read(io.BytesIO(wav.content))
    assert rate == 24000 and samples.shape == (24000,) and np.isfinite(samples).all()


def test_same_input_gives_the_same_output_artifact(http: httpx.Client) -> None:
    audio_id = upload(http, wav_bytes(0.5, freq=330.0))
    body = {"kind": "audio.tokenize", "model": "wavtokenizer-tiny", "inputs": {"audio": audio_id}}
    first, second = (wait_for(http, submit(http, body)["id"]) for _ in range(2))
    assert first["id"] != second["id"]
    assert first["outputs"] == second["outputs"]  # deterministic pipeline + content-addressed artifacts


def test_idempotency_key_returns_the_same_job(http: httpx.Client) -> None:
    audio_id = upload(http, wav_bytes(0.3))
    body = {"kind": "audio.tokenize", "model": "slow-echo", "inputs": {"audio": audio_id},
            "params": {"seconds": 0.1}}
    first = http.post("/v1/jobs", json=body, headers={"Idempotency-Key": "order-42"})
    again = http.post("/v1/jobs", json=body, headers={"Idempotency-Key": "order-42"})
    assert first.status_code == again.status_code == 202
    assert again.json()["id"] == first.json()["id"] and again.headers["idempotent-replayed"] == "true"
    other = http.post("/v1/jobs", json={**body, "params": {"seconds": 0.2}}, headers={"Idempotency-Key": "order-42"})
    assert other.status_code == 409 and "Idempotency-Key" in other.json()["detail"]
    assert wait_for(http, first.json()["id"])["state"] == "succeeded"


def test_unknown_job_is_404(http: httpx.Client) -> None:
    for path in ("/v1/jobs/nope", "/v1/jobs/nope/events"):
        response = http.get(path)
        assert response.status_code == 404 and "nope" in response.json()["detail"]
    assert http.post("/v1/jobs/nope/cancel").status_code == 404


def test_list_filters_and_cursor(http: httpx.Client) -> None:
    audio_id = upload(http, wav_bytes(0.2))
    ids = [submit(http, {"kind": "audio.tokenize", "model": "slow-echo", "inputs": {"audio": audio_id},
                         "params": {"seconds": 0, "steps": 1}, "priority": "batch"})["id"] for _ in range(3)]
    for job_id in ids:
        wait_for(http, job_id)
    seen, cursor = [], None
    for _ in range(20):
        params = {"kind": "audio.tokenize", "state": "succeeded", "limit": 2} | ({"cursor": cursor} if cursor else {})
        page = http.get("/v1/jobs", params=params).json()
        assert page["count"] == len(page["data"]) <= 2
        assert all(j["state"] == "succeeded" and j["kind"] == "audio.tokenize" for j in page["data"])
        seen += [j["id"] for j in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert set(ids) <= set(seen) and len(seen) == len(set(seen))
    created = [j["created_at"] for j in http.get("/v1/jobs", params={"limit": 50}).json()["data"]]
    assert created == sorted(created, reverse=True)
    assert http.get("/v1/jobs", params={"state": "bogus"}).status_code == 422


def test_cancel_queued_job_at_once(http: httpx.Client) -> None:
    audio_id = upload(http, wav_bytes(0.2))
    with paused_queue("audio"):
        job = submit(http, {"kind": "audio.tokenize", "model": "slow-echo", "inputs": {"audio": audio_id}})
        cancelled = http.post(f"/v1/jobs/{job['id']}/cancel").json()
        assert cancelled["state"] == "cancelled" and cancelled["finished_at"] is not None
    # The message is still delivered once the queue is consumed again; the worker must leave the job cancelled.
    follow = submit(http, {"kind": "audio.tokenize", "model": "slow-echo", "inputs": {"audio": audio_id},
                           "params": {"seconds": 0}})
    assert wait_for(http, follow["id"])["state"] == "succeeded"
    final = http.get(f"/v1/jobs/{job['id']}").json()
    assert final["state"] == "cancelled" and final["attempts"] == 0 and final["outputs"] == {}


def test_cancel_running_job_stops_at_next_progress_point(http: httpx.Client) -> None:
    audio_id = upload(http, wav_bytes(0.2))
    job = submit(http, {"kind": "audio.tokenize", "model": "slow-echo", "inputs": {"audio": audio_id},
                        "params": {"seconds": 20, "steps": 200}})
    wait_for(http, job["id"], states=("running",))
    assert http.post(f"/v1/jobs/{job['id']}/cancel").json()["state"] == "running"
    final = wait_for(http, job["id"], timeout_s=15)  # far sooner than the 20 s the job would take
    assert final["state"] == "cancelled" and final["outputs"] == {}
    assert final["finished_at"] - final["started_at"] < 15


def test_events_stream_progress_then_final_state(http: httpx.Client) -> None:
    audio_id = upload(http, wav_bytes(0.2))
    job = submit(http, {"kind": "audio.tokenize", "model": "slow-echo", "inputs": {"audio": audio_id},
                        "params": {"seconds": 2.0, "steps": 5}})
    events = []
    with http.stream("GET", f"/v1/jobs/{job['id']}/events") as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        event = None
        for line in response.iter_lines():
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                events.append((event, json.loads(line.split(":", 1)[1])))
    names = [e for e, _ in events]
    assert names[-1] == "final" and names.count("final") == 1
    assert events[-1][1]["state"] == "succeeded"
    running = [d["progress"] for e, d in events if e == "progress" and d["state"] == "running"]
    assert len(running) >= 2 and running == sorted(running)


@pytest.mark.parametrize("priority", ["interactive", "batch"])
def test_priorities_are_accepted_and_recorded(http: httpx.Client, priority: str) -> None:
    audio_id = upload(http, wav_bytes(0.2))
    job = submit(http, {"kind": "audio.tokenize", "model": "slow-echo", "inputs": {"audio": audio_id},
                        "params": {"seconds": 0}, "priority": priority})
    assert wait_for(http, job["id"])["priority"] == priority


def _events(http: httpx.Client, job_id: str) -> list[tuple[str, dict[str, Any]]]:
    events, event = [], ""
    with http.stream("GET", f"/v1/jobs/{job_id}/events") as response:
        for line in response.iter_lines():
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                events.append((event, json.loads(line.split(":", 1)[1])))
    return events


def test_records_name_output_files_and_iso_times(http: httpx.Client) -> None:
    audio_id = upload(http, wav_bytes(0.3, freq=440.0))
    queued = submit(http, {"kind": "audio.tokenize", "model": "wavtokenizer-tiny", "inputs": {"audio": audio_id}})
    assert queued["output_files"] == {} and queued["started_at_iso"] is None and queued["finished_at_iso"] is None
    done = wait_for(http, queued["id"])
    tokens_id = done["outputs"]["tokens"]
    size = len(http.get(f"/v1/artifacts/{tokens_id}").content)
    assert done["output_files"] == {"tokens": {"id": tokens_id, "url": f"/v1/artifacts/{tokens_id}",
                                               "media_type": "application/x-safetensors", "size": size}}
    for name in ("created_at", "started_at", "finished_at"):
        iso = done[f"{name}_iso"]
        assert iso.endswith("Z") and abs(datetime.fromisoformat(iso).timestamp() - done[name]) < 1e-3
    listed = next(j for j in http.get("/v1/jobs", params={"limit": 50}).json()["data"] if j["id"] == done["id"])
    assert listed == done
    assert _events(http, done["id"]) == [("final", done)]


def test_cancel_of_a_finished_job_is_409_and_changes_nothing(http: httpx.Client) -> None:
    audio_id = upload(http, wav_bytes(0.2))
    job = wait_for(http, submit(http, {"kind": "audio.tokenize", "model": "slow-echo", "inputs": {"audio": audio_id},
                                       "params": {"seconds": 0}})["id"])
    refused = http.post(f"/v1/jobs/{job['id']}/cancel")
    assert refused.status_code == 409 and refused.json()["detail"] == f"job {job['id']} is already succeeded"
    assert http.get(f"/v1/jobs/{job['id']}").json() == job
    with paused_queue("audio"):
        queued = submit(http, {"kind": "audio.tokenize", "model": "slow-echo", "inputs": {"audio": audio_id}})
        assert http.post(f"/v1/jobs/{queued['id']}/cancel").status_code == 200
        again = http.post(f"/v1/jobs/{queued['id']}/cancel")
        assert again.status_code == 409 and again.json()["detail"].endswith("is already cancelled")


def test_openapi_declares_the_upload_body_and_error_bodies(http: httpx.Client) -> None:
    doc = http.get("/openapi.json").json()
    upload_op = doc["paths"]["/v1/artifacts"]["post"]
    content = upload_op["requestBody"]["content"]
    assert upload_op["requestBody"]["required"] is True
    assert content["application/octet-stream"]["schema"]["format"] == "binary"
    assert content["multipart/form-data"]["schema"]["required"] == ["file"]
    assert {"400", "401", "413", "422", "429"} <= set(upload_op["responses"])
    create = doc["paths"]["/v1/jobs"]["post"]["responses"]
    assert {"202", "401", "409", "413", "422", "429", "503"} <= set(create)
    assert create["422"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorPublic"}
    assert "HTTPValidationError" not in doc["components"]["schemas"]  # the API sends {"detail": str} only
    assert "409" in doc["paths"]["/v1/jobs/{job_id}/cancel"]["post"]["responses"]


def test_405_names_every_method_of_the_path(http: httpx.Client) -> None:
    for method, path, allow in (("DELETE", "/v1/jobs", "GET, HEAD, POST"), ("PUT", "/v1/jobs/x", "GET, HEAD"),
                                ("OPTIONS", "/v1/artifacts", "POST"), ("GET", "/v1/jobs/x/cancel", "POST")):
        response = http.request(method, path)
        assert response.status_code == 405 and response.headers["allow"] == allow, (method, path)
