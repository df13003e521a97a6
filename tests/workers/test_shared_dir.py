"""Every process must see one artifact directory: a worker started on another directory refuses to start, and a
host that cannot read an input another node wrote fails that job naming the node."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import ray

from pipelines.registry import pipeline_target
from pipelines.zoo import ModelRef
from tests.service_fixtures import mediaforge_process
from tests.slow_pipeline import MODEL_CLASS, write_model_dir
from workers.hosts import StoreAddress
from workers.replicas import HostPool
from workers.shared_dir import NotShared, SharedDir


def test_a_directory_other_processes_did_not_write_to_is_refused(service: Any, tmp_path: Path) -> None:
    redis, prefix = service.store.redis, f"shared-{tmp_path.name}"
    shared, elsewhere = tmp_path / "shared", tmp_path / "elsewhere"
    SharedDir(redis, prefix, shared).check_and_join("api")
    SharedDir(redis, prefix, shared).check_and_join("worker")  # the same directory: fine
    with pytest.raises(NotShared, match="not the one the rest of the cluster uses"):
        SharedDir(redis, prefix, elsewhere).check_and_join("worker")


def test_a_worker_on_another_artifact_directory_does_not_start(service: Any, tmp_path: Path) -> None:
    """The service fixture's API joined with its own directory; a worker given another one exits with code 2."""
    env = {"MEDIAFORGE_REDIS_URL": service.redis_url, "MEDIAFORGE_ARTIFACTS_DIR": str(tmp_path / "local-disk"),
           "RAY_ADDRESS": ray.get_runtime_context().gcs_address}
    worker = mediaforge_process("worker", "--queues", "audio", env=env, log=tmp_path / "worker.log")
    try:
        assert worker.wait(timeout=180) == 2
    except subprocess.TimeoutExpired:
        worker.kill()
        raise
    assert "MEDIAFORGE_ARTIFACTS_DIR" in (tmp_path / "worker.log").read_text()


def test_an_input_this_node_cannot_read_fails_its_job_naming_the_node(service: Any, tmp_path: Path) -> None:
    settings = service.settings.model_copy(update={"ray_namespace": "test-shared-dir"})
    host = HostPool(settings, StoreAddress.of(settings, service.redis_url)).pick(
        ModelRef("unshared-echo", write_model_dir(tmp_path / "unshared-echo"), MODEL_CLASS)).handle
    try:
        inputs = {"audio": (str(tmp_path / "elsewhere" / "blob"), "clip.wav")}  # written on another node's disk
        answer = ray.get(host.run.remote("unshared", pipeline_target("audio.tokenize", MODEL_CLASS), inputs, {}),
                         timeout=180)
        assert answer["status"] == "failed" and answer["error"]["type"] == "InputError"
        assert "not readable on Ray node" in answer["error"]["message"]
    finally:
        ray.kill(host)
