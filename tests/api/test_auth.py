"""API keys (401), per-key rate limits and the queue-depth cap (429 + Retry-After), health, models, metrics;
artifacts per owner, /metrics behind a key, failed authentication and the keyless limit per client address.

Client addresses are told apart with ``X-Forwarded-For``: uvicorn trusts it from 127.0.0.1, as from a local proxy.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
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
    assert http.get("/healthz").status_code == 200 and http.get("/metrics").status_code == 401

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
    assert tiny["loaded"][0]["name"] == "host:wavtokenizer-tiny:0"  # one replica on the one node (embedded)
    assert tiny["batching"] == {"max_batch": 16, "max_wait_ms": 0.0} and tiny["needs"]["gpu"] == "preferred"

    metrics = http.get("/metrics").text
    assert 'mediaforge_jobs_total{kind="audio.tokenize",state="succeeded"}' in metrics
    assert 'mediaforge_queue_depth{family="audio"}' in metrics
    for name in ("queue_wait_seconds", "run_seconds"):
        assert f'mediaforge_{name}_bucket{{kind="audio.tokenize",le="+Inf"}}' in metrics
    assert 'mediaforge_batch_size_count{model="wavtokenizer-tiny"}' in metrics
    assert http.get("/openapi.json").json()["paths"]["/v1/jobs"]["post"]


def _addr(address: str, key: str | None = None) -> dict[str, str]:
    return {"X-Forwarded-For": address} | ({"Authorization": f"Bearer {key}"} if key else {})


def test_artifacts_belong_to_their_owner(http: httpx.Client, override: Any) -> None:
    override(api_keys=["k-one", "k-two"])
    one, two = {"Authorization": "Bearer k-one"}, {"Authorization": "Bearer k-two"}
    clip = wav_bytes(0.1, freq=330.0)
    audio_id = http.post("/v1/artifacts", content=clip, headers=one).json()["id"]
    job = http.post("/v1/jobs", headers=one, json={"kind": "audio.tokenize", "model": "slow-echo",
                                                   "inputs": {"audio": audio_id}, "params": {"seconds": 0}})
    with httpx.Client(base_url=http.base_url, headers=one, timeout=60) as client_one:
        tokens_id = wait_for(client_one, job.json()["id"])["outputs"]["tokens"]

    for artifact_id in (audio_id, tokens_id):  # the upload and the job's output: key one's, not key two's
        assert http.get(f"/v1/artifacts/{artifact_id}", headers=one).status_code == 200
        refused = http.get(f"/v1/artifacts/{artifact_id}", headers=two)
        assert refused.status_code == 404 and refused.json()["detail"] == f"artifact {artifact_id} not found"
    # Nor can key two hand key one's artifacts to a job of its own; key one chains its output into the next job.
    stolen = http.post("/v1/jobs", headers=two, json={"kind": "audio.tokenize", "model": "slow-echo",
                                                      "inputs": {"audio": audio_id}, "params": {"seconds": 0}})
    assert stolen.status_code == 422 and "no artifact" in stolen.json()["detail"]
    detokenize = {"kind": "audio.detokenize", "model": "wavtokenizer-tiny", "inputs": {"tokens": tokens_id}}
    assert http.post("/v1/jobs", headers=two, json=detokenize).status_code == 422
    assert http.post("/v1/jobs", headers=one, json=detokenize).status_code == 202
    # The same bytes uploaded by key two are key two's too (one content-addressed blob, two owners).
    assert http.post("/v1/artifacts", files={"file": ("mine.wav", clip)}, headers=two).json()["id"] == audio_id
    assert http.get(f"/v1/artifacts/{audio_id}", headers=two).status_code == 200


def test_metrics_need_a_key_once_keys_are_set(http: httpx.Client, override: Any) -> None:
    override(api_keys=["k-app"], metrics_key="k-scraper")
    address = "198.51.100.20"
    assert http.get("/metrics", headers=_addr(address)).status_code == 401
    assert http.get("/metrics", headers=_addr(address, "k-wrong")).status_code == 401
    for key in ("k-app", "k-scraper"):
        response = http.get("/metrics", headers=_addr(address, key))
        assert response.status_code == 200 and "mediaforge_jobs_total" in response.text
    assert http.get("/v1/jobs", headers=_addr(address, "k-scraper")).status_code == 401  # /metrics only
    override(api_keys=[], metrics_key="k-scraper")
    assert http.get("/metrics", headers=_addr(address)).status_code == 401
    override(api_keys=[], metrics_key=None)
    assert http.get("/metrics", headers=_addr(address)).status_code == 200


def test_failed_authentication_is_throttled_per_address(http: httpx.Client, override: Any) -> None:
    override(api_keys=["k-real"], auth_failures_per_minute=6.0, auth_failure_burst=5)
    guesser, other = "203.0.113.7", "203.0.113.8"
    codes = [http.get("/v1/jobs", headers=_addr(guesser, f"k-guess-{i}")).status_code for i in range(150)]
    assert codes[:5] == [401] * 5 and codes[5:] == [429] * 145
    refused = http.get("/v1/jobs", headers=_addr(guesser, "k-real"))  # guessing right does not get through either
    assert refused.status_code == 429 and 1 <= int(refused.headers["retry-after"]) <= 10
    assert "failed authentications" in refused.json()["detail"]
    assert http.get("/v1/jobs", headers=_addr(guesser)).status_code == 401  # no key sent: nothing guessed
    assert http.get("/v1/jobs", headers=_addr(other, "k-wrong")).status_code == 401  # another address
    assert http.get("/v1/jobs", headers=_addr(other, "k-real")).status_code == 200


def test_keyless_limit_is_per_client_address(http: httpx.Client, override: Any) -> None:
    override(anonymous_rate_limit_per_minute=6.0, anonymous_rate_limit_burst=3)
    busy, quiet = "192.0.2.10", "192.0.2.11"
    assert [http.get("/v1/jobs", headers=_addr(busy)).status_code for _ in range(4)] == [200, 200, 200, 429]
    limited = http.get("/v1/jobs", headers=_addr(busy))
    assert limited.status_code == 429 and "client address" in limited.json()["detail"]
    assert http.get("/v1/jobs", headers=_addr(quiet)).status_code == 200


def test_keyless_default_does_not_throttle_32_clients(api_url: str) -> None:
    """32 clients on one host, each polling as fast as it can: the old default (one 10 requests/s bucket for
    everyone) refused most of these; the per-address default refuses none."""

    def poll(_: int) -> list[int]:
        with httpx.Client(base_url=api_url, headers=_addr("192.0.2.50"), timeout=60) as client:
            return [client.get("/v1/jobs", params={"limit": 1}).status_code for _ in range(15)]

    with ThreadPoolExecutor(max_workers=32) as pool:
        codes = [code for client_codes in pool.map(poll, range(32)) for code in client_codes]
    assert codes == [200] * 32 * 15
