"""``/v1/kinds``: every job kind with its inputs, its params' JSON schema and the zoo models that serve it: what a
client (the dashboard's submit form, ``mediaforge kinds``) needs to build a job without reading the code."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status
from fastapi.concurrency import run_in_threadpool

from api.deps import CallerDep
from api.schemas import CALLER_ERRORS, KindPublic, KindsPublic, errors
from pipelines.registry import JOB_KINDS
from pipelines.zoo import list_models

router = APIRouter(prefix="/v1/kinds", tags=["kinds"], responses=CALLER_ERRORS)


def describe_kinds(*names: str) -> list[KindPublic]:
    """The named kinds (all without names), described against the zoo as it is now."""
    zoo = list_models()
    return [KindPublic.of(JOB_KINDS[name], zoo) for name in names or JOB_KINDS]


@router.get("", response_model=KindsPublic)
async def read_kinds(*, _caller: CallerDep) -> KindsPublic:
    return KindsPublic(kinds=await run_in_threadpool(describe_kinds))


@router.get("/{kind}", response_model=KindPublic, responses=errors(404))
async def read_kind(*, kind: str, _caller: CallerDep) -> KindPublic:
    if kind not in JOB_KINDS:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"job kind {kind} not found")
    return (await run_in_threadpool(describe_kinds, kind))[0]
