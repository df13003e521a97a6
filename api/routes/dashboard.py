"""The browser dashboard at ``/`` (plain files under ``api/static/``), a merged event stream for its jobs table,
and ``/docs`` (Swagger UI) served from the ``swagger-ui-bundle-v2`` wheel: no CDN, the page works offline.

A browser opens at most six HTTP/1.1 connections per host, so one ``GET /v1/jobs/{id}/events`` per unfinished
row would stall every other request of a busy table. The table reads ``GET /v1/dashboard/events?job=..`` instead:
one stream that carries the events of every job it names (each job's stream as ``read_job_events`` sends it),
and, for the first page of the table, those of the jobs other clients submit meanwhile (the event hub's
``created`` announcements), so that their rows appear without a reload.
It is the page's own route, left out of the OpenAPI document: clients follow a job on ``/v1/jobs/{id}/events``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, FastAPI, HTTPException, Query, status
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import FileResponse, HTMLResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

from api.deps import CallerDep, ServiceDep
from api.sse import KEEPALIVE, event_response, job_event, sse
from workers.records import JobRecord, State
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


@dataclass(frozen=True)
class RowFilter:
    """Which new jobs belong in the caller's table: theirs, of the table's state and kind where it names them."""

    owner: str
    state: State | None = None
    kind: str | None = None

    def matches(self, job: JobRecord) -> bool:
        return job.owner == self.owner and self.state in (None, job.state) and self.kind in (None, job.kind)


async def _merged(service: JobService, job_ids: list[str], new: RowFilter | None) -> AsyncIterator[str]:
    """Every job's events in arrival order; ends once each job sent its final event (or does not exist). With
    ``new``, it first says ``live`` once it hears every job announced from then on, follows each of them from its
    first record that ``new`` matches, and never ends (the client closes it)."""
    loop, queue = asyncio.get_running_loop(), asyncio.Queue[JobRecord | str | None]()
    pumps: dict[str, asyncio.Task[None]] = {}
    shown = set(job_ids)

    async def pump(job_id: str) -> None:
        try:
            async for job in service.store.aevents(job_id):
                if job is not None:
                    await queue.put(job)
        finally:
            await queue.put(None)  # this job's stream is over

    def follow(job_id: str) -> None:
        if job_id not in pumps:
            pumps[job_id] = asyncio.create_task(pump(job_id))

    for job_id in job_ids:
        follow(job_id)
    with contextlib.ExitStack() as taps:
        if new is not None:
            hub = service.store.event_hub
            taps.enter_context(hub.created(lambda job_id: loop.call_soon_threadsafe(queue.put_nowait, job_id)))
            if await asyncio.to_thread(hub.subscribed, KEEPALIVE_S):
                yield sse("live", {"new": True})  # from here on, every new job comes
        try:
            open_streams = len(pumps)
            while open_streams or new is not None:
                try:
                    item = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
                except TimeoutError:
                    yield KEEPALIVE
                    continue
                if item is None:
                    open_streams -= 1
                elif isinstance(item, str):
                    if item not in pumps:
                        open_streams += 1
                        follow(item)
                elif item.id in shown or (new is not None and new.matches(item)):
                    shown.add(item.id)
                    yield job_event(item, service.artifacts)
                elif new is not None and item.owner != new.owner:
                    pumps[item.id].cancel()  # another key's job: nothing of it will be shown
        finally:
            for task in pumps.values():
                task.cancel()


@router.get("/v1/dashboard/events", response_class=StreamingResponse, include_in_schema=False)
def read_dashboard_events(*, service: ServiceDep, owner: CallerDep,
                          job: Annotated[list[str] | None, Query(max_length=MAX_STREAM_JOBS,
                                                          description="job ids (repeat the parameter)")] = None,
                          new: Annotated[bool, Query(description="also the caller's jobs created from now on")]
                          = False, state: State | None = None, kind: str | None = None) -> StreamingResponse:
    """The server-sent events of several jobs on one connection (``progress`` and one ``final`` per job, the
    ``data`` of each names its job). A job that is not the caller's is a 404, as on ``/v1/jobs/{id}``. With
    ``new``, the caller's jobs submitted later (by any client) that have ``state`` and ``kind`` where given
    come too, so that a table shows them without a reload; such a stream stays open."""
    job_ids = list(dict.fromkeys(job or []))
    for job_id in job_ids:
        found = service.get(job_id)
        if found is None or found.owner != owner:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"job {job_id} not found")
    rows = RowFilter(owner, state, kind) if new else None
    return event_response(_merged(service, job_ids, rows))


def mount_static(app: FastAPI) -> None:
    """The dashboard's files and Swagger UI's, as static mounts (a router cannot carry mounts)."""
    app.mount(SWAGGER_URL, StaticFiles(directory=str(swagger_ui_path)), name="swagger")
    app.mount(STATIC_URL, StaticFiles(directory=STATIC_DIR), name="static")
