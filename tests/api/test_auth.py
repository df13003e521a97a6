"""API keys (401), per-key rate limits and the queue-depth cap (429 + Retry-After), health, models, metrics."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.service_fixtures import paused_queue, submit, upload, wait_for, wav_bytes
from workers.settings import get_settings


@pytest.fixture
def override(api_app: Any, service_settings: Any) -> Iterator[Any]:
    """``override(field=value, ...)``: settings seen by the routes for this test only."""

    def apply(**changes: Any) -> None:
        changed = service_settings.model_copy(update=changes)
        api_app.dependency_overrides[get_settings] = lambda: changed
        api_app.state.service.settings = changed

    yield apply
    api_app.dependency_overrides.clear()
    api_app.state.service.settings = service_settings


def test_api_keys_guard_every_v1_route(http: httpx.Client, override: Any) -> None:
    override(api_keys=["k-alice", "k-bob"])
    for method, path in [("GET", "/v1/jobs"), ("GET", "/v1/models"), ("POST", "/v1/jobs"),
                         ("POST", "/v1/artifacts"), ("GET", "/v1/jobs/x")]:
        response = http.request(method, path)
        assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer", path
        assert http.request(method, path, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert http.get("/healthz").status_code == 200 and http.get("/metrics").status_code == 200

    alice = {"Authorization": "Bearer k-alice"}
    audio_id = http.post("/v1/artifacts", content=wav_bytes(0.1), headers=alice).json()["id"]
    job = http.post("/v1/jobs", headers=alice, json={"kind": "audio.tokenize", "model": "slow-echo",
                                                     "inputs": {"audio": audio_id}, "params": {"seconds": 0}})
    assert job.status_code == 202
    job_id = job.json()["id"]
    assert http.get(f"/v1/jobs/{job_id}", headers=alice).status_code == 200
    # Bob cannot see (or cancel) Alice's job, and it is not in his list.
    bob = {"Authorization": "Bearer k-bob"}
    assert http.get(f"/v1/jobs/{job_id}", headers=bob).status_code == 404
    assert http.post(f"/v1/jobs/{job_id}/cancel", headers=bob).status_code == 404
    assert job_id not in [j["id"] for j in http.get("/v1/jobs", headers=bob).json()["data"]]


def test_rate_limit_per_key_answers_429_with_retry_after(http: httpx.Client, override: Any) -> None:
    override(api_keys=["k-fast", "k-other"], rate_limit_per_minute=6.0, rate_limit_burst=3)
    fast = {"Authorization": "Bearer k-fast"}
    codes = [http.get("/v1/jobs", headers=fast).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    limited = http.get("/v1/jobs", headers=fast)
    assert limited.status_code == 429 and 1 <= int(limited.headers["retry-after"]) <= 10
    assert http.get("/v1/jobs", headers={"Authorization": "Bearer k-other"}).status_code == 200  # per key


def test_queue_depth_cap_answers_429(http: httpx.Client, override: Any) -> None:
    audio_id = upload(http, wav_bytes(0.1))
    body = {"kind": "audio.tokenize", "model": "slow-echo", "inputs": {"audio": audio_id}, "params": {"seconds": 0}}
    with paused_queue("audio"):
        first = submit(http, body)
        assert 'mediaforge_queue_depth{family="audio"} 1.0' in http.get("/metrics").text
        override(max_queued_jobs=1, queue_full_retry_after_s=7)
        refused = http.post("/v1/jobs", json=body)
        assert refused.status_code == 429 and refused.headers["retry-after"] == "7"
        assert "queued" in refused.json()["detail"]
    assert wait_for(http, first["id"])["state"] == "succeeded"


def test_health_ready_models_and_metrics(http: httpx.Client) -> None:
    assert http.get("/healthz").json() == {"status": "ok"}
    ready = http.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert set(ready.json()["checks"]) == {"redis", "ray", "worker"}

    audio_id = upload(http, wav_bytes(0.2))
    wait_for(http, submit(http, {"kind": "audio.tokenize", "model": "wavtokenizer-tiny",
                                 "inputs": {"audio": audio_id}})["id"])
    models = {m["name"]: m for m in http.get("/v1/models").json()["data"]}
    tiny = models["wavtokenizer-tiny"]
    assert tiny["model_class"] == "WavTokenizer" and "audio.tokenize" in tiny["kinds"]
    assert len(tiny["loaded"]) == 1 and tiny["loaded"][0]["batches"] >= 1

    metrics = http.get("/metrics").text
    assert 'mediaforge_jobs_total{kind="audio.tokenize",state="succeeded"}' in metrics
    assert 'mediaforge_queue_depth{family="audio"}' in metrics
    for name in ("queue_wait_seconds", "run_seconds"):
        assert f'mediaforge_{name}_bucket{{kind="audio.tokenize",le="+Inf"}}' in metrics
    assert 'mediaforge_batch_size_count{model="wavtokenizer-tiny"}' in metrics
    assert http.get("/openapi.json").json()["paths"]["/v1/jobs"]["post"]
