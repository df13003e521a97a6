"""The job service facade used by the REST routes and the embedded batch CLI: submit, read, list, cancel, wait.

It validates a job against the registry, the zoo, the params schema and the input artifacts (their media type
must be what the pipeline reads) before anything is stored, applies the queue-depth cap, writes the record
with what the job was resolved to (model directory and class, pipeline target: nobody downstream resolves it
again) and sends ``run_job(job_id)`` to the kind's queue with the job's priority.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from kombu.exceptions import OperationalError

from pipelines.base import InputError
from workers.artifacts import Artifact, ArtifactNotFound, ArtifactOwners, ArtifactStore
from workers.celery_app import configure_celery, enqueue
from workers.jobspec import JobSpec, resolve_job
from workers.reaper import start_service_reaper
from workers.settings import Settings
from workers.shared_dir import SharedDir
from workers.store import JobError, JobRecord, JobStore

logger = logging.getLogger(__name__)


class QueueFull(Exception):
    """Too many queued jobs: the caller should come back after ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message, retry_after)
        self.message, self.retry_after = message, retry_after

    def __str__(self) -> str:
        return self.message


class ServiceUnavailable(Exception):
    """The broker refused the job; the job record was marked failed."""


class JobService:
    def __init__(self, settings: Settings, redis_url: str) -> None:
        self.settings, self.redis_url = settings, redis_url
        self.store = JobStore.from_url(redis_url, prefix=settings.key_prefix, job_ttl_s=settings.job_ttl_s,
                                       idempotency_ttl_s=settings.idempotency_ttl_s,
                                       dispatch_grace_s=settings.job_lease_s)
        self.artifacts = ArtifactStore(settings.artifacts_root)
        self.owners = ArtifactOwners(self.store.redis, settings.key_prefix)
        SharedDir(self.store.redis, settings.key_prefix, settings.artifacts_root).check_and_join("api")
        configure_celery(redis_url, settings)
        # Jobs of dead workers come back while any API lives.
        self._reaper_stop = start_service_reaper(settings, redis_url)

    def close(self) -> None:
        """Stop the reaper and the event hub, whose threads must not outlive an embedded Redis."""
        self._reaper_stop.set()
        self.store.event_hub.close()

    # -- artifacts ------------------------------------------------------------------------------------------
    def put_artifact(self, chunks: Iterable[bytes], filename: str | None, owner: str = "anonymous") -> Artifact:
        artifact = self.artifacts.put_stream(chunks, filename, self.settings.max_upload_bytes)
        if self.settings.api_keys:
            self.owners.add(owner, artifact.id)
        return artifact

    def owned_artifact(self, artifact_id: str, owner: str) -> Artifact:
        """The artifact, if ``owner`` uploaded it or got it as an output of one of its jobs; otherwise
        ``ArtifactNotFound``, as for an id that does not exist (another key's ids are not confirmed). Without API
        keys every caller is the one ``anonymous`` owner and owns every artifact."""
        artifact = self.artifacts.get(artifact_id)
        if self.settings.api_keys and not self.owners.owns(owner, artifact_id) and not self._is_output(
                artifact_id, owner):
            raise ArtifactNotFound(f"no artifact {artifact_id!r}")
        return artifact

    def _is_output(self, artifact_id: str, owner: str) -> bool:
        """An output of one of the owner's 100 newest succeeded jobs. A success records its outputs as the
        owner's (the store's transition); this covers jobs that finished before it did, and is bounded so that
        probing other keys' ids stays cheap."""
        jobs, _ = self.store.list(owner=owner, state="succeeded", limit=100)
        outputs = {a for job in jobs for a in job.outputs.values()}
        self.owners.add(owner, *outputs)
        return artifact_id in outputs

    # -- jobs -----------------------------------------------------------------------------------------------
    def submit(self, spec: JobSpec, *, owner: str = "anonymous", idempotency_key: str | None = None,
               zoo_only: bool = True) -> tuple[JobRecord, bool]:
        """Validate and queue one job; returns (job, created). A repeated idempotency key returns the first job."""
        resolved = resolve_job(spec, zoo_only=zoo_only)
        for name, artifact_id in spec.inputs.items():
            self._check_input(name, artifact_id, resolved.pipeline_class.inputs[name], spec.kind, owner)
        queued = sum(self.store.metrics.queued_count().values())
        if queued >= self.settings.max_queued_jobs:
            raise QueueFull(f"{queued} jobs are queued (limit {self.settings.max_queued_jobs})",
                            self.settings.queue_full_retry_after_s)
        job, created = self.store.create(kind=spec.kind, model=spec.model, family=resolved.job_kind.family,
                                         params=resolved.params.model_dump(mode="json"), inputs=spec.inputs,
                                         priority=spec.priority, target=resolved.target, owner=owner,
                                         idempotency_key=idempotency_key)
        if created:
            try:
                enqueue(job.id, job.family, job.priority)
            except OperationalError as err:
                self.store.finish(job.id, "failed", error=JobError(type="ServiceUnavailable", message=str(err)))
                raise ServiceUnavailable(f"the job queue is unavailable: {err}") from err
        return job, created

    def _check_input(self, name: str, artifact_id: str, media_kind: str, kind: str, owner: str) -> None:
        try:
            artifact = self.owned_artifact(artifact_id, owner)
        except ArtifactNotFound:
            raise InputError(f"input {name!r}: no artifact {artifact_id!r} (upload it with POST /v1/artifacts)"
                             ) from None
        if artifact.media_kind != media_kind:
            raise InputError(f"input {name!r}: artifact {artifact_id[:12]}... is {artifact.media_type}; "
                             f"{kind} reads {media_kind} there")

    def get(self, job_id: str) -> JobRecord | None:
        return self.store.get(job_id)

    def list(self, **filters: Any) -> tuple[list[JobRecord], float | None]:
        return self.store.list(**filters)

    def cancel(self, job_id: str) -> JobRecord | None:
        return self.store.cancel(job_id)

    def wait(self, job_id: str, timeout_s: float = 3600.0) -> JobRecord:
        """Block until the job is finished (through its event stream) and return the final record."""
        job = None  # the stream's last record is the whole record: no re-read
        for record in self.store.events(job_id, timeout_s=timeout_s, keepalive_s=timeout_s):
            job = record if record is not None else job
        if job is None:
            raise LookupError(f"job {job_id} does not exist (or expired)")
        if not job.finished:
            raise TimeoutError(f"job {job_id} is still {job.state} after {timeout_s:g} s")
        return job
