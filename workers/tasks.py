"""``run_job(job_id)``: the one Celery task. A thin shell: load the job, lease it, call its model host.

It runs what the job record's ``target`` names (resolved once, at submit): no registry, zoo or params lookups.

The job, not the message, is what a worker owns (workers/leases.py): the task takes the job's lease and renews it
every third of the lease while the host works; the host records the final state itself, so a result outlives
this task. A delivery of a job that someone else holds is acknowledged and dropped: the holder finishes it, and
if the holder dies the reaper (workers/reaper.py) sends the job again once its lease lapses. Nothing here needs
the broker after the message arrived: a host lost mid-job is retried in this task on a new host, and a job-store
outage is waited out (workers/retry.py). The terminal transition is one atomic check, so a job finishes once.
Bad input fails the job at once.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
from celery.signals import worker_ready
from celery.utils.log import get_task_logger

from pipelines.base import InputError
from pipelines.zoo import ModelRef
from workers.artifacts import ArtifactNotFound, ArtifactStore
from workers.celery_app import app
from workers.hosts import StoreAddress, failed_answer, init_ray, record_answer
from workers.jobspec import JobSpec, resolve_job
from workers.leases import LeaseKeeper
from workers.reaper import start_service_reaper
from workers.replicas import HostPool
from workers.retry import STORE_FAULTS, until_reachable
from workers.settings import Settings, get_settings
from workers.store import JobRecord, JobStore, JobTarget

logger = get_task_logger(__name__)

HOST_LOST = (ray.exceptions.RayActorError, ray.exceptions.ObjectLostError)
"""The model host died under the job: a new host can run it (``ActorUnavailableError``, a subclass, is caught
first: a host that cannot be reached now is asked again, not replaced)."""
UNAVAILABLE_RETRY_S = 2.0
"""How long a task waits before asking an unreachable model host again."""


@dataclass
class WorkerContext:
    settings: Settings
    store: JobStore
    artifacts: ArtifactStore
    hosts: HostPool
    keeper: LeaseKeeper


_context: WorkerContext | None = None
_context_lock = threading.Lock()


def worker_context() -> WorkerContext:
    """Built once per worker process from the settings and the Redis the Celery app was configured with."""
    global _context
    with _context_lock:
        if _context is None:
            settings = get_settings()
            redis_url = app.conf.mediaforge_redis_url
            store = JobStore.from_url(redis_url, prefix=settings.key_prefix, job_ttl_s=settings.job_ttl_s,
                                      idempotency_ttl_s=settings.idempotency_ttl_s)
            connect_ray(settings)
            hosts = HostPool(settings, StoreAddress.of(settings, redis_url))
            _context = WorkerContext(settings, store, ArtifactStore(settings.artifacts_root), hosts,
                                     LeaseKeeper(store.leases, settings.job_lease_s))
        return _context


def reset_worker_context() -> None:
    """Forget the cached context (embedded runtimes and tests that restart with other settings)."""
    global _context
    with _context_lock:
        if _context is not None:
            _context.keeper.close()
        _context = None


def connect_ray(settings: Settings) -> None:
    """Join the cluster at ``RAY_ADDRESS`` (or start a local Ray) in this process, after any fork."""
    if not ray.is_initialized():
        init_ray(address=settings.ray_address, namespace=settings.ray_namespace, include_dashboard=False,
                 log_to_driver=False, configure_logging=False)


@worker_ready.connect
def _start_reaper(**_: Any) -> None:
    """Every worker sweeps for jobs whose runner died, so one surviving worker is enough to recover them."""
    start_service_reaper(get_settings(), app.conf.mediaforge_redis_url)


@app.task(name="mediaforge.run_job", bind=True, acks_late=True, reject_on_worker_lost=True)
def run_job(self: Any, job_id: str) -> str:
    ctx = worker_context()
    # Unique per execution: a redelivered message has the same task id and may reach the same worker.
    holder = f"{self.request.hostname}/{self.request.id}/{uuid.uuid4().hex[:8]}"
    job = _store_call(ctx, lambda: ctx.store.get(job_id), job_id)
    if job is None or job.finished:
        return "skipped"
    if not _store_call(ctx, lambda: ctx.store.leases.acquire(job_id, holder, ctx.settings.job_lease_s), job_id):
        return "skipped"  # its holder runs it; should the holder die, the reaper sends it again
    ctx.keeper.add(job_id, holder)
    try:
        if not _store_call(ctx, lambda: ctx.store.start(job_id).moved, job_id):
            return "skipped"
        answer = _run(ctx, job, holder)
        if answer.get("recorded"):
            return answer["recorded"]
        return _store_call(ctx, lambda: record_answer(ctx.store, job_id, answer), job_id)
    finally:
        ctx.keeper.discard(job_id)
        with contextlib.suppress(*STORE_FAULTS):
            ctx.store.leases.release(job_id, holder)


def _store_call(ctx: WorkerContext, call: Any, job_id: str) -> Any:
    return until_reachable(call, ctx.settings.store_retry_s, f"job {job_id}")


def _run(ctx: WorkerContext, job: JobRecord, holder: str) -> dict[str, Any]:
    """The host's answer, on a new host after each one lost mid-job (``task_max_retries`` times)."""
    attempt = 0
    while True:
        try:
            return _execute(ctx, job, holder)
        except HOST_LOST as err:
            if attempt >= ctx.settings.task_max_retries:
                return failed_answer(err)
            logger.warning("job %s: model host lost (%r), retrying on a new host", job.id, err)
            time.sleep(min(2.0 ** attempt, 30.0))  # the lease keeper holds the job meanwhile
            attempt += 1
        except Exception as err:
            logger.exception("job %s failed", job.id)
            return failed_answer(err)


def _execute(ctx: WorkerContext, job: JobRecord, holder: str) -> dict[str, Any]:
    try:
        target = job.target or _resolve_legacy(job)
        inputs = {name: (str(ctx.artifacts.path(aid)), ctx.artifacts.get(aid).filename)
                  for name, aid in job.inputs.items()}
    except (InputError, ArtifactNotFound) as err:
        return failed_answer(err)
    model = ModelRef(target.model_name, Path(target.model_dir), target.model_class)
    deadline = time.monotonic() + ctx.settings.host_call_timeout_s
    with ctx.hosts.using(model, prefer=job.host) as replica:
        while True:
            try:
                return _call_host(ctx, replica.handle, job, target.pipeline, inputs, holder, deadline)
            except ray.exceptions.ActorUnavailableError as err:
                # Unreachable for now (a partition, a node under load), not known dead: ask the same replica again
                # (it joins the job to its running call, or answers it from memory) until Ray says it died.
                logger.warning("job %s: model host %s unreachable (%s), asking it again", job.id, replica.name, err)
                time.sleep(UNAVAILABLE_RETRY_S)
            except HOST_LOST:
                ctx.hosts.forget(model, replica.name)
                raise


def _resolve_legacy(job: JobRecord) -> JobTarget:
    """A record queued before jobs were resolved at submit carries no target: resolve it here, this once."""
    return resolve_job(JobSpec(kind=job.kind, model=job.model, inputs=job.inputs, params=job.params)).target


def _call_host(ctx: WorkerContext, host: Any, job: JobRecord, pipeline: str, inputs: dict[str, tuple[str, str]],
               holder: str, deadline: float) -> dict[str, Any]:
    """Wait for the host's answer (the lease keeper and the host renew the lease meanwhile; the host reports the
    job's progress and reads its cancel request in the store itself)."""
    ref = host.run.remote(job.id, pipeline, inputs, job.params, holder)
    ready, _ = ray.wait([ref], timeout=max(deadline - time.monotonic(), 0))
    if ready:
        return ray.get(ref)
    ray.cancel(ref)
    return failed_answer(TimeoutError(f"ran past {ctx.settings.host_call_timeout_s:g} s"))
