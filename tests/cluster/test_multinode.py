"""Issue 20 on separate hosts: one cluster of Linux network namespaces (tests/cluster/netns.py) with Redis, a Ray
head, three Ray worker nodes (``w3`` advertises a GPU), two Celery hosts and the API, every timeout at its default.

Each scenario prints what happened to its jobs (submitted / succeeded / failed / lost / ran twice, and to a
different result), counted from the job store and from the slow-echo run log the model hosts write. Scenarios
run in file order on the one cluster; the later ones take hosts away (a Celery host is put back, ``w3`` is not).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator

import pytest

from tests.cluster.netns import NetCluster, Tally
from tests.slow_pipeline import write_model_dir
from tests.workers.cluster import wait_until
from workers.placement import SERVING_FILE

pytestmark = pytest.mark.slow

JOBS = 60
REPLICAS = 3
WORKER_NODES = ["w1", "w2", "w3"]


def everything_once(jobs: int) -> Tally:
    return Tally(submitted=jobs, succeeded=jobs, failed=0, lost=0, ran_twice=0, changed=0)


@pytest.fixture(scope="module")
def cluster_once(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NetCluster]:
    replicas = {"slow-echo": {"min": REPLICAS, "max": REPLICAS}}
    cluster = NetCluster(tmp_path_factory.mktemp("multinode"), worker_nodes=len(WORKER_NODES), celery_hosts=2,
                         gpu_node="w3", env={"MEDIAFORGE_REPLICAS": json.dumps(replicas)})
    for name, gpu in (("gpu-echo", "required"), ("cold-echo", "none")):
        (write_model_dir(cluster.zoo / name, run_log=cluster.run_log) / SERVING_FILE).write_text(
            json.dumps({"gpu": gpu}))
    with cluster.running():
        yield cluster


@pytest.fixture
def cluster(cluster_once: NetCluster) -> NetCluster:
    """The module's cluster with an empty run log (every earlier job has finished and its host is idle)."""
    cluster_once.run_log.write_text("")
    return cluster_once


def busy_replica_on(cluster: NetCluster, node: str) -> None:
    nodes = cluster.alive_nodes()
    wait_until(lambda: [h for h in cluster.hosts() if h["inflight"] and nodes.get(h["node_id"]) == node], 120,
               f"a replica on {node} with batches in flight")


def test_jobs_spread_over_every_worker_node(cluster: NetCluster) -> None:
    jobs = cluster.submit(JOBS)
    tally = cluster.tally(jobs)
    nodes = cluster.alive_nodes()
    batches = {nodes[h["node_id"]]: h["batches"] for h in cluster.hosts() if h["model"] == "slow-echo"}
    print(tally.line(f"{JOBS} jobs, 3 worker nodes"), f"; batches by node {dict(sorted(batches.items()))}")
    assert tally == everything_once(JOBS)
    assert cluster.replicas() == WORKER_NODES
    assert all(batches.values())


def test_a_gpu_model_lands_only_on_the_node_with_a_gpu(cluster: NetCluster) -> None:
    jobs = cluster.submit_to("gpu-echo", 4, {"seconds": 0.5})
    tally = cluster.tally(jobs)
    print(tally.line("gpu-echo, one GPU node"), f"; replicas on {cluster.replicas('gpu-echo')}")
    assert tally == everything_once(4)
    assert cluster.replicas("gpu-echo") == ["w3"]


def test_redis_restart_with_jobs_queued_loses_none(cluster: NetCluster) -> None:
    jobs = cluster.submit(100)  # more than the two Celery hosts run at once (2 x 32 threads): the rest queue
    time.sleep(1.5)  # appendfsync everysec: what the API acknowledged more than a second ago is on disk
    queued = Counter(record.state for record in cluster.records(jobs))["queued"]
    cluster.host("redis").kill()
    cluster.restart("redis")
    tally = cluster.tally(jobs)
    print(tally.line(f"Redis SIGKILLed and restarted, {queued} jobs queued"))
    assert queued > 0
    assert tally == everything_once(100)


def test_a_partitioned_worker_node_loses_nothing(cluster: NetCluster) -> None:
    """w1's link goes down for 20 s while its replica runs batches. A job may run twice (the cut-off replica
    finishes its batch, and the job may have been given to another one), but its record is written once."""
    jobs = cluster.submit(JOBS)
    busy_replica_on(cluster, "w1")
    w1 = cluster.host("w1")
    w1.cut()
    time.sleep(20)
    w1.restore()
    tally = cluster.tally(jobs)
    survived = "w1" in cluster.alive_nodes().values()
    print(tally.line("w1 cut off for 20 s"), f"; w1 {'still' if survived else 'no longer'} a Ray node after, "
          f"replicas on {cluster.replicas()}")
    assert (tally.succeeded, tally.lost, tally.changed) == (JOBS, 0, 0)
    if not survived:  # Ray declared it dead and its raylet exited on reconnecting: the host comes back
        w1.kill()
        cluster.restart("w1")


def test_a_lost_celery_host_s_jobs_finish_once(cluster: NetCluster) -> None:
    """Every process of c1 (its Ray node and its Celery worker) is SIGKILLed as soon as it runs jobs of a model
    whose replicas are still starting (cold-echo): the calls it had queued die with it, so its jobs go back on the
    queue when their lease lapses (15 s, plus up to 5 s for a reaper to sweep) and c2 runs them. A job that had
    reached its replica is held and recorded by the replica, and is not sent again."""
    c1 = cluster.host("c1")
    worker_name = f"audio-{c1.processes[-1].pid}@"  # its Celery worker's hostname, which its leases carry
    jobs = cluster.submit_to("cold-echo", JOBS, {"seconds": 4.0, "steps": 40})
    held = wait_until(lambda: [job_id for job_id in jobs
                               if (cluster.store.leases.holder(job_id) or "").startswith(worker_name)],
                      120, "c1 to take jobs")
    requeued = cluster.store.metrics.recovery_counts()["requeued"]
    c1.kill()
    killed_at = time.time()
    tally = cluster.tally(jobs)
    restarted = [record.started_at - killed_at for record in cluster.records(jobs)
                 if record.id in held and record.attempts > 1 and record.started_at > killed_at]
    print(tally.line("Celery host c1 SIGKILLed"), f"; c1 held {len(held)} jobs, "
          f"{cluster.store.metrics.recovery_counts()['requeued'] - requeued} requeued by a reaper, "
          f"{len(restarted)} redelivered, at most {max(restarted, default=0):.1f} s after the kill")
    assert tally == everything_once(JOBS)
    assert max(restarted, default=0) < 60  # the lease (15 s) and the reaper's interval (5 s), with room
    cluster.restart("c1")


def test_a_lost_worker_node_s_replicas_come_back_on_the_others(cluster: NetCluster) -> None:
    """Every process of w3 is SIGKILLed while its replica holds batches in flight: the jobs are retried on the
    replicas that remain, and the pool starts a third replica on w1 or w2."""
    jobs = cluster.submit(JOBS)
    busy_replica_on(cluster, "w3")
    cluster.host("w3").kill()
    killed_at = time.time()
    replicas = wait_until(lambda: (r := cluster.replicas()) and len(r) == REPLICAS and "w3" not in r and r, 300,
                          "the pool to refill on the remaining nodes")
    refilled_s = time.time() - killed_at
    tally = cluster.tally(jobs)
    print(tally.line("w3 SIGKILLed"), f"; pool back to {REPLICAS} replicas on {replicas} {refilled_s:.1f} s "
          f"after the kill, every job done {max(r.finished_at for r in cluster.records(jobs)) - killed_at:.1f} s "
          "after it")
    assert tally == everything_once(JOBS)


def test_a_gpu_model_with_no_gpu_node_fails_fast(cluster: NetCluster) -> None:
    """With w3 gone no node has a GPU: a gpu-echo job fails at once with PlacementError instead of waiting."""
    if "w3" in cluster.alive_nodes().values():
        cluster.host("w3").kill()
    wait_until(lambda: "w3" not in cluster.alive_nodes().values(), 120, "Ray to see w3 gone")
    (job_id,) = cluster.submit_to("gpu-echo", 1, {"seconds": 0.5})
    (final,) = cluster.wait_finished({job_id: 0})
    print(f"multinode[gpu-echo, no GPU node]: {final.state} {final.finished_at - final.created_at:.1f} s after "
          f"submit: {final.error.type if final.error else ''}: {final.error.message if final.error else ''}")
    assert final.state == "failed" and final.error.type == "PlacementError"
    assert "needs a GPU" in final.error.message and final.attempts == 1
