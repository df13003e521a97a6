"""500 open event streams through the real server (issue 25): other routes keep answering, every stream ends with
the final event of its job (finished or cancelled), streams whose client goes away are dropped, and the Redis
connection count is the same before, during and after (streams share the process's one subscription)."""

from __future__ import annotations

import asyncio
import json
import time
from contextlib import ExitStack
from typing import Any

import httpx

from tests.service_fixtures import paused_queue, submit, upload, wav_bytes

STREAMS, ABANDONED, JOBS = 500, 50, 4
CONNECTION_MARGIN = 5
"""Redis connections the server may open meanwhile for other reasons (reaper, worker, broker)."""


async def _events(client: httpx.AsyncClient, job_id: str, opened: list[str], stop_after: int = 0
                  ) -> list[tuple[str, dict[str, Any]]]:
    """One stream's (event, data) pairs; ``opened`` gets the job id at its first event. With ``stop_after`` the
    client goes away after that many events."""
    events: list[tuple[str, dict[str, Any]]] = []
    async with client.stream("GET", f"/v1/jobs/{job_id}/events") as response:
        assert response.status_code == 200
        name = ""
        async for line in response.aiter_lines():
            if line.startswith("event:"):
                name = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                events.append((name, json.loads(line.split(":", 1)[1])))
                if len(events) == 1:
                    opened.append(job_id)
                if len(events) == stop_after:
                    break
    return events


async def _until(check: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.05)


def test_many_open_streams_share_redis_and_all_end_with_the_final_event(http: httpx.Client, api_url: str,
                                                                        service: Any) -> None:
    hub, redis = service.store.event_hub, service.store.redis
    audio_id = upload(http, wav_bytes(0.2))
    body = {"kind": "audio.tokenize", "model": "slow-echo", "inputs": {"audio": audio_id},
            "params": {"seconds": 0.2, "steps": 2}}
    warm = submit(http, body)["id"]

    def subscriptions() -> int:
        return sum(int(c["sub"]) + int(c["psub"]) > 0 for c in redis.client_list())

    async def main(queue: ExitStack) -> tuple[list[Any], list[Any], tuple[int, int, int]]:
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=api_url, timeout=60, limits=limits) as client:
            # The hub's subscription comes up with the first stream; a burst of as many plain requests as there
            # will be streams grows the client pool to what such a burst needs (redis-py never shrinks a pool;
            # the pool blocks at its cap, so the burst is all 200). Streams must add nothing to that.
            assert [e for e, _ in await _events(client, warm, [])][-1] == "final"
            burst = await asyncio.gather(*(client.get(f"/v1/jobs/{warm}") for _ in range(STREAMS + ABANDONED)))
            assert {r.status_code for r in burst} == {200}
            before, subscribed = len(redis.client_list()), subscriptions()

            opened: list[str] = []
            streams = [asyncio.create_task(_events(client, jobs[i % JOBS], opened)) for i in range(STREAMS)]
            gone = [asyncio.create_task(_events(client, jobs[0], [], stop_after=1)) for _ in range(ABANDONED)]
            await _until(lambda: len(opened) == STREAMS and all(g.done() for g in gone), 40, "streams not open")
            await _until(lambda: hub.watching == STREAMS, 10, "streams whose client went away are still watched")
            assert subscriptions() == subscribed  # 500 streams, and still the one subscription
            during = len(redis.client_list())
            for _ in range(10):  # other routes answer while every stream is open
                health, listing = await asyncio.gather(client.get("/healthz"), client.get("/v1/jobs"))
                assert health.status_code == listing.status_code == 200
            for job_id in jobs[:2]:
                assert (await client.post(f"/v1/jobs/{job_id}/cancel")).json()["state"] == "cancelled"
            queue.close()  # the other two jobs run now and succeed
            ended = await asyncio.wait_for(asyncio.gather(*streams), 40)
            return ended, [g.result() for g in gone], (before, during, len(redis.client_list()))

    with ExitStack() as queue:
        queue.enter_context(paused_queue("audio"))
        jobs = [submit(http, body)["id"] for _ in range(JOBS)]
        streams, gone, (before, during, after) = asyncio.run(main(queue))

    expected = {job_id: "cancelled" if i < 2 else "succeeded" for i, job_id in enumerate(jobs)}
    for events in streams:
        names, last = [e for e, _ in events], events[-1][1]
        assert names.count("final") == 1 and names[-1] == "final" and events[0][1]["state"] == "queued"
        assert last["state"] == expected[last["id"]]
    assert all(len(events) == 1 for events in gone)
    assert during <= before + CONNECTION_MARGIN and after <= before + CONNECTION_MARGIN, (before, during, after)
    assert hub.watching == 0
