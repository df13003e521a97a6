"""Fault tests with real processes killed by pid: a Celery worker SIGKILLed mid-job, the API restarted."""

from __future__ import annotations

import signal
import socket
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import ray

from tests.service_fixtures import mediaforge_process, paused_queue, submit, upload, wait_for, wav_bytes
from workers.jobspec import JobSpec

pytestmark = pytest.mark.slow


def _wait(predicate: Any, timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def test_worker_killed_mid_job_finishes_once(service: Any, tmp_path: Path) -> None:
    audio_id = service.put_artifact([wav_bytes(0.2)], "clip.wav").id
    env = {"MEDIAFORGE_REDIS_URL": service.redis_url, "RAY_ADDRESS": ray.get_runtime_context().gcs_address}
    with paused_queue("audio"):  # only the worker below consumes audio jobs until it dies
        worker = mediaforge_process("worker", "--queues", "audio", "--concurrency", "2", env=env,
                                    log=tmp_path / "worker.log")
        try:
            job, _ = service.submit(JobSpec(kind="audio.tokenize", model="slow-echo", inputs={"audio": audio_id},
                                            params={"seconds": 8, "steps": 80}))
            running = _wait(lambda: (j := service.get(job.id)).progress > 0 and j, 180, "the job to run")
            assert running.state == "running" and running.attempts == 1
            worker.send_signal(signal.SIGKILL)
            worker.wait(timeout=30)
        finally:
            if worker.poll() is None:
                worker.kill()
        assert service.get(job.id).state == "running"  # nobody finished it
    # The in-process worker sweeps the unacked message back after the visibility timeout and re-runs it.
    final = service.wait(job.id, timeout_s=120)
    assert final.state == "succeeded" and final.attempts == 2, (final, (tmp_path / "worker.log").read_text()[-2000:])
    assert set(final.outputs) == {"tokens"}
    time.sleep(6)  # longer than the visibility timeout: no third run, no second result
    again = service.get(job.id)
    assert (again.state, again.attempts, again.finished_at, again.outputs) == (
        "succeeded", 2, final.finished_at, final.outputs)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_api(service: Any, port: int, log: Path) -> Any:
    env = {"MEDIAFORGE_REDIS_URL": service.redis_url}
    process = mediaforge_process("serve", "--port", str(port), "--log-level", "warning", env=env, log=log)
    _wait(lambda: _answers(f"http://127.0.0.1:{port}/healthz"), 180, "the API to start")
    return process


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def test_api_restart_loses_no_queued_job(service: Any, tmp_path: Path) -> None:
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    with paused_queue("audio"):
        api = _start_api(service, port, tmp_path / "api1.log")
        try:
            with httpx.Client(base_url=base, timeout=30) as http:
                audio_id = upload(http, wav_bytes(0.2))
                ids = [submit(http, {"kind": "audio.tokenize", "model": "slow-echo", "inputs": {"audio": audio_id},
                                     "params": {"seconds": 0}})["id"] for _ in range(3)]
        finally:
            api.send_signal(signal.SIGKILL)
            api.wait(timeout=30)
        api = _start_api(service, port, tmp_path / "api2.log")
        try:
            states = [httpx.get(f"{base}/v1/jobs/{i}", timeout=30).json()["state"] for i in ids]
            assert states == ["queued"] * 3  # still paused: the new API sees every job the old one queued
        except BaseException:
            api.kill()
            raise
    try:
        with httpx.Client(base_url=base, timeout=30) as http:
            # Consumers are back: every job queued through the killed API runs, once; the new API reports it.
            finals = [wait_for(http, i, timeout_s=60) for i in ids]
            assert [f["state"] for f in finals] == ["succeeded"] * 3 and all(f["attempts"] == 1 for f in finals)
    finally:
        api.terminate()
        api.wait(timeout=30)


def test_model_host_killed_mid_job_is_retried_and_finishes(service: Any) -> None:
    """A lost Ray host is a transient fault: the task retries (Celery countdown), a new host runs the job."""
    audio_id = service.put_artifact([wav_bytes(0.2)], "clip.wav").id
    job, _ = service.submit(JobSpec(kind="audio.tokenize", model="slow-echo", inputs={"audio": audio_id},
                                    params={"seconds": 3, "steps": 30}))
    _wait(lambda: service.get(job.id).progress > 0, 120, "the job to run")
    ray.kill(ray.get_actor("host:slow-echo", namespace=service.settings.ray_namespace))
    final = service.wait(job.id, timeout_s=120)
    assert final.state == "succeeded" and final.attempts == 2 and set(final.outputs) == {"tokens"}
