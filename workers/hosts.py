"""Ray model hosts: named, detached actors (``host:<model>:<i>``, a model's replicas) that keep pipelines warm.

Celery tasks call ``ModelHost.run(job_id, pipeline, input paths, params)`` with the pipeline target and params
the service resolved and validated at submit; the host gathers calls that arrive
together into one batch (max batch, max wait: Ray Serve's ``@serve.batch`` contract), decodes the inputs from
the artifact store, runs the pipeline once for the batch, writes the outputs back as artifacts, records each job's
final state in the job store itself (whoever finishes records, so a result outlives the Celery worker that asked
for it) and answers each caller. A second call for a job the host is already running joins the first instead of
running it again, and a call for a job it answered lately gets that answer again (recorded once more): a job
store that lost its last writes in a crash (Redis's ``appendfsync everysec``) re-queues such a job, and it must
not run twice. Only paths and small dicts cross Celery and Ray; the tensors stay in the host.

Each model runs as replicas of this host spread over the Ray nodes (``host:<model>:<i>``, workers/replicas.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray

from pipelines.base import InputError, JobCancelled, Pipeline, Request
from pipelines.registry import import_pipeline
from workers.artifacts import ArtifactStore
from workers.execute import InputFile, encode_result, prepare_request
from workers.jobspec import parse_params
from workers.retry import STORE_FAULTS, until_reachable
from workers.settings import BatchConfig, Settings
from workers.store import JobError, JobStore

logger = logging.getLogger(__name__)

HOST_PREFIX = "host:"
_WAIT_TICK_S = 0.0005
ANSWERS_KEPT = 10_000
"""Answers a host remembers by job id (a few hundred bytes each; outputs stay in the artifact store)."""
PROCESS_OVERHEAD_BYTES = 256 * 1024 * 1024
"""A host process (python + torch) before any weights: part of every host's memory estimate."""


@dataclass(frozen=True)
class StoreAddress:
    """Where a host records final states: the job store's Redis and its key prefix."""

    redis_url: str
    prefix: str
    job_ttl_s: int
    retry_s: float
    """How long a result waits for an unreachable store before the host leaves recording to others."""
    lease_s: float
    """The job lease the host renews (every third of it) for every job it holds."""
    report_s: float
    """How often a running batch writes its progress and reads its cancel requests."""

    @classmethod
    def of(cls, settings: Settings, redis_url: str) -> StoreAddress:
        return cls(redis_url, settings.key_prefix, settings.job_ttl_s, settings.store_retry_s, settings.job_lease_s,
                   settings.poll_interval_s)


@dataclass
class _Call:
    job_id: str
    inputs: dict[str, tuple[str, str]]
    """Input name -> (artifact path, file name for messages)."""
    params: dict[str, Any]
    future: asyncio.Future = field(repr=False)


def estimate_host_bytes(model_dir: Path) -> int:
    """Weights twice (the loaded module plus working memory) and the process itself."""
    weights = sum(p.stat().st_size for p in Path(model_dir).glob("*.safetensors"))
    return 2 * weights + PROCESS_OVERHEAD_BYTES


class ModelHost:
    """The actor body (wrapped with ``ray.remote`` by ``HostPool``). Async: batches and answers concurrently."""

    def __init__(self, name: str, model_name: str, model_dir: str, artifacts_root: str, batching: dict[str, float],
                 device: str, max_audio_seconds: float, store: StoreAddress) -> None:
        self.name, self.model_name, self.model_dir = name, model_name, Path(model_dir)
        self.store = JobStore.from_url(store.redis_url, prefix=store.prefix, job_ttl_s=store.job_ttl_s)
        self.address = store
        self.artifacts = ArtifactStore(Path(artifacts_root))
        self.batching = BatchConfig.model_validate(batching)
        self.device, self.max_audio_seconds = _pick_device(device), max_audio_seconds
        self.memory_bytes = estimate_host_bytes(self.model_dir)
        self.last_used, self.inflight, self.batches = time.time(), 0, 0
        self._pipelines: dict[str, Pipeline] = {}
        self._queues: dict[str, asyncio.Queue[_Call]] = {}
        self._cancelled: set[str] = set()
        self._jobs: dict[str, asyncio.Future] = {}
        """Job id -> its answer, from the first call until its final state is recorded."""
        self._held: dict[str, str] = {}
        """Job id -> lease holder, for every job queued or running here: whoever runs a job holds its lease, so a
        job whose worker died is not sent again while this host still works on it."""
        self._heartbeat: asyncio.Task | None = None
        self._answers: OrderedDict[str, dict[str, Any]] = OrderedDict()
        """The last ``ANSWERS_KEPT`` answers given, by job id."""
        # One batch at a time on the model: batches queue up behind each other, which is what lets them grow.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")
        # Recording runs beside the model, so a slow or briefly unreachable store never holds up the next batch.
        self._recorder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="record")

    async def run(self, job_id: str, pipeline: str, inputs: dict[str, tuple[str, str]],
                  params: dict[str, Any], holder: str | None = None) -> dict[str, Any]:
        """One job; returns ``{"status": succeeded|failed|cancelled, "outputs"|"error", "batch_size",
        "recorded"}``, where ``recorded`` is the state the job store now holds (None: the store was unreachable)."""
        self.inflight += 1
        self.last_used = time.time()
        try:
            if job_id in self._answers:  # answered before, and the store lost it: record it again, do not rerun
                answer = self._answers[job_id]
                return await asyncio.get_running_loop().run_in_executor(self._recorder, self._record_again, job_id,
                                                                        answer)
            future = self._jobs.get(job_id)
            if future is None:  # not already running here (a redelivered job joins its first run)
                future = self._jobs[job_id] = asyncio.get_running_loop().create_future()
                future.add_done_callback(lambda done: self._forget(job_id, done))
                self._hold(job_id, holder)
                self._queue(pipeline).put_nowait(_Call(job_id, inputs, params, future))
            return await asyncio.shield(future)
        finally:
            self.inflight -= 1
            self.last_used = time.time()

    def _queue(self, pipeline: str) -> asyncio.Queue[_Call]:
        queue = self._queues.get(pipeline)
        if queue is None:
            queue = self._queues[pipeline] = asyncio.Queue()
            asyncio.get_running_loop().create_task(self._batcher(pipeline, queue))
        return queue

    def _forget(self, job_id: str, done: asyncio.Future) -> None:
        if self._jobs.get(job_id) is done:
            del self._jobs[job_id]
        self._held.pop(job_id, None)
        self._cancelled.discard(job_id)

    def _hold(self, job_id: str, holder: str | None) -> None:
        if holder is None:
            return
        self._held[job_id] = holder
        if self._heartbeat is None:
            self._heartbeat = asyncio.get_running_loop().create_task(self._renew_leases())

    async def _renew_leases(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.address.lease_s / 3)
            if not self._held:
                continue
            try:
                await loop.run_in_executor(self._recorder, self.store.leases.hold, dict(self._held),
                                           self.address.lease_s)
            except STORE_FAULTS as err:  # renewed once Redis is back; the worker renews as well
                logger.warning("job leases not renewed (%s)", err)

    def info(self) -> dict[str, Any]:
        return {"name": self.name, "model": self.model_name, "memory_bytes": self.memory_bytes,
                "last_used": self.last_used, "inflight": self.inflight, "batches": self.batches,
                "device": str(self.device), "pipelines": sorted(self._pipelines),
                "node_id": ray.get_runtime_context().get_node_id(), "pid": os.getpid()}

    async def _batcher(self, pipeline: str, queue: asyncio.Queue[_Call]) -> None:
        """Take the first waiting call, gather more until ``max_batch`` or ``max_wait``, run them together."""
        loop = asyncio.get_running_loop()
        while True:
            batch = [await queue.get()]
            deadline = loop.time() + self.batching.max_wait_ms / 1000
            while len(batch) < self.batching.max_batch:
                if not queue.empty():
                    batch.append(queue.get_nowait())
                    continue
                if loop.time() >= deadline:
                    break
                # Short sleeps rather than wait_for(queue.get()): a timed-out get can swallow an item (bpo-37658).
                await asyncio.sleep(min(_WAIT_TICK_S, deadline - loop.time()))
            try:
                answers = await loop.run_in_executor(self._executor, self._run_batch, pipeline, batch)
            except Exception as err:  # every waiting caller must get an answer
                logger.exception("batch of %s failed", pipeline)
                answers = [failed_answer(err) for _ in batch]
            self.batches += 1
            loop.create_task(self._answer(batch, [{**a, "batch_size": len(batch)} for a in answers]))

    async def _answer(self, batch: list[_Call], answers: list[dict[str, Any]]) -> None:
        """Record every answer in the job store, then hand it to its callers."""
        loop = asyncio.get_running_loop()
        try:
            states = await loop.run_in_executor(self._recorder, self._record, batch, answers)
        except Exception:  # the callers record it then (or the reaper recovers the job)
            logger.exception("could not record a batch of %d jobs", len(batch))
            states = [None] * len(batch)
        for call, answer, state in zip(batch, answers, states, strict=True):
            self._remember(call.job_id, answer)
            if not call.future.done():
                call.future.set_result({**answer, "recorded": state})

    def _remember(self, job_id: str, answer: dict[str, Any]) -> None:
        self._answers[job_id] = answer
        while len(self._answers) > ANSWERS_KEPT:
            self._answers.popitem(last=False)

    def _record_one(self, job_id: str, answer: dict[str, Any]) -> str:
        return until_reachable(lambda: record_answer(self.store, job_id, answer), self.address.retry_s,
                               f"recording job {job_id}")

    def _record_again(self, job_id: str, answer: dict[str, Any]) -> dict[str, Any]:
        try:
            state = self._record_one(job_id, answer)
        except Exception:
            logger.exception("could not record job %s", job_id)
            state = None
        return {**answer, "recorded": state}

    def _record(self, batch: list[_Call], answers: list[dict[str, Any]]) -> list[str]:
        self.store.metrics.observe("batch_size", self.model_name, len(batch))
        return [self._record_one(call.job_id, answer) for call, answer in zip(batch, answers, strict=True)]

    def _pipeline(self, target: str) -> Pipeline:
        if target not in self._pipelines:
            self._pipelines[target] = import_pipeline(target).load(self.model_dir, device=self.device)
        return self._pipelines[target]

    def _run_batch(self, target: str, batch: list[_Call]) -> list[dict[str, Any]]:
        """Decode and check each call alone (a bad file fails only its job), then run the good ones together."""
        pipeline = self._pipeline(target)
        self._read_cancels([call.job_id for call in batch])
        answers: list[dict[str, Any] | None] = [None] * len(batch)
        requests: list[tuple[int, Request]] = []
        for i, call in enumerate(batch):
            if call.job_id in self._cancelled:
                answers[i] = {"status": "cancelled"}
                continue
            try:
                requests.append((i, self._request(pipeline, call)))
            except InputError as err:
                answers[i] = failed_answer(err)
        if requests:
            for i, answer in zip([i for i, _ in requests], self._run_requests(pipeline, batch, requests),
                                 strict=True):
                answers[i] = answer
        return [a if a is not None else failed_answer(RuntimeError("no answer")) for a in answers]

    def _read_cancels(self, job_ids: list[str]) -> None:
        try:
            self._cancelled |= self.store.claim(job_ids, self.name)
        except STORE_FAULTS as err:
            logger.warning("cancel requests not read (%s)", err)

    def _report(self, job_ids: list[str], fraction: float, message: str) -> None:
        """Progress straight into the job store (any worker, API or replica reads it there), cancels back."""
        try:
            self._cancelled |= self.store.report(job_ids, fraction, message)
        except STORE_FAULTS as err:  # progress is best effort; the job goes on
            logger.warning("progress not reported (%s)", err)

    def _request(self, pipeline: Pipeline, call: _Call) -> Request:
        files = {name: InputFile(filename, _read_input(path, filename)) for name, (path, filename) in
                 call.inputs.items()}
        return prepare_request(pipeline, files, parse_params(type(pipeline), call.params), self.max_audio_seconds)

    def _run_requests(self, pipeline: Pipeline, batch: list[_Call],
                      requests: list[tuple[int, Request]]) -> list[dict[str, Any]]:
        job_ids = [batch[i].job_id for i, _ in requests]

        reported = 0.0

        def progress(fraction: float, message: str) -> None:
            nonlocal reported
            if time.monotonic() - reported >= self.address.report_s:
                reported = time.monotonic()
                self._report(job_ids, fraction, message)
            if all(job_id in self._cancelled for job_id in job_ids):
                raise JobCancelled(f"cancelled at {fraction:.0%}")

        try:
            results = pipeline.run([r for _, r in requests], progress=progress)
        except JobCancelled:
            return [{"status": "cancelled"} for _ in requests]
        except Exception as err:
            if len(requests) == 1:
                if not isinstance(err, InputError):
                    logger.exception("job %s failed in %s", job_ids[0], type(pipeline).__name__)
                return [failed_answer(err)]
            # A batch is never worse than its members alone: one request that breaks it (bad input, a value the
            # model cannot take, memory) fails only its own job when each is run alone.
            logger.warning("a batch of %d failed (%r); running each alone", len(requests), err)
            return [self._run_requests(pipeline, batch, [item])[0] for item in requests]
        answers = []
        for job_id, result in zip(job_ids, results, strict=True):
            if job_id in self._cancelled:
                answers.append({"status": "cancelled"})
                continue
            outputs = {out.name: self.artifacts.put(out.data, out.filename).id for out in encode_result(result)}
            answers.append({"status": "succeeded", "outputs": outputs})
        return answers


def _read_input(path: str, filename: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        node = ray.get_runtime_context().get_node_id()
        raise InputError(f"input {filename}: {path} is not readable on Ray node {node[:12]}; every node must share "
                         "the artifact directory (MEDIAFORGE_ARTIFACTS_DIR)") from None


def record_answer(store: JobStore, job_id: str, answer: dict[str, Any]) -> str:
    """Write a host's answer as the job's final state; returns the state the store holds (the first answer wins)."""
    status = answer["status"]
    if status == "succeeded":
        moved = store.finish(job_id, "succeeded", outputs=answer["outputs"])
    elif status == "cancelled":
        moved = store.finish(job_id, "cancelled")
    else:
        moved = store.finish(job_id, "failed", error=JobError(**answer["error"]))
    return moved.state or moved.previous or status


def failed_answer(err: Exception) -> dict[str, Any]:
    return {"status": "failed", "error": {"type": type(err).__name__, "message": str(err)}}


def _pick_device(device: str) -> str:
    import torch

    if device != "auto":
        return device
    return "cuda" if torch.cuda.is_available() and ray.get_gpu_ids() else "cpu"


RemoteModelHost = ray.remote(ModelHost)


def init_ray(**kwargs: Any) -> None:
    """``ray.init`` that leaves this process's SIGTERM handler alone.

    Ray installs a handler that calls ``sys.exit`` on SIGTERM, which would skip uvicorn's graceful shutdown (and so
    the embedded runtime's: the private Redis would outlive the server). The caller's handler is put back.
    """
    main = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGTERM) if main else None
    ray.init(**kwargs)
    if main and previous is not None:
        signal.signal(signal.SIGTERM, previous)


def list_hosts(namespace: str, timeout_s: float = 5.0) -> list[dict[str, Any]]:
    """Every live host actor with its ``info()`` (hosts that do not answer in time are left out)."""
    handles = named_hosts(namespace, lambda name: name.startswith(HOST_PREFIX))
    infos = host_infos(handles, timeout_s)
    return [{**info, "name": name, "handle": handles[name]} for name, info in infos.items() if info is not None]


def named_hosts(namespace: str, wanted: Callable[[str], bool]) -> dict[str, Any]:
    """Handles of the live named actors of ``namespace`` whose names are ``wanted``."""
    handles = {}
    for actor in ray.util.list_named_actors(all_namespaces=True):
        if actor["namespace"] == namespace and wanted(actor["name"]):
            with contextlib.suppress(ValueError):  # died since the listing
                handles[actor["name"]] = ray.get_actor(actor["name"], namespace=namespace)
    return handles


def host_infos(handles: dict[str, Any], timeout_s: float) -> dict[str, dict[str, Any] | None]:
    """Each host's ``info()``, asked of all at once: None for one that did not answer in ``timeout_s`` (starting,
    dead, or on a node that cannot be reached), so one unreachable node costs one timeout, not one per host."""
    refs = {name: handle.info.remote() for name, handle in handles.items()}
    if not refs:
        return {}
    ready = set(ray.wait(list(refs.values()), num_returns=len(refs), timeout=timeout_s)[0])
    infos: dict[str, dict[str, Any] | None] = {}
    for name, ref in refs.items():
        try:
            infos[name] = ray.get(ref) if ref in ready else None
        except ray.exceptions.RayError:
            infos[name] = None
    return infos
