"""Shared route dependencies as ``Annotated`` aliases: settings, the job service, the caller (API key), rate limit."""

from __future__ import annotations

import hashlib
import hmac
import math
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status

from workers.service import JobService
from workers.settings import Settings, get_settings

SettingsDep = Annotated[Settings, Depends(get_settings)]


def get_service(request: Request) -> JobService:
    return request.app.state.service


ServiceDep = Annotated[JobService, Depends(get_service)]


def current_owner(request: Request, settings: SettingsDep) -> str:
    """With ``MEDIAFORGE_API_KEYS`` set, every /v1 call needs ``Authorization: Bearer <key>``; the owner is the
    key's hash (jobs are visible to their owner only). Without keys everyone is ``anonymous``."""
    if not settings.api_keys:
        return "anonymous"
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not any(hmac.compare_digest(token, key) for key in settings.api_keys):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "missing or unknown API key (Authorization: Bearer <key>)",
                            headers={"WWW-Authenticate": "Bearer"})
    return hashlib.sha256(token.encode()).hexdigest()[:16]


OwnerDep = Annotated[str, Depends(current_owner)]


def rate_limit(owner: OwnerDep, service: ServiceDep, settings: SettingsDep) -> str:
    """A token bucket per caller (Redis, shared by every API replica); 429 with Retry-After when empty."""
    wait = service.store.rate.take(owner, settings.rate_limit_per_minute, settings.rate_limit_burst)
    if wait > 0:
        raise HTTPException(status.HTTP_429_TOO_MANY_REQUESTS, "rate limit exceeded for this API key",
                            headers={"Retry-After": str(math.ceil(wait))})
    return owner


CallerDep = Annotated[str, Depends(rate_limit)]
"""The authenticated, rate-limited caller: what every /v1 route depends on."""
