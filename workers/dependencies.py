"""Running workflows (workers/workflows.py) as dependency records in the job store, not as Celery chords.

Why not chains or chords: they keep the graph in the broker (a chord's counter, a chain's next signature inside
a message), which the crash-safety design avoids (README "## Crash safety": jobs are owned by leases in the
store, and a message may be lost or sent twice). Here the store holds everything, and every step is an
ordinary job submitted through ``JobService.submit``, so validation, the queue cap, retries, leases, the reaper,
cancellation, idempotency and metrics are the jobs' own.

- ``<p>:workflow:<id>`` (hash): the checked document, its owner, and ``job:<step>`` -> the step's job id once
  the step was submitted; ``<p>:workflows`` indexes them by creation time, ``<p>:workflows:active`` holds the
  unfinished ones, ``<p>:wfidem:<owner>:<key hash>`` an Idempotency-Key.
- ``advance`` submits every step whose producers all succeeded, with their output artifact ids as its inputs,
  under the job Idempotency-Key ``workflow:<id>:<step>:<attempt>``: of any number of processes advancing one
  workflow at once (or again after a crash) exactly one creates and enqueues the step's job. A step submitted
  but never sent (its process died in between) is a queued job with a dispatch deadline: the reaper sends it.
- Every process with a ``WorkflowRunner`` (each API, the embedded batch CLI) advances the active workflows
  every ``interval_s``, so a step starts at most that long after its last producer finished, whichever worker
  ran it or died after it; a worker killed mid-step is the reaper's, as for any job.
- A failed step fails the workflow: its unfinished steps are cancelled and nothing more is submitted.
  Cancelling the workflow cancels its steps. Resubmitting a failed or cancelled workflow with its
  Idempotency-Key runs again only the steps that did not succeed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from pipelines.base import InputError
from workers.keyspace import Keyspace
from workers.records import TERMINAL, JobRecord, decode_record
from workers.retry import STORE_FAULTS
from workers.service import JobService, QueueFull
from workers.store import IdempotencyConflict
from workers.workflows import CheckedWorkflow, StepSpec, WorkflowSpec, check_workflow

logger = logging.getLogger(__name__)

# KEYS: workflow hash, workflows index, active set, then the Idempotency-Key's key (optional).
# ARGV: workflow id, created_at, idempotency ttl, the prefix of workflow hashes, then the record's field/value pairs.
# Returns the id of the workflow the key names (this one when it was created). One script, so of N requests
# racing with one key exactly one creates its workflow; a key whose workflow expired starts anew.
_CREATE = """
if KEYS[4] then
  local held = redis.call('GET', KEYS[4])
  if held and redis.call('EXISTS', ARGV[4] .. held) == 1 then return held end
  redis.call('SET', KEYS[4], ARGV[1], 'EX', ARGV[3])
end
redis.call('HSET', KEYS[1], unpack(ARGV, 5))
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])
return ARGV[1]
"""

CHECKED_KEPT = 4096
"""Checked documents a runner keeps (a few KB each)."""
WAITING = "waiting"
"""A step not submitted yet: its inputs are not all there."""
SKIPPED = "skipped"
"""A step that will not run: the workflow failed or was cancelled before its inputs were there."""


@dataclass
class StepView:
    name: str
    spec: StepSpec
    state: str
    job: JobRecord | None = None


@dataclass
class WorkflowView:
    """A workflow as read now: its state follows from its steps' job records."""

    id: str
    owner: str
    state: str
    created_at: float
    steps: dict[str, StepView]
    error: str | None = None
    outputs: dict[str, dict[str, str]] = field(default_factory=dict)
    """Sink step -> its outputs (output name -> artifact id), once the workflow succeeded."""
    cancel_requested: bool = False

    @property
    def finished(self) -> bool:
        return self.state in TERMINAL


@dataclass
class _Loaded:
    record: dict[str, str]
    workflow: CheckedWorkflow
    jobs: dict[str, JobRecord | None]
    """Submitted steps' records (None: the record expired)."""


class WorkflowRunner(Keyspace):
    def __init__(self, service: JobService, interval_s: float = 0.2) -> None:
        super().__init__(service.store.redis, service.settings.key_prefix)
        self.service, self.store = service, service.store
        self._create = self.redis.register_script(_CREATE)
        self._checked: OrderedDict[str, CheckedWorkflow] = OrderedDict()
        """Workflow id -> its checked document (it never changes): a pass does not resolve every step again."""
        self._checked_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._drive, args=(interval_s,), name="mediaforge-workflows",
                                        daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop advancing (before the store's Redis goes away: a pass in flight finishes first)."""
        self._stop.set()
        self._thread.join(timeout=30)

    # -- submit -----------------------------------------------------------------------------------------------
    def submit(self, spec: WorkflowSpec, *, owner: str = "anonymous", idempotency_key: str | None = None,
               zoo_only: bool = True) -> tuple[WorkflowView, bool]:
        """Check, record and start a workflow; returns (workflow, created). A repeated key returns the first one
        (and runs again the steps of a failed or cancelled one that did not succeed)."""
        checked = check_workflow(spec, zoo_only=zoo_only)
        for name, step in checked.steps.items():
            for field_name, artifact_id in step.spec.files().items():
                self._check_artifact(name, field_name, artifact_id, step.resolved.pipeline_class.inputs[field_name],
                                     owner)
        roots = sum(1 for s in spec.steps.values() if not s.needs())
        queued = sum(self.store.metrics.queued_count().values())
        if queued + roots > self.service.settings.max_queued_jobs:
            raise QueueFull(f"{queued} jobs are queued (limit {self.service.settings.max_queued_jobs})",
                            self.service.settings.queue_full_retry_after_s)
        document = spec.model_dump(mode="json", by_alias=True)
        digest = _hash(document)
        workflow_id, now = uuid.uuid4().hex, time.time()
        keys = [self._key(workflow_id), self._k("workflows"), self._k("workflows", "active")]
        if idempotency_key is not None:
            keys.append(self._k("wfidem", owner, hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]))
        record = {"id": workflow_id, "owner": owner, "created_at": repr(now), "spec": json.dumps(document),
                  "spec_hash": digest, "zoo_only": "1" if zoo_only else "0"}
        held = self._create(keys=keys, args=[workflow_id, repr(now), self.service.settings.idempotency_ttl_s,
                                             self._key(""), *[item for pair in record.items() for item in pair]])
        created = held == workflow_id
        if not created:
            if self.redis.hget(self._key(held), "spec_hash") != digest:
                raise IdempotencyConflict("this Idempotency-Key was already used for a different workflow")
            self._retry_unsucceeded(held)
        self.advance(held)
        view = self.get(held)
        if view is None:
            raise LookupError(f"workflow {held} expired while it was submitted")
        return view, created

    def _check_artifact(self, step: str, name: str, artifact_id: str, media_kind: str, owner: str) -> None:
        from workers.artifacts import ArtifactNotFound

        try:
            artifact = self.service.owned_artifact(artifact_id, owner)
        except ArtifactNotFound:
            raise InputError(f"step {step!r} inputs.{name}: no artifact {artifact_id!r} (upload it with "
                             f"POST /v1/artifacts)") from None
        if artifact.media_kind != media_kind:
            raise InputError(f"step {step!r} inputs.{name}: artifact {artifact_id[:12]}... is "
                             f"{artifact.media_type}; the step reads {media_kind} there")

    def _retry_unsucceeded(self, workflow_id: str) -> None:
        """A replayed key of a failed or cancelled workflow: forget its steps that did not succeed (their next
        attempt gets a new job key) and make it active again. One retry at a time per workflow."""
        view = self.get(workflow_id)
        if view is None or view.state not in ("failed", "cancelled"):
            return
        if not self.redis.set(self._k("wfretry", workflow_id), "1", nx=True, px=5000):
            return
        key = self._key(workflow_id)
        for name, step in view.steps.items():
            if step.state != "succeeded":
                self.redis.hincrby(key, f"attempt:{name}", 1)
                self.redis.hdel(key, f"job:{name}")
        self.redis.hdel(key, "cancel_requested", "error", "finished_at")
        self.redis.persist(key)
        self.redis.zadd(self._k("workflows", "active"), {workflow_id: time.time()})

    # -- advance ----------------------------------------------------------------------------------------------
    def advance(self, workflow_id: str) -> None:
        """Submit every step whose inputs are all there; cancel the rest of a failed or cancelled workflow; drop
        a finished workflow from the active set. Safe to call from any number of processes at once."""
        loaded = self._load(workflow_id)
        if loaded is None:
            self.redis.zrem(self._k("workflows", "active"), workflow_id)
            return
        jobs, workflow, record = loaded.jobs, loaded.workflow, loaded.record
        cancelling = record.get("cancel_requested") == "1"
        failed = record.get("error") or next((f"step {n!r} {j.state}" for n, j in jobs.items() if j is not None and (
            j.state == "failed" or (j.state == "cancelled" and not cancelling))), None)
        if failed or cancelling:
            if failed and not record.get("error"):
                self.redis.hsetnx(self._key(workflow_id), "error", failed)
            for job in jobs.values():
                if job is not None and not job.finished:
                    self.service.cancel(job.id)
        else:
            for name in workflow.order:
                if name not in jobs and self._ready(workflow, name, jobs) and (
                        job := self._submit_step(workflow_id, record, workflow, name, jobs)) is not None:
                    jobs[name] = job
        view = self._view(loaded)
        if view.finished:
            self.redis.hsetnx(self._key(workflow_id), "finished_at", repr(time.time()))
            self.redis.expire(self._key(workflow_id), self.store.job_ttl_s)  # as its steps' jobs do
            self.redis.zrem(self._k("workflows", "active"), workflow_id)
            with self._checked_lock:
                self._checked.pop(workflow_id, None)

    def _ready(self, workflow: CheckedWorkflow, name: str, jobs: dict[str, JobRecord | None]) -> bool:
        needs = workflow.steps[name].spec.needs().values()
        return all((job := jobs.get(ref.step)) is not None and job.state == "succeeded" for ref in needs)

    def _submit_step(self, workflow_id: str, record: dict[str, str], workflow: CheckedWorkflow, name: str,
                     jobs: dict[str, JobRecord | None]) -> JobRecord | None:
        """The step's job (created by this call or an earlier one under the same key); None when it is not
        submitted now (the queue is full: the next pass tries again)."""
        step = workflow.steps[name].spec
        inputs = step.files()
        for field_name, ref in step.needs().items():
            producer = jobs[ref.step]
            artifact_id = producer.outputs.get(ref.output) if producer is not None else None
            if artifact_id is None:
                self.redis.hsetnx(self._key(workflow_id), "error", f"step {name!r} inputs.{field_name}: step "
                                  f"{ref.step!r} wrote no output {ref.output!r}")
                return None
            inputs[field_name] = artifact_id
        attempt = record.get(f"attempt:{name}", "0")
        try:
            job, _ = self.service.submit(step.job(inputs), owner=record["owner"],
                                         idempotency_key=f"workflow:{workflow_id}:{name}:{attempt}",
                                         zoo_only=record.get("zoo_only") == "1")
        except QueueFull:
            return None
        except InputError as err:  # e.g. an input artifact deleted since the workflow was checked
            self.redis.hsetnx(self._key(workflow_id), "error", f"step {name!r}: {err}")
            return None
        self.redis.hset(self._key(workflow_id), f"job:{name}", job.id)
        if self.redis.hget(self._key(workflow_id), "cancel_requested") == "1":
            self.service.cancel(job.id)  # a cancel that read the steps before this one was recorded
        return job

    def _drive(self, interval_s: float) -> None:
        """Advance every active workflow every ``interval_s``; an unreachable store only skips a pass."""
        while not self._stop.wait(interval_s):
            try:
                for workflow_id in self.redis.zrange(self._k("workflows", "active"), 0, 999):
                    self.advance(workflow_id)
            except STORE_FAULTS as err:  # Redis restarting (or gone at shutdown): the next pass tries again
                logger.warning("workflows: pass skipped (%s)", err)
            except Exception:  # the driver must outlive any one bad pass
                logger.exception("workflows: pass failed")

    # -- read / cancel / wait -----------------------------------------------------------------------------------
    def get(self, workflow_id: str) -> WorkflowView | None:
        loaded = self._load(workflow_id)
        return self._view(loaded) if loaded is not None else None

    def list(self, *, owner: str, limit: int = 50) -> list[WorkflowView]:
        """The owner's newest workflows (a scan of the newest ``10 * limit`` of everyone's)."""
        found = []
        for workflow_id in self.redis.zrevrange(self._k("workflows"), 0, 10 * limit - 1):
            held_by = self.redis.hget(self._key(workflow_id), "owner")
            if held_by is None:
                self.redis.zrem(self._k("workflows"), workflow_id)  # expired: drop it from the index
            elif held_by == owner and (view := self.get(workflow_id)):
                found.append(view)
                if len(found) == limit:
                    break
        return found

    def cancel(self, workflow_id: str) -> WorkflowView | None:
        """Cancel every unfinished step (running ones stop at their next progress point); submit nothing more."""
        if not self.redis.exists(self._key(workflow_id)):
            return None
        self.redis.hset(self._key(workflow_id), "cancel_requested", "1")
        self.advance(workflow_id)
        return self.get(workflow_id)

    def wait(self, workflow_id: str, timeout_s: float = 3600.0, poll_s: float = 0.2) -> WorkflowView:
        deadline = time.monotonic() + timeout_s
        while True:
            view = self.get(workflow_id)
            if view is None:
                raise LookupError(f"workflow {workflow_id} does not exist (or expired)")
            if view.finished:
                return view
            if time.monotonic() > deadline:
                raise TimeoutError(f"workflow {workflow_id} is still {view.state} after {timeout_s:g} s")
            time.sleep(poll_s)

    # -- records ------------------------------------------------------------------------------------------------
    def _key(self, workflow_id: str) -> str:
        return self._k("workflow", workflow_id)

    def _load(self, workflow_id: str) -> _Loaded | None:
        record = self.redis.hgetall(self._key(workflow_id)) if workflow_id else {}
        if not record:
            return None
        with self._checked_lock:
            workflow = self._checked.get(workflow_id)
        if workflow is None:
            spec = WorkflowSpec.model_validate(json.loads(record["spec"]))
            workflow = check_workflow(spec, zoo_only=record.get("zoo_only") == "1")
            with self._checked_lock:
                while len(self._checked) >= CHECKED_KEPT:
                    self._checked.popitem(last=False)
                self._checked[workflow_id] = workflow
        ids = {k.removeprefix("job:"): v for k, v in record.items() if k.startswith("job:")}
        with self.redis.pipeline(transaction=False) as pipe:
            for job_id in ids.values():
                pipe.hgetall(self.store.job_key(job_id))
            raws = pipe.execute()
        jobs = {name: decode_record(raw) if raw else None for name, raw in zip(ids, raws, strict=True)}
        return _Loaded(record, workflow, jobs)

    def _view(self, loaded: _Loaded) -> WorkflowView:
        record, jobs, workflow = loaded.record, loaded.jobs, loaded.workflow
        stopped = bool(record.get("error")) or record.get("cancel_requested") == "1" or any(
            j is not None and j.state in ("failed", "cancelled") for j in jobs.values())
        steps = {}
        for name in workflow.order:
            job = jobs.get(name)
            state = job.state if job is not None else (SKIPPED if stopped else WAITING)
            steps[name] = StepView(name, workflow.steps[name].spec, state, job)
        states = [s.state for s in steps.values()]
        error = record.get("error") or next((f"step {s.name!r} failed: {_message(s.job)}" for s in steps.values()
                                             if s.state == "failed"), None)
        if any(s in ("queued", "running") for s in states) or (not stopped and WAITING in states):
            state = "running" if any(s != "queued" and s != WAITING for s in states) else "queued"
        elif error:
            state = "failed"
        elif stopped:
            state = "cancelled"
        else:
            state = "succeeded"
        outputs = {name: dict(jobs[name].outputs) for name in workflow.sinks()
                   if state == "succeeded" and jobs.get(name) is not None}
        return WorkflowView(record["id"], record["owner"], state, float(record["created_at"]), steps, error,
                            outputs, record.get("cancel_requested") == "1")


def _message(job: JobRecord | None) -> str:
    if job is None or job.error is None:
        return job.message if job is not None else ""
    return f"{job.error.type}: {job.error.message}"


def _hash(document: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()[:32]
