"""Server-sent events as the job streams send them: one formatter and one response for ``GET /v1/jobs/{id}/events``
and the dashboard's merged stream (``GET /v1/dashboard/events``), so both write the same bytes for a record."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi.responses import StreamingResponse

from api.schemas import JobPublic
from workers.artifacts import ArtifactStore
from workers.records import JobRecord

KEEPALIVE = ": keep-alive\n\n"
"""A comment line: proxies and browsers keep an idle stream open, clients ignore it."""


def sse(event: str, data: Any) -> str:
    """One event: its name and its data as one line of JSON."""
    return f"event: {event}\ndata: {json.dumps(data)}\n\n"


def job_event(job: JobRecord, artifacts: ArtifactStore) -> str:
    """A job's record as the API shows it: ``final`` once it is finished, ``progress`` before."""
    return sse("final" if job.finished else "progress", JobPublic.of(job, artifacts).model_dump(mode="json"))


def event_response(events: AsyncIterator[str]) -> StreamingResponse:
    """An event stream that no proxy buffers or caches."""
    return StreamingResponse(events, media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
