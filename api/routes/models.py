"""``/v1/models``: the zoo, the job kinds each model serves, its batching and placement needs, and which hosts
hold it now."""

from __future__ import annotations

import ray
from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool

from api.deps import CallerDep, SettingsDep
from api.schemas import CALLER_ERRORS, HostPublic, ModelPublic, ModelsPublic
from pipelines.registry import kinds_for_model_class
from pipelines.zoo import list_models
from workers.hosts import list_hosts
from workers.placement import ModelNeeds

router = APIRouter(prefix="/v1/models", tags=["models"], responses=CALLER_ERRORS)


@router.get("", response_model=ModelsPublic)
async def read_models(*, settings: SettingsDep, _caller: CallerDep) -> ModelsPublic:
    hosts = await run_in_threadpool(list_hosts, settings.ray_namespace) if ray.is_initialized() else []
    by_model: dict[str, list[HostPublic]] = {}
    for host in hosts:
        by_model.setdefault(host["model"], []).append(HostPublic.model_validate(host))
    data = [ModelPublic(name=m.name, model_class=m.model_class, kinds=kinds_for_model_class(m.model_class),
                        loaded=by_model.get(m.name, []), batching=settings.batch_config(m.name),
                        needs=ModelNeeds.of(m.path)) for m in list_models()]
    return ModelsPublic(data=data, count=len(data))
