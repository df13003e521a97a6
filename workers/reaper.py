"""The lease reaper: puts jobs whose runner is gone back on their queue, whatever the broker remembers.

Every Celery worker and every API process runs one (``start_reaper``), so any one surviving process suffices.
A sweep reads the jobs whose deadline passed (workers/leases.py). For each, it takes the job's lease itself, which
only succeeds when no live runner holds it, and then:

- a finished or expired job is dropped from the deadlines;
- a running job (its worker died, or gave up while Redis was down) moves back to queued and is sent again;
- a queued job is sent again only if its queue is empty: then its message was lost (an API killed between the
  record and the send, a broker that dropped it); in a deep queue its message is simply still waiting.

The reaper's lease pushes the deadline one lease ahead before anything is sent, and is released before the send,
so a reaper that dies midway leaves the job for the next sweep, and a worker that receives the message can take
the lease at once. A message sent twice is harmless: a job is run by whoever holds its lease, once.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable

from workers.celery_app import enqueue, queue_depth
from workers.records import JobRecord
from workers.retry import STORE_FAULTS
from workers.settings import Settings
from workers.store import JobStore

logger = logging.getLogger(__name__)

Enqueue = Callable[[JobRecord], None]
QueueDepth = Callable[[str], int]


class Reaper:
    def __init__(self, store: JobStore, enqueue: Enqueue, queue_depth: QueueDepth, lease_s: float) -> None:
        self.store, self.enqueue, self.queue_depth, self.lease_s = store, enqueue, queue_depth, lease_s
        self.holder = f"reaper:{uuid.uuid4().hex[:12]}"

    def sweep(self) -> int:
        """One pass over the expired deadlines; returns how many jobs were sent again."""
        sent = 0
        for job_id in self.store.leases.expired():
            job = self._claim(job_id)
            if job is not None:
                self.enqueue(job)
                sent += 1
        return sent

    def _claim(self, job_id: str) -> JobRecord | None:
        """The job to send again, with the reaper's lease taken and released; None when nothing is to be done."""
        if not self.store.leases.acquire(job_id, self.holder, self.lease_s):
            return None  # a live runner renewed it (or another reaper is on it)
        try:
            job = self.store.get(job_id)
            if job is None or job.finished:
                self.store.leases.forget(job_id)
                return None
            if job.state == "queued" and self.queue_depth(job.family) > 0:
                return None  # its message is still in the queue; look again after another grace period
            if job.state == "running" and not self.store.requeue(job_id, "requeued: its runner is gone").moved:
                return None  # its host recorded it meanwhile
            self.store.metrics.count("requeued")
            logger.warning("job %s (%s) lost its runner; sending it to the %s queue again", job_id, job.state,
                           job.family)
            return job
        finally:
            self.store.leases.release(job_id, self.holder)

    def run(self, interval_s: float, stop: threading.Event) -> None:
        """Sweep every ``interval_s`` until ``stop``; an unreachable store or broker only skips a sweep."""
        while not stop.wait(interval_s):
            try:
                self.sweep()
            except (*STORE_FAULTS, OSError) as err:
                logger.warning("reaper: sweep skipped (%s)", err)
            except Exception:  # the reaper must outlive any one bad sweep
                logger.exception("reaper: sweep failed")


_running: dict[str, threading.Event] = {}
_running_lock = threading.Lock()


def start_reaper(key: str, reaper: Reaper, interval_s: float) -> threading.Event:
    """Run ``reaper`` on a daemon thread, once per process and job store (``key``); returns its stop event."""
    with _running_lock:
        if key in _running and not _running[key].is_set():
            return _running[key]
        stop = _running[key] = threading.Event()
    threading.Thread(target=reaper.run, args=(interval_s, stop), name="mediaforge-reaper", daemon=True).start()
    return stop


def start_service_reaper(settings: Settings, redis_url: str) -> threading.Event:
    """The reaper of the job store at ``redis_url``, sending through the configured Celery app."""
    store = JobStore.from_url(redis_url, prefix=settings.key_prefix, job_ttl_s=settings.job_ttl_s,
                              dispatch_grace_s=settings.job_lease_s)
    reaper = Reaper(store, lambda job: enqueue(job.id, job.family, job.priority), queue_depth, settings.job_lease_s)
    return start_reaper(f"{redis_url}|{settings.key_prefix}", reaper, settings.reaper_interval_s)
