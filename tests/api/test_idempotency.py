"""Idempotency-Key under races through the real server (issue 25): N parallel POSTs with one key make one job,
the others replay it; the same key with another body is a 409."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from tests.service_fixtures import upload, wait_for, wav_bytes

PARALLEL = 10


def _post_together(http: httpx.Client, bodies: list[dict[str, Any]], key: str) -> list[httpx.Response]:
    """POST every body at once (threads released by one barrier), all with ``key``."""
    barrier = threading.Barrier(len(bodies))

    def post(body: dict[str, Any]) -> httpx.Response:
        barrier.wait()
        return http.post("/v1/jobs", json=body, headers={"Idempotency-Key": key})

    with ThreadPoolExecutor(len(bodies)) as pool:
        return list(pool.map(post, bodies))


def _body(audio_id: str, seconds: float = 0.0) -> dict[str, Any]:
    return {"kind": "audio.tokenize", "model": "slow-echo", "inputs": {"audio": audio_id},
            "params": {"seconds": seconds, "steps": 1}}


def test_parallel_posts_with_one_key_make_one_job(http: httpx.Client, service: Any) -> None:
    audio_id = upload(http, wav_bytes(0.2))
    jobs = []
    for round_ in range(5):
        key = f"race-{round_}-{audio_id[:8]}"
        responses = _post_together(http, [_body(audio_id)] * PARALLEL, key)
        assert [r.status_code for r in responses] == [202] * PARALLEL, [r.text for r in responses]
        assert len({r.json()["id"] for r in responses}) == 1
        replayed = [r.headers.get("idempotent-replayed") == "true" for r in responses]
        assert replayed.count(False) == 1  # one request created the job; the others were told it is a replay
        jobs.append(responses[0].json()["id"])
        stored = [j for j in service.store.list(limit=500)[0] if j.idempotency_key == key]
        assert [j.id for j in stored] == [jobs[-1]]
    assert len(set(jobs)) == 5
    for job_id in jobs:  # created once, so queued (and run) once
        done = wait_for(http, job_id)
        assert done["state"] == "succeeded" and done["attempts"] == 1


def test_parallel_posts_with_one_key_and_two_bodies(http: httpx.Client) -> None:
    audio_id = upload(http, wav_bytes(0.2))
    bodies = [_body(audio_id, seconds=0.0 if i % 2 else 0.1) for i in range(PARALLEL)]
    responses = _post_together(http, bodies, f"two-bodies-{audio_id[:8]}")
    accepted = [(b, r) for b, r in zip(bodies, responses, strict=True) if r.status_code == 202]
    refused = [(b, r) for b, r in zip(bodies, responses, strict=True) if r.status_code == 409]
    assert len(accepted) == len(refused) == PARALLEL // 2  # the first body wins; the other one is refused each time
    assert len({r.json()["id"] for _, r in accepted}) == 1 and len({str(b) for b, _ in accepted}) == 1
    assert all("Idempotency-Key" in r.json()["detail"] for _, r in refused)
    assert wait_for(http, accepted[0][1].json()["id"])["state"] == "succeeded"
