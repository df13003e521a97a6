"""Placement: a model that requires a GPU lands only on a Ray node that advertises one (a second real raylet
joined to the session's Ray with ``ray start --num-gpus 1``), and with no such node its job fails at once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import ray

from pipelines.base import InputError
from pipelines.registry import pipeline_target
from pipelines.zoo import ModelRef
from tests.service_fixtures import wav_bytes
from tests.slow_pipeline import MODEL_CLASS, write_model_dir
from workers.hosts import StoreAddress
from workers.jobspec import JobSpec
from workers.placement import SERVING_FILE, ModelNeeds, PlacementError
from workers.replicas import HostPool

RAY = str(Path(sys.executable).with_name("ray"))


def _model(path: Path, **needs: Any) -> Path:
    write_model_dir(path)
    (path / SERVING_FILE).write_text(json.dumps(needs))
    return path


def test_needs_are_read_from_the_serving_file(tmp_path: Path) -> None:
    assert ModelNeeds.of(write_model_dir(tmp_path / "plain")) == ModelNeeds(gpu="preferred")
    assert ModelNeeds.of(_model(tmp_path / "big", gpu="required", memory_mb=512)).memory_mb == 512
    with pytest.raises(InputError, match="serving.json"):
        ModelNeeds.of(_model(tmp_path / "bad", gpu="sometimes"))


def test_a_gpu_model_with_no_gpu_node_fails_its_job_at_once(service: Any) -> None:
    zoo = Path(os.environ["MEDIAFORGE_MODELS_DIR"])
    _model(zoo / "needs-gpu-echo", gpu="required")
    audio = service.put_artifact([wav_bytes(0.1)], "c.wav").id
    job, _ = service.submit(JobSpec(kind="audio.tokenize", model="needs-gpu-echo", inputs={"audio": audio}))
    final = service.wait(job.id, timeout_s=120)
    assert final.state == "failed" and final.error.type == "PlacementError"
    assert "needs a GPU" in final.error.message and final.attempts == 1


def test_a_model_needing_more_memory_than_any_node_has_is_refused(service: Any, tmp_path: Path) -> None:
    pool = HostPool(service.settings, StoreAddress.of(service.settings, service.redis_url))
    model = ModelRef("huge-echo", _model(tmp_path / "huge-echo", memory_mb=10**9), MODEL_CLASS)
    with pytest.raises(PlacementError, match="needs 1e\\+09 MB"):
        pool.pick(model)


@pytest.fixture
def gpu_node(service: Any, tmp_path: Path) -> Iterator[str]:
    """A second Ray node on this machine that advertises one GPU; yields its node id."""
    before = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
    node = subprocess.Popen([RAY, "start", f"--address={ray.get_runtime_context().gcs_address}", "--num-gpus=1",
                             "--num-cpus=1", "--block", "--disable-usage-stats"],
                            stdout=open(tmp_path / "gpu-node.log", "wb"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not (new := {n["NodeID"] for n in ray.nodes() if n["Alive"]} - before):
            assert time.monotonic() < deadline and node.poll() is None, (tmp_path / "gpu-node.log").read_text()
            time.sleep(0.5)
        yield new.pop()
    finally:
        os.killpg(node.pid, signal.SIGTERM)
        node.wait(timeout=60)
        # `ray start` left its address for later ray.init() calls on this machine to join: not ours to leave.
        Path("/tmp/ray/ray_current_cluster").unlink(missing_ok=True)


def test_a_gpu_model_lands_only_on_the_gpu_node(service: Any, gpu_node: str, tmp_path: Path) -> None:
    settings = service.settings.model_copy(update={"ray_namespace": "test-placement"})
    pool = HostPool(settings, StoreAddress.of(settings, service.redis_url))
    gpu_model = ModelRef("gpu-echo", _model(tmp_path / "gpu-echo", gpu="required"), MODEL_CLASS)
    cpu_model = ModelRef("cpu-echo", _model(tmp_path / "cpu-echo", gpu="none"), MODEL_CLASS)
    hosts = {m.name: pool.pick(m).handle for m in (gpu_model, cpu_model)}
    try:
        info = {name: ray.get(host.info.remote(), timeout=180) for name, host in hosts.items()}
        assert info["gpu-echo"]["node_id"] == gpu_node
        assert info["gpu-echo"]["device"] == "cpu"  # the advertised GPU is not a real one: no CUDA here
        clip = service.artifacts.put(wav_bytes(0.1), "c.wav")
        inputs = {"audio": (str(service.artifacts.path(clip.id)), "c.wav")}
        answer = ray.get(hosts["gpu-echo"].run.remote("placed", pipeline_target("audio.tokenize", MODEL_CLASS),
                                                       inputs, {"seconds": 0}), timeout=120)
        assert answer["status"] == "succeeded"
    finally:
        for host in hosts.values():
            ray.kill(host)


@pytest.mark.parametrize("gpu", ["none", "preferred"])
def test_replicas_go_to_distinct_nodes(service: Any, gpu_node: str, tmp_path: Path, gpu: str) -> None:
    """Also a model that only prefers a GPU: one replica takes the GPU node, the next runs on a CPU node."""
    from workers.settings import ReplicaConfig

    settings = service.settings.model_copy(update={"ray_namespace": "test-spread",
                                                   "replicas": {"two-echo": ReplicaConfig(min=2, max=2)}})
    pool = HostPool(settings, StoreAddress.of(settings, service.redis_url))
    model = ModelRef("two-echo", _model(tmp_path / "two-echo", gpu=gpu), MODEL_CLASS)
    pool.pick(model)
    hosts = [ray.get_actor(name, namespace="test-spread") for name in pool.replicas(model)]
    try:
        nodes = {ray.get(host.info.remote(), timeout=180)["node_id"] for host in hosts}
        assert len(hosts) == 2 and nodes == {gpu_node, ray.get_runtime_context().get_node_id()}
    finally:
        for host in hosts:
            ray.kill(host)
