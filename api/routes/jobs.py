"""``/v1/jobs``: submit (202, Idempotency-Key), read, list, cancel, and server-sent progress events."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, Query, Response, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from api.deps import CallerDep, ServiceDep
from api.schemas import CALLER_ERRORS, JobCreate, JobPublic, JobsPublic, errors, event_stream
from api.sse import KEEPALIVE, event_response, job_event
from workers.service import JobService
from workers.store import JobRecord, State

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], responses=CALLER_ERRORS)


def _owned(service: JobService, job_id: str, owner: str) -> JobRecord:
    job = service.get(job_id)
    if job is None or job.owner != owner:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"job {job_id} not found")
    return job


@router.post("", status_code=status.HTTP_202_ACCEPTED, response_model=JobPublic,
             responses=errors(400, 409, 413, 422, 429, 503, e409="this Idempotency-Key was used with another body",
                              e422="the job is invalid (kind, model, params, or inputs that are no artifact of "
                                   "the media type the kind reads): the detail names the problem",
                              e429="a rate limit is reached, or too many jobs are queued: retry after Retry-After "
                                   "seconds", e503="the job queue is unavailable"))
async def create_job(*, body: JobCreate, response: Response, service: ServiceDep, owner: CallerDep,
                     idempotency_key: Annotated[str | None, Header(max_length=256)] = None) -> JobPublic:
    job, created = await run_in_threadpool(service.submit, body, owner=owner, idempotency_key=idempotency_key)
    response.headers["Location"] = f"/v1/jobs/{job.id}"
    if not created:
        response.headers["Idempotent-Replayed"] = "true"
    return JobPublic.of(job, service.artifacts)


@router.get("", response_model=JobsPublic, responses=errors(422))
def read_jobs(*, service: ServiceDep, owner: CallerDep, state: State | None = None, kind: str | None = None,
              limit: Annotated[int, Query(ge=1, le=500)] = 50,
              cursor: Annotated[float | None, Query(description="next_cursor of the previous page")] = None
              ) -> JobsPublic:
    jobs, next_cursor = service.list(state=state, kind=kind, owner=owner, limit=limit, cursor=cursor)
    return JobsPublic(data=[JobPublic.of(j, service.artifacts) for j in jobs], count=len(jobs),
                      next_cursor=None if next_cursor is None else repr(next_cursor))


@router.get("/{job_id}", response_model=JobPublic, responses=errors(404))
def read_job(*, job_id: str, service: ServiceDep, owner: CallerDep) -> JobPublic:
    return JobPublic.of(_owned(service, job_id, owner), service.artifacts)


@router.post("/{job_id}/cancel", response_model=JobPublic,
             responses=errors(404, 409, e409="the job is already finished (succeeded, failed or cancelled)"))
def cancel_job(*, job_id: str, service: ServiceDep, owner: CallerDep) -> JobPublic:
    """Queued: cancelled at once. Running: ``cancel_requested`` is set and the job stops at its next progress
    point. Finished: 409 naming its state, nothing changed."""
    current = _owned(service, job_id, owner)
    if current.finished:
        raise HTTPException(status.HTTP_409_CONFLICT, f"job {job_id} is already {current.state}")
    job = service.cancel(job_id)
    if job is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"job {job_id} not found")
    return JobPublic.of(job, service.artifacts)


@router.get("/{job_id}/events", response_class=StreamingResponse,
            responses={200: event_stream(JobPublic), **errors(404)})
def read_job_events(*, job_id: str, service: ServiceDep, owner: CallerDep) -> StreamingResponse:
    """Server-sent events: ``progress`` with each change of state or progress, then one ``final`` event. Streams
    wait on the event loop and share one Redis subscription (workers/events.py), so open streams cost no thread
    and no connection of their own."""
    _owned(service, job_id, owner)

    async def stream() -> AsyncIterator[str]:
        async for job in service.store.aevents(job_id):
            yield KEEPALIVE if job is None else job_event(job, service.artifacts)

    return event_response(stream())
