"""``/v1/workflows``: submit (202, Idempotency-Key), read, list, cancel, and server-sent events of every step.

A workflow's steps are ordinary jobs (also under ``/v1/jobs``); workers/dependencies.py runs them.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Header, HTTPException, Query, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from api.deps import CallerDep, ServiceDep
from api.schemas import CALLER_ERRORS, errors, event_stream
from api.sse import KEEPALIVE, event_response, sse
from workers.dependencies import StepView, WorkflowRunner, WorkflowView
from workers.records import JobError
from workers.service import JobService
from workers.workflows import WorkflowSpec

EVENT_POLL_S = 0.25
KEEPALIVE_S = 15.0
_runner_lock = threading.Lock()


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Every API process advances the store's active workflows from its start (after a restart too), not from
    its first workflow request; the app's own lifespan has made ``app.state.service`` by now."""
    runner = get_runner(app, app.state.service)
    try:
        yield
    finally:
        await run_in_threadpool(runner.close)


router = APIRouter(prefix="/v1/workflows", tags=["workflows"], lifespan=_lifespan, responses=CALLER_ERRORS)


def get_runner(app: FastAPI, service: JobService) -> WorkflowRunner:
    """The app's one runner of ``service`` (its thread advances every active workflow of the store)."""
    with _runner_lock:
        runner = getattr(app.state, "workflows", None)
        if runner is None or runner.service is not service:
            runner = app.state.workflows = WorkflowRunner(service)
        return runner


def get_workflows(request: Request, service: ServiceDep) -> WorkflowRunner:
    return get_runner(request.app, service)


WorkflowsDep = Annotated[WorkflowRunner, Depends(get_workflows)]


class StepPublic(BaseModel):
    state: str = Field(description="a job state, or waiting (inputs not there yet) / skipped (will not run)")
    job_id: str | None
    kind: str
    model: str
    progress: float
    message: str
    inputs: dict[str, str] = Field(description="input name -> artifact id, once the step was submitted")
    outputs: dict[str, str]
    error: JobError | None
    attempts: int

    @classmethod
    def of(cls, step: StepView) -> StepPublic:
        job, declared = step.job, step.spec
        if job is None:
            return cls(state=step.state, job_id=None, kind=declared.kind, model=declared.model, progress=0.0,
                       message="", inputs={}, outputs={}, error=None, attempts=0)
        return cls(state=step.state, job_id=job.id, kind=job.kind, model=job.model, progress=job.progress,
                   message=job.message, inputs=job.inputs, outputs=job.outputs, error=job.error,
                   attempts=job.attempts)


class WorkflowPublic(BaseModel):
    id: str
    state: str
    error: str | None = Field(description="the failed step and why")
    cancel_requested: bool
    created_at: float
    steps: dict[str, StepPublic]
    outputs: dict[str, dict[str, str]] = Field(description="final step -> output name -> artifact id")

    @classmethod
    def of(cls, view: WorkflowView) -> WorkflowPublic:
        return cls(id=view.id, state=view.state, error=view.error, cancel_requested=view.cancel_requested,
                   created_at=view.created_at, steps={n: StepPublic.of(s) for n, s in view.steps.items()},
                   outputs=view.outputs)


class WorkflowsPublic(BaseModel):
    data: list[WorkflowPublic]
    count: int


def _owned(runner: WorkflowRunner, workflow_id: str, owner: str) -> WorkflowView:
    view = runner.get(workflow_id)
    if view is None or view.owner != owner:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"workflow {workflow_id} not found")
    return view


@router.post("", status_code=status.HTTP_202_ACCEPTED, response_model=WorkflowPublic,
             responses=errors(400, 409, 413, 422, 429, 503, e409="this Idempotency-Key was used with another body",
                              e422="the workflow is invalid (a step, its job, or a reference to another step): "
                                   "the detail names the problem"))
async def create_workflow(*, body: WorkflowSpec, response: Response, runner: WorkflowsDep, owner: CallerDep,
                          idempotency_key: Annotated[str | None, Header(max_length=256)] = None) -> WorkflowPublic:
    view, created = await run_in_threadpool(runner.submit, body, owner=owner, idempotency_key=idempotency_key)
    response.headers["Location"] = f"/v1/workflows/{view.id}"
    if not created:
        response.headers["Idempotent-Replayed"] = "true"
    return WorkflowPublic.of(view)


@router.get("", response_model=WorkflowsPublic, responses=errors(422))
def read_workflows(*, runner: WorkflowsDep, owner: CallerDep,
                   limit: Annotated[int, Query(ge=1, le=100)] = 20) -> WorkflowsPublic:
    views = runner.list(owner=owner, limit=limit)
    return WorkflowsPublic(data=[WorkflowPublic.of(v) for v in views], count=len(views))


@router.get("/{workflow_id}", response_model=WorkflowPublic, responses=errors(404))
def read_workflow(*, workflow_id: str, runner: WorkflowsDep, owner: CallerDep) -> WorkflowPublic:
    return WorkflowPublic.of(_owned(runner, workflow_id, owner))


@router.post("/{workflow_id}/cancel", response_model=WorkflowPublic, responses=errors(404))
def cancel_workflow(*, workflow_id: str, runner: WorkflowsDep, owner: CallerDep) -> WorkflowPublic:
    """Every unfinished step is cancelled (a running one at its next progress point); nothing more starts."""
    _owned(runner, workflow_id, owner)
    view = runner.cancel(workflow_id)
    if view is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"workflow {workflow_id} not found")
    return WorkflowPublic.of(view)


@router.get("/{workflow_id}/events", response_class=StreamingResponse,
            responses={200: event_stream(WorkflowPublic), **errors(404)})
def read_workflow_events(*, workflow_id: str, runner: WorkflowsDep, owner: CallerDep) -> StreamingResponse:
    """Server-sent events: ``progress`` (the whole workflow) at each change of a step's state or progress, then
    one ``final``. The stream re-reads the workflow every 0.25 s on the event loop's thread pool."""
    _owned(runner, workflow_id, owner)

    async def stream() -> AsyncIterator[str]:
        last: Any = None
        ticked = time.monotonic()
        while True:
            view = await run_in_threadpool(runner.get, workflow_id)
            if view is None:
                return
            public = WorkflowPublic.of(view).model_dump(mode="json")
            if public != last:
                last, ticked = public, time.monotonic()
                yield sse("final" if view.finished else "progress", public)
                if view.finished:
                    return
            elif time.monotonic() - ticked >= KEEPALIVE_S:
                ticked = time.monotonic()
                yield KEEPALIVE
            await asyncio.sleep(EVENT_POLL_S)

    return event_response(stream())
