"""``/healthz`` (the process answers), ``/readyz`` (Redis, Ray and a Celery worker reachable), ``/metrics`` (behind
a key once keys are set: job counts and latencies are the operator's)."""

from __future__ import annotations

import ray
from fastapi import APIRouter, Depends, Response, status
from fastapi.concurrency import run_in_threadpool
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.deps import ServiceDep, metrics_access
from api.metrics import registry_for
from api.schemas import Readiness, errors
from workers.celery_app import app as celery_app
from workers.service import JobService

router = APIRouter(tags=["health"])


@router.get("/healthz")
def read_health() -> dict[str, str]:
    return {"status": "ok"}


def _checks(service: JobService) -> dict[str, str]:
    checks = {}
    try:
        service.store.ping()
        checks["redis"] = "ok"
    except Exception as err:  # a readiness probe reports any failure instead of raising
        checks["redis"] = f"error: {err}"
    try:
        checks["ray"] = "ok" if ray.is_initialized() and ray.cluster_resources() else "not connected"
    except Exception as err:
        checks["ray"] = f"error: {err}"
    try:
        replies = celery_app.control.ping(timeout=1.0)
        checks["worker"] = f"ok ({len(replies)})" if replies else "no worker answered"
    except Exception as err:
        checks["worker"] = f"error: {err}"
    return checks


@router.get("/readyz", response_model=Readiness, responses={503: {"model": Readiness}})
async def read_readiness(*, service: ServiceDep, response: Response) -> Readiness:
    checks = await run_in_threadpool(_checks, service)
    ready = all(v.startswith("ok") for v in checks.values())
    if not ready:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return Readiness(status="ready" if ready else "unavailable", checks=checks)


@router.get("/metrics", response_class=Response, dependencies=[Depends(metrics_access)],
            responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}},
                       **errors(401, 429, e401="a key is set (API or metrics key) and the request has none, or an "
                                "unknown one", e429="too many failed authentications from this address")})
def read_metrics(*, service: ServiceDep) -> Response:
    return Response(generate_latest(registry_for(service.store)), media_type=CONTENT_TYPE_LATEST)
