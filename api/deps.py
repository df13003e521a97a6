"""Shared route dependencies as ``Annotated`` aliases: settings, the job service, the caller (API key), rate limit."""

from __future__ import annotations

import hashlib
import hmac
import math
from collections.abc import Sequence
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status

from workers.service import JobService
from workers.settings import Settings, get_settings

SettingsDep = Annotated[Settings, Depends(get_settings)]

ANONYMOUS = "anonymous"


def get_service(request: Request) -> JobService:
    return request.app.state.service


ServiceDep = Annotated[JobService, Depends(get_service)]


def client_address(request: Request) -> str:
    """The peer's address (uvicorn puts a trusted proxy's ``X-Forwarded-For`` here: ``--forwarded-allow-ips``)."""
    return request.client.host if request.client else "unknown"


def _too_many(detail: str, wait: float) -> HTTPException:
    return HTTPException(status.HTTP_429_TOO_MANY_REQUESTS, detail, headers={"Retry-After": str(math.ceil(wait))})


def _authenticate(request: Request, keys: Sequence[str], service: JobService, settings: Settings) -> str:
    """The bearer key if it is one of ``keys``, else 401. Wrong keys cost their client address a token, and an
    address out of tokens gets 429 before its key is even compared, so guessing runs at the refill rate."""
    unauthorized = HTTPException(status.HTTP_401_UNAUTHORIZED, "missing or unknown API key (Authorization: "
                                 "Bearer <key>)", headers={"WWW-Authenticate": "Bearer"})
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if not scheme:
        raise unauthorized  # no credential: nothing was guessed
    bucket = f"authfail:{client_address(request)}"
    limits = settings.auth_failures_per_minute, settings.auth_failure_burst
    wait = service.store.rate.take(bucket, *limits, cost=0)
    if wait > 0:
        raise _too_many("too many failed authentications from this address", wait)
    if scheme.lower() == "bearer" and any(hmac.compare_digest(token, key) for key in keys):
        return token
    service.store.rate.take(bucket, *limits)
    raise unauthorized


def current_owner(request: Request, service: ServiceDep, settings: SettingsDep) -> str:
    """With ``MEDIAFORGE_API_KEYS`` set, every /v1 call needs ``Authorization: Bearer <key>``; the owner is the
    key's hash (jobs and artifacts are visible to their owner only). Without keys everyone is ``anonymous``."""
    if not settings.api_keys:
        return ANONYMOUS
    token = _authenticate(request, settings.api_keys, service, settings)
    return hashlib.sha256(token.encode()).hexdigest()[:16]


OwnerDep = Annotated[str, Depends(current_owner)]


def rate_limit(request: Request, owner: OwnerDep, service: ServiceDep, settings: SettingsDep) -> str:
    """A token bucket per API key, or per client address without keys (Redis, shared by every API replica);
    429 with Retry-After when empty."""
    if settings.api_keys:
        bucket, limits, whom = owner, (settings.rate_limit_per_minute, settings.rate_limit_burst), "API key"
    else:
        bucket, whom = f"addr:{client_address(request)}", "client address"
        limits = settings.anonymous_rate_limit_per_minute, settings.anonymous_rate_limit_burst
    wait = service.store.rate.take(bucket, *limits)
    if wait > 0:
        raise _too_many(f"rate limit exceeded for this {whom}", wait)
    return owner


CallerDep = Annotated[str, Depends(rate_limit)]
"""The authenticated, rate-limited caller: what every /v1 route depends on."""


def metrics_access(request: Request, service: ServiceDep, settings: SettingsDep) -> None:
    """``/metrics`` is open only while no key is set; then any API key or ``MEDIAFORGE_METRICS_KEY`` opens it."""
    keys = [*settings.api_keys, *([settings.metrics_key] if settings.metrics_key else [])]
    if keys:
        _authenticate(request, keys, service, settings)

