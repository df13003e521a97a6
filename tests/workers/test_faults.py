"""Crash safety with the default settings: real processes killed by pid, 40 jobs each, on Redis and RabbitMQ.

Every test asserts that all jobs succeed, none is lost and none ran twice (counted inside the model hosts, from
the slow-echo run log), and that a job restarted after a fault started within 30 s of it. No timeout is
shortened: the lease, the reaper and the broker run as a user's deployment does (tests/workers/cluster.py).
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.workers.cluster import Cluster, wait_until

pytestmark = pytest.mark.slow

JOBS = 40


@pytest.fixture(scope="module", params=["redis", "rabbitmq"])
def cluster_once(request: pytest.FixtureRequest, service: Any, tmp_path_factory: pytest.TempPathFactory
                 ) -> Iterator[Cluster]:
    """One cluster per broker (``service`` brings the session's Ray, which the cluster's hosts run in)."""
    with Cluster(tmp_path_factory.mktemp(f"faults-{request.param}"), request.param).running() as cluster:
        yield cluster


@pytest.fixture
def cluster(cluster_once: Cluster) -> Iterator[Cluster]:
    """The module's cluster with no worker running, its Redis and API up, and an empty run log."""
    cluster_once.run_log.write_text("")
    yield cluster_once
    for worker in cluster_once.workers:
        if worker.poll() is None:
            Cluster.kill(worker)
    cluster_once.workers.clear()
    if cluster_once.redis.process.poll() is not None:
        cluster_once.redis.start()
    if cluster_once.api.poll() is not None:
        cluster_once.start_api()


def test_no_fault(cluster: Cluster) -> None:
    cluster.start_worker()
    cluster.check_once(cluster.submit(JOBS))


def test_worker_killed_mid_job_fresh_worker_finishes_its_jobs(cluster: Cluster) -> None:
    worker = cluster.start_worker()
    jobs = cluster.submit(JOBS)
    cluster.wait_running(jobs)
    Cluster.kill(worker)
    killed_at = time.time()
    cluster.start_worker()
    cluster.check_once(jobs, since=killed_at)


def test_worker_killed_during_jobs_longer_than_the_lease(cluster: Cluster) -> None:
    """The host holds the leases of the jobs it runs: they outlast their dead worker's lease without being sent
    again (no requeue, no second delivery waiting on them), and finish once."""
    worker = cluster.start_worker()
    jobs = cluster.submit(16, seconds=20.0)  # one batch, longer than the 15 s lease
    cluster.wait_running(jobs)
    requeued = cluster.store.metrics.recovery_counts()["requeued"]
    Cluster.kill(worker)
    cluster.start_worker()
    cluster.check_once(jobs)
    assert cluster.store.metrics.recovery_counts()["requeued"] == requeued


def test_two_workers_on_one_queue_one_killed(cluster: Cluster) -> None:
    first = cluster.start_worker()
    cluster.start_worker()
    jobs = cluster.submit(JOBS)
    cluster.wait_running(jobs)
    Cluster.kill(first)
    cluster.check_once(jobs, since=time.time())


def test_redis_killed_while_the_worker_is_busy(cluster: Cluster) -> None:
    cluster.start_worker()
    jobs = cluster.submit(JOBS)
    cluster.wait_running(jobs)
    time.sleep(1.5)  # appendfsync everysec: what the API acknowledged more than a second ago is on disk
    cluster.redis.kill()
    down_at = time.time()
    time.sleep(3)
    cluster.redis.start()
    cluster.check_once(jobs, since=down_at)


def test_worker_killed_while_redis_restarts(cluster: Cluster) -> None:
    worker = cluster.start_worker()
    jobs = cluster.submit(JOBS)
    cluster.wait_running(jobs)
    time.sleep(1.5)
    cluster.redis.kill()
    Cluster.kill(worker)
    down_at = time.time()
    time.sleep(3)
    cluster.redis.start()
    cluster.start_worker()
    cluster.check_once(jobs, since=down_at)


def test_model_host_killed_mid_batch(cluster: Cluster) -> None:
    cluster.start_worker()
    jobs = cluster.submit(JOBS)
    cluster.wait_running(jobs)
    cluster.kill_host()
    cluster.check_once(jobs, since=time.time())


def test_worker_and_host_killed_together(cluster: Cluster) -> None:
    """Nobody is left who knows the running jobs: only the reaper can bring them back (the Redis broker would
    redeliver their messages after an hour)."""
    worker = cluster.start_worker()
    jobs = cluster.submit(JOBS)
    cluster.wait_running(jobs)
    requeued = cluster.store.metrics.recovery_counts()["requeued"]
    cluster.kill_host()
    Cluster.kill(worker)
    killed_at = time.time()
    cluster.start_worker()
    cluster.check_once(jobs, since=killed_at)
    assert cluster.store.metrics.recovery_counts()["requeued"] > requeued


def test_model_host_killed_twice(cluster: Cluster) -> None:
    cluster.start_worker()
    jobs = cluster.submit(JOBS)
    cluster.wait_running(jobs)
    first = cluster.kill_host()
    wait_until(lambda: [h for h in cluster.hosts() if h["inflight"] and h["pid"] != first], 120,
               "a new busy host")
    cluster.kill_host()
    cluster.check_once(jobs, since=time.time())


def test_api_killed_and_restarted(cluster: Cluster) -> None:
    cluster.start_worker()
    jobs = cluster.submit(JOBS)
    Cluster.kill(cluster.api)
    cluster.start_api()
    cluster.check_once(jobs)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_redis_restart_with_only_queued_jobs(cluster: Cluster, sig: int) -> None:
    jobs = cluster.submit(JOBS, seconds=1.0)
    time.sleep(1.5)
    cluster.redis.kill(sig)
    cluster.redis.start()
    cluster.start_worker()
    cluster.check_once(jobs)

