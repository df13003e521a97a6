"""The browser dashboard at ``/`` (plain files under ``api/static/``), a merged event stream for its jobs table,
and ``/docs`` (Swagger UI) served from the ``swagger-ui-bundle-v2`` wheel: no CDN, the page works offline.

A browser opens at most six HTTP/1.1 connections per host, so one ``GET /v1/jobs/{id}/events`` per unfinished
row would stall every other request of a busy table. The table reads ``GET /v1/dashboard/events?job=..`` instead:
one stream that carries the events of every job it names (each job's stream as ``read_job_events`` sends it).
It is the page's own route, left out of the OpenAPI document: clients follow a job on ``/v1/jobs/{id}/events``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, FastAPI, HTTPException, Query, status
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import FileResponse, HTMLResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

from api.deps import CallerDep, ServiceDep
from api.schemas import JobPublic
from workers.records import JobRecord
from workers.service import JobService

STATIC_DIR = Path(__file__).resolve().parents[1] / "static"
STATIC_URL, SWAGGER_URL = "/static", "/static/swagger"
DOCS_URL, OAUTH2_REDIRECT_URL = "/docs", "/docs/oauth2-redirect"
MAX_STREAM_JOBS = 100
KEEPALIVE_S = 15.0

router = APIRouter(tags=["dashboard"])


@router.get("/", include_in_schema=False)
def read_dashboard() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})


@router.get(DOCS_URL, include_in_schema=False)
def read_docs() -> HTMLResponse:
    return get_swagger_ui_html(openapi_url="/openapi.json", title="mediaforge - Swagger UI",
                               swagger_js_url=f"{SWAGGER_URL}/swagger-ui-bundle.js",
                               swagger_css_url=f"{SWAGGER_URL}/swagger-ui.css",
                               swagger_favicon_url=f"{SWAGGER_URL}/favicon-32x32.png",
                               oauth2_redirect_url=OAUTH2_REDIRECT_URL)


@router.get(OAUTH2_REDIRECT_URL, include_in_schema=False)
def read_docs_oauth2_redirect() -> HTMLResponse:
    return get_swagger_ui_oauth2_redirect_html()


def _event(job: JobRecord, service: JobService) -> str:
    event = "final" if job.finished else "progress"
    data = JobPublic.of(job, service.artifacts).model_dump(mode="json")
    return f"event: {event}\ndata: {json.dumps(data)}\n\n"


async def _merged(service: JobService, job_ids: list[str]) -> AsyncIterator[str]:
    """Every job's events in arrival order; ends once each job sent its final event (or does not exist)."""
    queue: asyncio.Queue[JobRecord | None] = asyncio.Queue()

    async def pump(job_id: str) -> None:
        try:
            async for job in service.store.aevents(job_id):
                if job is not None:
                    await queue.put(job)
        finally:
            await queue.put(None)  # this job's stream is over

    tasks = [asyncio.create_task(pump(job_id)) for job_id in job_ids]
    try:
        open_streams = len(tasks)
        while open_streams:
            try:
                job = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
            except TimeoutError:
                yield ": keep-alive\n\n"
                continue
            if job is None:
                open_streams -= 1
            else:
                yield _event(job, service)
    finally:
        for task in tasks:
            task.cancel()


@router.get("/v1/dashboard/events", response_class=StreamingResponse, include_in_schema=False)
def read_dashboard_events(*, service: ServiceDep, owner: CallerDep,
                          job: Annotated[list[str], Query(max_length=MAX_STREAM_JOBS,
                                                          description="job ids (repeat the parameter)")]
                          ) -> StreamingResponse:
    """The server-sent events of several jobs on one connection (``progress`` and one ``final`` per job, the
    ``data`` of each names its job). A job that is not the caller's is a 404, as on ``/v1/jobs/{id}``."""
    for job_id in job:
        found = service.get(job_id)
        if found is None or found.owner != owner:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"job {job_id} not found")
    return StreamingResponse(_merged(service, list(dict.fromkeys(job))), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def mount_static(app: FastAPI) -> None:
    """The dashboard's files and Swagger UI's, as static mounts (a router cannot carry mounts)."""
    app.mount(SWAGGER_URL, StaticFiles(directory=str(swagger_ui_path)), name="swagger")
    app.mount(STATIC_URL, StaticFiles(directory=STATIC_DIR), name="static")
