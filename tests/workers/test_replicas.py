"""Replicas of a model's host (workers/replicas.py) on the session's real Ray: the set starts at its minimum,
calls spread over it, it grows with the calls in flight up to its maximum and shrinks back when idle, a lost
replica is replaced, and a job goes back to the replica that started it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import ray

from pipelines.registry import pipeline_target
from pipelines.zoo import ModelRef
from tests.service_fixtures import wav_bytes
from tests.slow_pipeline import MODEL_CLASS, write_model_dir
from workers.hosts import StoreAddress, list_hosts
from workers.jobspec import JobSpec
from workers.replicas import HostPool
from workers.settings import ReplicaConfig


def _pool(service: Any, namespace: str, model: str, **replicas: int) -> HostPool:
    settings = service.settings.model_copy(update={
        "ray_namespace": namespace, "replicas": {model: ReplicaConfig(**replicas)}, "replica_target_inflight": 2,
        "replica_idle_s": 1.0})
    return HostPool(settings, StoreAddress.of(settings, service.redis_url), refresh_s=3600)  # resized by the test


def _target() -> str:
    return pipeline_target("audio.tokenize", MODEL_CLASS)  # slow-echo is registered by the service fixture


def _inputs(service: Any) -> dict[str, tuple[str, str]]:
    clip = service.artifacts.put(wav_bytes(0.1), "c.wav")
    return {"audio": (str(service.artifacts.path(clip.id)), "c.wav")}


@contextmanager
def _replica_set(service: Any, tmp_path: Path, name: str, **replicas: int) -> Iterator[tuple[ModelRef, HostPool]]:
    """A slow-echo model of its own and a pool for it in a namespace of its own; its replicas go at the end."""
    namespace = f"test-rep-{name}"
    try:
        yield ModelRef(name, write_model_dir(tmp_path / name), MODEL_CLASS), _pool(service, namespace, name, **replicas)
    finally:
        for host in list_hosts(namespace):
            ray.kill(host["handle"])


def test_the_set_starts_at_its_minimum_and_calls_spread_over_it(service: Any, tmp_path: Path) -> None:
    with _replica_set(service, tmp_path, "spread-echo", min=2, max=2) as (model, pool):
        first, second = pool.pick(model), pool.pick(model)  # both in flight: the second goes to the idle one
        assert {first.name, second.name} == {"host:spread-echo:0", "host:spread-echo:1"}
        answers = ray.get([r.handle.run.remote(f"spread-{r.name}", _target(), _inputs(service), {"seconds": 0})
                           for r in (first, second)], timeout=300)
        assert [a["status"] for a in answers] == ["succeeded"] * 2
        assert sorted(h["name"] for h in list_hosts(pool.settings.ray_namespace)) == pool.replicas(model)


def test_the_set_grows_with_calls_in_flight_and_shrinks_when_idle(service: Any, tmp_path: Path) -> None:
    with _replica_set(service, tmp_path, "grow-echo", min=1, max=3) as (model, pool):
        host = pool.pick(model).handle
        assert pool.replicas(model) == ["host:grow-echo:0"]
        # Six slow calls in flight on one replica, two per replica wanted: the set grows to its maximum of three.
        refs = [host.run.remote(f"grow-{i}", _target(), _inputs(service), {"seconds": 3, "steps": 3}) for i in range(6)]
        _until(lambda: ray.get(host.info.remote())["inflight"] == 6, "six calls in flight")
        pool.resize(model)
        assert pool.replicas(model) == ["host:grow-echo:0", "host:grow-echo:1", "host:grow-echo:2"]
        assert [a["status"] for a in ray.get(refs, timeout=300)] == ["succeeded"] * 6
        namespace = pool.settings.ray_namespace
        ray.get([ray.get_actor(name, namespace=namespace).info.remote() for name in pool.replicas(model)],
                timeout=300)  # all started (a replica still starting is not idle)
        time.sleep(1.5)  # replica_idle_s: every replica idle that long
        pool.resize(model)
        assert pool.replicas(model) == ["host:grow-echo:0"]  # highest indexes stopped first, the minimum kept


def test_a_lost_replica_is_replaced(service: Any, tmp_path: Path) -> None:
    with _replica_set(service, tmp_path, "lost-echo", min=2, max=2) as (model, pool):
        lost = pool.pick(model)
        ray.get(lost.handle.info.remote(), timeout=300)
        ray.kill(lost.handle)
        _until(lambda: lost.name not in {a["name"] for a in ray.util.list_named_actors(all_namespaces=True)},
               "the killed replica's name to be released")
        pool.resize(model)  # the refresher's pass, once a second in a worker
        assert pool.replicas(model) == ["host:lost-echo:0", "host:lost-echo:1"]
        assert ray.get(pool.pick(model, prefer=lost.name).handle.run.remote(
            "after-loss", _target(), _inputs(service), {"seconds": 0}), timeout=300)["status"] == "succeeded"


def test_a_job_records_its_replica_and_a_rerun_goes_back_to_it(service: Any, tmp_path: Path) -> None:
    job, _ = service.submit(JobSpec(kind="audio.tokenize", model="slow-echo",
                                    inputs={"audio": service.put_artifact([wav_bytes(0.1)], "c.wav").id},
                                    params={"seconds": 0}))
    final = service.wait(job.id, timeout_s=300)
    assert final.state == "succeeded" and final.host == "host:slow-echo:0"
    with _replica_set(service, tmp_path, "pref-echo", min=2, max=2) as (model, pool):
        busy = pool.pick(model)  # in flight: without a preference the next call goes to the other replica
        assert pool.pick(model).name != busy.name
        assert pool.pick(model, prefer=busy.name).name == busy.name


def _until(predicate: Any, what: str, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.1)


