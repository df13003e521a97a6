"""``/v1/workers``: what Flower shows, from the routes' own sources. Celery workers answer a remote-control
``inspect`` (queues, active tasks, processed counts); queue depth per family comes from the job store's counters;
jobs per minute and run latency over the last hour from the finished jobs' own records (the store's histograms
keep no time, so their totals are given beside them)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from api.deps import CallerDep, ServiceDep
from api.schemas import CALLER_ERRORS
from workers.celery_app import QUEUE_FAMILIES
from workers.celery_app import app as celery_app
from workers.service import JobService

router = APIRouter(prefix="/v1/workers", tags=["workers"], responses=CALLER_ERRORS)

INSPECT_TIMEOUT_S = 0.5  # each of the three broadcasts waits this long for replies
WINDOW_S = 3600
MAX_SCANNED_JOBS = 5000


class WorkerPublic(BaseModel):
    name: str
    queues: list[str]
    active: int = Field(description="tasks running now")
    processed: int = Field(description="tasks received since the worker started, all task names")
    concurrency: int | None
    pid: int | None
    uptime_s: float | None
    heartbeat_at: float = Field(description="when the worker last answered (epoch seconds): this inspection")


class QueuePublic(BaseModel):
    family: str
    depth: int = Field(description="queued jobs (the job store's counter)")


class MinutePublic(BaseModel):
    minute: float = Field(description="start of the minute (epoch seconds)")
    finished: int
    mean_run_seconds: float | None


class KindTotals(BaseModel):
    kind: str
    runs: int
    mean_run_seconds: float


class WorkersPublic(BaseModel):
    workers: list[WorkerPublic]
    queues: list[QueuePublic]
    minutes: list[MinutePublic] = Field(description="the last hour, oldest first, jobs finished per minute")
    run_totals: list[KindTotals] = Field(description="since the store began (run_seconds histogram)")
    inspected_at: float


def _inspect() -> dict[str, dict[str, Any]]:
    """hostname -> {"stats", "active", "active_queues"} of every worker answering within the timeout."""
    inspect = celery_app.control.inspect(timeout=INSPECT_TIMEOUT_S)
    calls: dict[str, Callable[[], dict[str, Any] | None]] = {
        "stats": inspect.stats, "active": inspect.active, "active_queues": inspect.active_queues}
    found: dict[str, dict[str, Any]] = {}
    for what, call in calls.items():
        for host, reply in (call() or {}).items():
            found.setdefault(host, {})[what] = reply
    return found


def _worker(name: str, reply: dict[str, Any], now: float) -> WorkerPublic:
    stats = reply.get("stats") or {}
    return WorkerPublic(name=name, queues=sorted(q["name"] for q in reply.get("active_queues") or []),
                        active=len(reply.get("active") or []), processed=sum((stats.get("total") or {}).values()),
                        concurrency=(stats.get("pool") or {}).get("max-concurrency"), pid=stats.get("pid"),
                        uptime_s=stats.get("uptime"), heartbeat_at=now)


def _minutes(service: JobService, now: float) -> list[MinutePublic]:
    """Jobs of every owner created in the window (newest first, at most ``MAX_SCANNED_JOBS``), by finish minute."""
    start = (now // 60 + 1) * 60 - WINDOW_S
    runs: dict[float, list[float]] = {start + 60 * i: [] for i in range(WINDOW_S // 60)}
    cursor, scanned = None, 0
    while scanned < MAX_SCANNED_JOBS:
        jobs, cursor = service.store.list(limit=500, cursor=cursor)
        scanned += len(jobs)
        for job in jobs:
            if job.finished_at is not None and job.finished_at >= start:
                ran = job.finished_at - job.started_at if job.started_at is not None else None
                runs[start + (job.finished_at - start) // 60 * 60].append(ran if ran is not None else -1.0)
        if cursor is None or not jobs or jobs[-1].created_at < start - WINDOW_S:  # older jobs finished earlier
            break
    out = []
    for minute, seconds in runs.items():
        timed = [s for s in seconds if s >= 0]  # a job cancelled while queued never ran
        out.append(MinutePublic(minute=minute, finished=len(seconds),
                                mean_run_seconds=sum(timed) / len(timed) if timed else None))
    return out


def _run_totals(service: JobService) -> list[KindTotals]:
    return [KindTotals(kind=kind, runs=int(h.get("count", 0)), mean_run_seconds=h.get("sum", 0.0) / h["count"])
            for kind, h in sorted(service.store.metrics.histogram("run_seconds").items()) if h.get("count")]


def _read(service: JobService) -> WorkersPublic:
    now = time.time()
    replies = _inspect()
    depth = service.store.metrics.queued_count()
    return WorkersPublic(workers=[_worker(name, reply, now) for name, reply in sorted(replies.items())],
                         queues=[QueuePublic(family=f, depth=depth.get(f, 0)) for f in QUEUE_FAMILIES],
                         minutes=_minutes(service, now), run_totals=_run_totals(service), inspected_at=now)


@router.get("", response_model=WorkersPublic)
async def read_workers(*, service: ServiceDep, _caller: CallerDep) -> WorkersPublic:
    """Workers that answer within a second, queue depths, and the last hour's throughput and run latency."""
    return await run_in_threadpool(_read, service)
