"""``/v1/jobs``: submit (202, Idempotency-Key), read, list, cancel, and server-sent progress events."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, Query, Response, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from api.deps import CallerDep, ServiceDep
from api.schemas import JobCreate, JobPublic, JobsPublic
from workers.service import JobService
from workers.store import JobRecord, State

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])


def _owned(service: JobService, job_id: str, owner: str) -> JobRecord:
    job = service.get(job_id)
    if job is None or job.owner != owner:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"job {job_id} not found")
    return job


@router.post("", status_code=status.HTTP_202_ACCEPTED, response_model=JobPublic)
async def create_job(*, body: JobCreate, response: Response, service: ServiceDep, owner: CallerDep,
                     idempotency_key: Annotated[str | None, Header(max_length=256)] = None) -> JobPublic:
    job, created = await run_in_threadpool(service.submit, body, owner=owner, idempotency_key=idempotency_key)
    response.headers["Location"] = f"/v1/jobs/{job.id}"
    if not created:
        response.headers["Idempotent-Replayed"] = "true"
    return JobPublic.of(job)


@router.get("", response_model=JobsPublic)
def read_jobs(*, service: ServiceDep, owner: CallerDep, state: State | None = None, kind: str | None = None,
              limit: Annotated[int, Query(ge=1, le=500)] = 50,
              cursor: Annotated[float | None, Query(description="next_cursor of the previous page")] = None
              ) -> JobsPublic:
    jobs, next_cursor = service.list(state=state, kind=kind, owner=owner, limit=limit, cursor=cursor)
    return JobsPublic(data=[JobPublic.of(j) for j in jobs], count=len(jobs),
                      next_cursor=None if next_cursor is None else repr(next_cursor))


@router.get("/{job_id}", response_model=JobPublic)
def read_job(*, job_id: str, service: ServiceDep, owner: CallerDep) -> JobPublic:
    return JobPublic.of(_owned(service, job_id, owner))


@router.post("/{job_id}/cancel", response_model=JobPublic)
def cancel_job(*, job_id: str, service: ServiceDep, owner: CallerDep) -> JobPublic:
    """Queued: cancelled at once. Running: ``cancel_requested`` is set and the job stops at its next progress
    point. Finished: returned unchanged."""
    _owned(service, job_id, owner)
    job = service.cancel(job_id)
    if job is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"job {job_id} not found")
    return JobPublic.of(job)


@router.get("/{job_id}/events", response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}}}})
def read_job_events(*, job_id: str, service: ServiceDep, owner: CallerDep) -> StreamingResponse:
    """Server-sent events: ``progress`` with each change of state or progress, then one ``final`` event. Streams
    wait on the event loop and share one Redis subscription (workers/events.py), so open streams cost no thread
    and no connection of their own."""
    _owned(service, job_id, owner)

    async def stream() -> AsyncIterator[str]:
        async for job in service.store.aevents(job_id):
            if job is None:
                yield ": keep-alive\n\n"
                continue
            event = "final" if job.finished else "progress"
            yield f"event: {event}\ndata: {json.dumps(JobPublic.of(job).model_dump(mode='json'))}\n\n"

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
