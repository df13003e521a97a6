"""Workflows survive their processes: a worker killed between steps, and the API (whose runner advances the
workflows) killed between steps and started again. Real processes (tests/workers/cluster.py), default timeouts;
each step runs once (one job per step, and the slow-echo step counted from inside its model host)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.workers.cluster import Cluster, clip, wait_until

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster(service: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A Redis-broker cluster (``service`` brings the session's Ray, which the cluster's hosts run in)."""
    cluster = Cluster(tmp_path_factory.mktemp("workflow-faults"), "redis")
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


def _workflow(http: httpx.Client, samples: int) -> dict[str, Any]:
    """tokenize -> detokenize -> slow-echo on the detokenized audio (a clip length of its own for the run log)."""
    audio = http.post("/v1/artifacts", params={"filename": "c.wav"}, content=clip(samples)).json()["id"]
    return {"steps": {
        "codes": {"kind": "audio.tokenize", "model": "wavtokenizer-tiny", "inputs": {"audio": audio}},
        "speech": {"kind": "audio.detokenize", "model": "wavtokenizer-tiny",
                   "inputs": {"tokens": {"from": "codes", "output": "tokens"}}},
        "slow": {"kind": "audio.tokenize", "model": "slow-echo", "params": {"seconds": 2.0, "steps": 20},
                 "inputs": {"audio": {"from": "speech", "output": "audio"}}},
    }}


def _state(cluster: Cluster, workflow_id: str) -> dict[str, Any]:
    return httpx.get(f"{cluster.api_url}/v1/workflows/{workflow_id}", timeout=10).json()


def _finish_once(cluster: Cluster, workflow_id: str, jobs_before: int) -> None:
    final = wait_until(lambda: (w := _state(cluster, workflow_id))["state"] in ("succeeded", "failed") and w,
                       240, "the workflow to finish")
    assert final["state"] == "succeeded", f"{final}\n{cluster.tail_logs()}"
    assert len({s["job_id"] for s in final["steps"].values()}) == 3
    assert cluster.store is not None
    assert len(cluster.store.list(limit=500)[0]) == jobs_before + 3  # no step was submitted twice
    assert sum(cluster.runs().values()) == 1  # the slow step ran once, in its host


def test_worker_killed_between_steps(cluster: Cluster, tmp_path: Path) -> None:
    cluster.run_log.write_text("")
    worker = cluster.start_worker()
    with httpx.Client(base_url=cluster.api_url, timeout=60) as http:
        jobs_before = len(cluster.store.list(limit=500)[0])
        workflow_id = http.post("/v1/workflows", json=_workflow(http, 4800)).json()["id"]
    wait_until(lambda: _state(cluster, workflow_id)["steps"]["codes"]["state"] == "succeeded", 180,
               "the first step to succeed")
    Cluster.kill(worker)
    cluster.start_worker()
    _finish_once(cluster, workflow_id, jobs_before)


def test_api_killed_between_steps_and_started_again(cluster: Cluster) -> None:
    cluster.run_log.write_text("")
    if not any(w.poll() is None for w in cluster.workers):
        cluster.start_worker()
    with httpx.Client(base_url=cluster.api_url, timeout=60) as http:
        jobs_before = len(cluster.store.list(limit=500)[0])
        workflow_id = http.post("/v1/workflows", json=_workflow(http, 5040)).json()["id"]
    wait_until(lambda: _state(cluster, workflow_id)["steps"]["codes"]["state"] == "succeeded", 180,
               "the first step to succeed")
    assert cluster.api is not None
    Cluster.kill(cluster.api)
    cluster.start_api()  # its runner picks the workflow up from the store
    _finish_once(cluster, workflow_id, jobs_before)
