"""The Celery app: one queue per job family, interactive vs batch priority, late acks.

The broker only carries job ids; jobs are owned by leases in the job store and recovered by the reaper
(workers/leases.py, workers/reaper.py), so a message lost or held back by the broker delays nothing.
Settings that matter (shared/specs/service.md, pitfalls 1, 2 and 6):
- ``task_acks_late`` + ``task_reject_on_worker_lost``: a message is acknowledged after its task returned. On
  Redis an unacknowledged message comes back after ``visibility_timeout`` (long by default: a job still leased
  is then dropped, a finished one skipped).
- RabbitMQ (``MEDIAFORGE_BROKER_URL=amqp://...``): durable quorum queues (replicated, survive a broker restart)
  and publisher confirms (a send returns once the broker has the message). RabbitMQ 3.x quorum queues have no
  message priorities: interactive and batch jobs share first-in, first-out order there.
- ``worker_redirect_stdouts=False``: Ray's ``faulthandler.enable()`` needs a real stdout (celery#928).
- Workers run the threads (or solo) pool: Ray must never be initialised before a fork.
- Redis priorities: ten steps, 0 is the highest (interactive 0, batch 6).
"""

from __future__ import annotations

from celery import Celery
from kombu import Queue
from kombu.exceptions import ChannelError

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


def is_amqp(url: str) -> bool:
    return url.startswith(("amqp://", "amqps://", "pyamqp://"))


def configure_celery(redis_url: str, settings: Settings) -> Celery:
    """Point the process-wide app at its broker (the job store's Redis unless ``broker_url`` says otherwise)."""
    broker = settings.broker_url or broker_url(redis_url)
    app.conf.update(
        broker_url=broker,
        mediaforge_redis_url=redis_url,
        task_ignore_result=True,  # results live in the job store, not in a Celery backend
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
        **(_rabbitmq_options() if is_amqp(broker) else _redis_options(settings)),
    )
    return app


def _redis_options(settings: Settings) -> dict:
    return {
        "task_queues": [Queue(family) for family in QUEUE_FAMILIES],
        "broker_transport_options": {
            "visibility_timeout": settings.visibility_timeout_s,
            "unacked_restore_interval": settings.unacked_restore_interval_s,
            "unacked_restore_throttle": 1,
            "priority_steps": list(range(10)),
            "sep": ":",
        },
    }


def _rabbitmq_options() -> dict:
    return {
        "task_queues": [Queue(family, durable=True, queue_arguments={"x-queue-type": "quorum"})
                        for family in QUEUE_FAMILIES],
        "broker_transport_options": {"confirm_publish": True},
    }


def queue_depth(family: str) -> int:
    """Messages waiting in a family's queue (0 when the broker has no such queue yet)."""
    with app.connection_for_read() as connection:
        try:
            return connection.default_channel.queue_declare(queue=family, passive=True).message_count
        except ChannelError:
            return 0


def enqueue(job_id: str, family: str, priority: str) -> None:
    """Send ``run_job(job_id)`` to the family's queue; only the id crosses the broker."""
    if family not in QUEUE_FAMILIES:
        raise ValueError(f"unknown queue family {family!r}; known: {QUEUE_FAMILIES}")
    app.send_task("mediaforge.run_job", args=[job_id], queue=family, priority=PRIORITIES[priority])
