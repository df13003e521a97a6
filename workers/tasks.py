"""``run_job(job_id)``: the one Celery task. A thin shell: load the job, lease it, call its model host, store.

It runs what the job record's ``target`` names (resolved once, at submit): no registry, zoo or params lookups.

Idempotent by construction: a finished job is skipped; a lease (a Redis key renewed while the job runs) keeps a
second delivery of a running job from running it twice at once; the terminal transition is one atomic check, so
a job finishes once, and its outputs are content-addressed, so a re-run after a lost worker writes the same ids.
Only transient faults (Ray actor lost, Redis connection) are retried; bad input fails the job at once.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
import redis
from celery.utils.log import get_task_logger

from pipelines.base import InputError
from pipelines.zoo import ModelRef
from workers.artifacts import ArtifactNotFound, ArtifactStore
from workers.celery_app import app
from workers.hosts import HostPool, init_ray
from workers.jobspec import JobSpec, resolve_job
from workers.settings import Settings, get_settings
from workers.store import JobError, JobRecord, JobStore, JobTarget

logger = get_task_logger(__name__)

TRANSIENT = (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError, ray.exceptions.ObjectLostError,
             ray.exceptions.GetTimeoutError, redis.ConnectionError, redis.TimeoutError)


@dataclass
class WorkerContext:
    settings: Settings
    store: JobStore
    artifacts: ArtifactStore
    hosts: HostPool


_context: WorkerContext | None = None
_context_lock = threading.Lock()


def worker_context() -> WorkerContext:
    """Built once per worker process from the settings and the Redis the Celery app was configured with."""
    global _context
    with _context_lock:
        if _context is None:
            settings = get_settings()
            store = JobStore.from_url(app.conf.mediaforge_redis_url, prefix=settings.key_prefix,
                                      job_ttl_s=settings.job_ttl_s, idempotency_ttl_s=settings.idempotency_ttl_s)
            connect_ray(settings)
            _context = WorkerContext(settings, store, ArtifactStore(settings.artifacts_root), HostPool(settings))
        return _context


def reset_worker_context() -> None:
    """Forget the cached context (embedded runtimes and tests that restart with other settings)."""
    global _context
    with _context_lock:
        _context = None


def connect_ray(settings: Settings) -> None:
    """Join the cluster at ``RAY_ADDRESS`` (or start a local Ray) in this process, after any fork."""
    if not ray.is_initialized():
        init_ray(address=settings.ray_address, namespace=settings.ray_namespace, include_dashboard=False,
                 log_to_driver=False, configure_logging=False)


@app.task(name="mediaforge.run_job", bind=True, acks_late=True, reject_on_worker_lost=True)
def run_job(self: Any, job_id: str) -> str:
    ctx = worker_context()
    job = ctx.store.get(job_id)
    if job is None or job.finished:
        return "skipped"
    # Unique per execution: a redelivered message has the same task id and may reach the same worker.
    holder = f"{self.request.hostname}/{self.request.id}/{uuid.uuid4().hex[:8]}"
    if not _wait_for_lease(ctx, job_id, holder):
        return "skipped"
    try:
        if not ctx.store.start(job_id).moved:
            return "skipped"
        try:
            answer = _execute(ctx, job, holder)
        except TRANSIENT as err:
            if self.request.retries >= ctx.settings.task_max_retries:
                ctx.store.finish(job_id, "failed", error=JobError(type=type(err).__name__, message=str(err)))
                return "failed"
            logger.warning("job %s: transient fault %r, retrying", job_id, err)
            raise self.retry(exc=err, countdown=min(2 ** self.request.retries, 30)) from err
        except Exception as err:
            logger.exception("job %s failed", job_id)
            ctx.store.finish(job_id, "failed", error=JobError(type=type(err).__name__, message=str(err)))
            return "failed"
        return _record(ctx, job, answer)
    finally:
        ctx.store.leases.release(job_id, holder)


def _wait_for_lease(ctx: WorkerContext, job_id: str, holder: str) -> bool:
    """Take the job's lease, waiting while another delivery holds it; False if the job finished meanwhile.

    A redelivery can overtake a run that is still alive (a job longer than the visibility timeout, or the runner
    died and its lease has not lapsed yet). It waits here with its one message unacked, so a crash still hands it
    on, rather than acking it and publishing a delayed copy with ``Task.retry``.
    """
    while not ctx.store.leases.acquire(job_id, holder, ctx.settings.job_lease_s):
        job = ctx.store.get(job_id)
        if job is None or job.finished:
            return False
        time.sleep(min(max(ctx.store.leases.ttl(job_id), 0.05), ctx.settings.poll_interval_s))
    return True


def _execute(ctx: WorkerContext, job: JobRecord, holder: str) -> dict[str, Any]:
    try:
        target = job.target or _resolve_legacy(job)
        inputs = {name: (str(ctx.artifacts.path(aid)), ctx.artifacts.get(aid).filename)
                  for name, aid in job.inputs.items()}
    except (InputError, ArtifactNotFound) as err:
        return {"status": "failed", "error": {"type": type(err).__name__, "message": str(err)}}
    model = ModelRef(target.model_name, Path(target.model_dir), target.model_class)
    try:
        return _call_host(ctx, job, model, target.pipeline, inputs, holder)
    except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError):
        ctx.hosts.forget(model)
        raise


def _resolve_legacy(job: JobRecord) -> JobTarget:
    """A record queued before jobs were resolved at submit carries no target: resolve it here, this once."""
    return resolve_job(JobSpec(kind=job.kind, model=job.model, inputs=job.inputs, params=job.params)).target


def _call_host(ctx: WorkerContext, job: JobRecord, model: ModelRef, pipeline: str,
               inputs: dict[str, tuple[str, str]], holder: str) -> dict[str, Any]:
    """Wait for the host's answer, relaying progress and a cancel request at every poll."""
    host = ctx.hosts.get(model)
    ref = host.run.remote(job.id, pipeline, inputs, job.params)
    deadline = time.monotonic() + ctx.settings.host_call_timeout_s
    cancel_sent, last, asked = False, None, None
    while True:
        ready, _ = ray.wait([ref], timeout=ctx.settings.poll_interval_s)
        if ready:
            return ray.get(ref)
        if time.monotonic() > deadline:
            ray.cancel(ref)
            return {"status": "failed", "error": {"type": "TimeoutError",
                                                  "message": f"ran past {ctx.settings.host_call_timeout_s:g} s"}}
        ctx.store.leases.renew(job.id, holder, ctx.settings.job_lease_s)
        if not cancel_sent and ctx.store.cancel_requested(job.id):
            host.cancel.remote(job.id)
            cancel_sent = True
        # Never block on the host here (it may still be loading its model): ask, and read the answer next time.
        if asked is not None and ray.wait([asked], timeout=0)[0]:
            progress, asked = ray.get(asked), None
            if progress is not None and progress != last:
                last = progress
                ctx.store.set_progress(job.id, *progress)
        if asked is None:
            asked = host.progress.remote(job.id)


def _record(ctx: WorkerContext, job: JobRecord, answer: dict[str, Any]) -> str:
    """Store the host's answer: one round trip for the batch-size observation, one for the final state."""
    if "batch_size" in answer:
        ctx.store.metrics.observe("batch_size", job.model, answer["batch_size"])
    status = answer["status"]
    if status == "succeeded":
        moved = ctx.store.finish(job.id, "succeeded", outputs=answer["outputs"])
    elif status == "cancelled":
        moved = ctx.store.finish(job.id, "cancelled")
    else:
        moved = ctx.store.finish(job.id, "failed", error=JobError(**answer["error"]))
    return moved.state or status
