"""The dashboard's stream of new jobs (``GET /v1/dashboard/events?new=true``) through the real server: it says
``live`` first, then carries the jobs created after that, and only the caller's (another owner's job, announced
the same way, never comes)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx

from tests.service_fixtures import upload, wav_bytes
from workers.jobspec import JobSpec


def _events(lines: Iterator[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    name = ""
    for line in lines:
        if line.startswith("event: "):
            name = line.removeprefix("event: ")
        elif line.startswith("data: "):
            yield name, json.loads(line.removeprefix("data: "))


def test_the_new_jobs_stream_carries_the_callers_later_jobs(http: httpx.Client, service: Any) -> None:
    body = {"kind": "audio.tokenize", "model": "slow-echo", "inputs": {"audio": upload(http, wav_bytes(0.2))},
            "params": {"seconds": 0.2, "steps": 2}}
    with http.stream("GET", "/v1/dashboard/events", params={"new": "true", "kind": "audio.tokenize"}) as stream:
        events = _events(stream.iter_lines())
        assert next(events) == ("live", {"new": True})
        theirs, _ = service.submit(JobSpec.model_validate(body), owner="someone-else")
        service.wait(theirs.id)
        mine = service.submit(JobSpec.model_validate(body))[0].id  # not through POST /v1/jobs: a workflow's step,
        # the batch CLI's job: the store announces every new job
        seen = []
        for name, job in events:
            seen.append((name, job["id"], job["state"]))
            if name == "final":
                break
    assert {job_id for _, job_id, _ in seen} == {mine}
    assert seen[-1] == ("final", mine, "succeeded")
