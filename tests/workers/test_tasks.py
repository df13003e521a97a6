"""The Celery task runs the target stored on the job record at submit: it resolves nothing again, except for a
record written before records carried a target."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import tests.slow_pipeline as slow_pipeline
from tests.service_fixtures import paused_queue, wav_bytes
from workers.jobspec import JobSpec


def _submit_slow_echo(service: Any) -> str:
    audio_id = service.put_artifact([wav_bytes(0.1)], "clip.wav").id
    spec = JobSpec(kind="audio.tokenize", model="slow-echo", inputs={"audio": audio_id}, params={"seconds": 0})
    return service.submit(spec)[0].id


def test_submit_stores_the_resolved_target(service: Any) -> None:
    with paused_queue("audio"):
        job = service.get(_submit_slow_echo(service))
        assert job.target is not None
        assert (job.target.model_name, job.target.model_class) == ("slow-echo", slow_pipeline.MODEL_CLASS)
        assert job.target.pipeline == "tests.slow_pipeline:SlowEchoPipeline"
        assert Path(job.target.model_dir) == Path(os.environ["MEDIAFORGE_MODELS_DIR"]) / "slow-echo"
    assert service.wait(job.id, timeout_s=120).state == "succeeded"


def test_worker_runs_the_stored_target_without_the_registry(service: Any) -> None:
    """With the registry entry gone after submit, a worker that resolved the job again would fail it."""
    with paused_queue("audio"):
        job_id = _submit_slow_echo(service)
        slow_pipeline.unregister()
    try:
        final = service.wait(job_id, timeout_s=120)
    finally:
        slow_pipeline.register()
    assert final.state == "succeeded" and set(final.outputs) == {"tokens"}, final.error


def test_a_record_without_a_target_is_resolved_by_the_worker(service: Any) -> None:
    with paused_queue("audio"):
        job_id = _submit_slow_echo(service)
        service.store.redis.hdel(service.store.job_key(job_id), "target")  # as written by the previous release
        assert service.get(job_id).target is None
    final = service.wait(job_id, timeout_s=120)
    assert final.state == "succeeded" and set(final.outputs) == {"tokens"}, final.error
