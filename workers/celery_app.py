"""The Celery app: one queue per job family, interactive vs batch priority, late acks, fast redelivery.

Settings that matter (shared/specs/service.md, pitfalls 1, 2 and 6):
- ``task_acks_late`` + ``task_reject_on_worker_lost``: a worker killed mid-job leaves its message unacked, and
  Redis hands it to another worker after ``visibility_timeout``; the job id makes the re-run idempotent.
- ``unacked_restore_interval`` / ``unacked_restore_throttle=1``: kombu's default sweep runs about every 100 s,
  so a lost job would wait that long on top of the visibility timeout.
- ``worker_redirect_stdouts=False``: Ray's ``faulthandler.enable()`` needs a real stdout (celery#928).
- Workers run the threads (or solo) pool: Ray must never be initialised before a fork.
- Redis priorities: ten steps, 0 is the highest (interactive 0, batch 6).
"""

from __future__ import annotations

from celery import Celery
from kombu import Queue

from workers.settings import Settings

QUEUE_FAMILIES = ("image", "audio", "speech", "generate")
PRIORITIES = {"interactive": 0, "batch": 6}

app = Celery("mediaforge", include=["workers.tasks"])
# The default app of every thread: the threads pool runs each task in a fresh thread, where Celery's current_app
# would otherwise be a new unconfigured app (broker amqp://localhost), so a task's ``self.retry`` published its
# copy to whatever listened on localhost:5672 and the job never ran again.
app.set_default()


def broker_url(redis_url: str) -> str:
    """redis-py's ``unix:///path.sock`` is kombu's ``redis+socket:///path.sock``; TCP URLs are the same."""
    if redis_url.startswith("unix://"):
        return "redis+socket://" + redis_url.removeprefix("unix://")
    return redis_url


def configure_celery(redis_url: str, settings: Settings) -> Celery:
    """Point the process-wide app at a Redis (the embedded one or a cluster's) and apply the service policy."""
    app.conf.update(
        broker_url=broker_url(redis_url),
        mediaforge_redis_url=redis_url,
        task_ignore_result=True,  # results live in the job store, not in a Celery backend
        task_queues=[Queue(family) for family in QUEUE_FAMILIES],
        task_default_queue="audio",
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_acks_on_failure_or_timeout=True,
        worker_prefetch_multiplier=1,
        worker_redirect_stdouts=False,
        worker_hijack_root_logger=False,
        worker_send_task_events=True,  # received / started / succeeded / failed, for Flower and `celery events`
        task_serializer="json",
        accept_content=["json"],
        broker_connection_retry_on_startup=True,
        broker_transport_options={
            "visibility_timeout": settings.visibility_timeout_s,
            "unacked_restore_interval": settings.unacked_restore_interval_s,
            "unacked_restore_throttle": 1,
            "priority_steps": list(range(10)),
            "sep": ":",
        },
    )
    return app


def enqueue(job_id: str, family: str, priority: str) -> None:
    """Send ``run_job(job_id)`` to the family's queue; only the id crosses the broker."""
    if family not in QUEUE_FAMILIES:
        raise ValueError(f"unknown queue family {family!r}; known: {QUEUE_FAMILIES}")
    app.send_task("mediaforge.run_job", args=[job_id], queue=family, priority=PRIORITIES[priority])
