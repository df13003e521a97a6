"""Where a model host may run: what a model needs (``serving.json`` beside its weights) -> Ray actor options.

A model directory may hold ``serving.json``: ``{"gpu": "required" | "preferred" | "none", "memory_mb": N}``.
Without it a model is ``preferred``: it takes a GPU where the cluster has one and runs on CPUs otherwise (what
every shipped tiny model wants). ``required`` hosts ask Ray for a GPU, so they land only on nodes that advertise
one (and use CUDA there); ``memory_mb`` becomes Ray's ``memory`` resource, so a host lands only on a node with
that much to spare. A need no node of the cluster can meet fails the job at once, naming the need, instead of
leaving its host pending in Ray's queue forever.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import ray
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pipelines.base import InputError
from workers.settings import Settings

SERVING_FILE = "serving.json"


class PlacementError(RuntimeError):
    """No node of the cluster can ever host this model."""


class ModelNeeds(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    gpu: Literal["required", "preferred", "none"] = "preferred"
    memory_mb: float | None = Field(None, gt=0, description="memory a host reserves on its node (Ray's resource)")

    @classmethod
    def of(cls, model_dir: Path) -> ModelNeeds:
        path = Path(model_dir) / SERVING_FILE
        if not path.is_file():
            return cls()
        try:
            return cls.model_validate(json.loads(path.read_text()))
        except (ValueError, ValidationError) as err:
            raise InputError(f"{path}: not a valid serving file ({err})") from None


def actor_options(needs: ModelNeeds, settings: Settings, model_name: str) -> dict[str, Any]:
    """Ray options of a host for a model with ``needs`` on the cluster as it is now."""
    nodes = [node["Resources"] for node in ray.nodes() if node["Alive"]]
    gpus = max((resources.get("GPU", 0.0) for resources in nodes), default=0.0)
    want_gpus = settings.host_num_gpus or 1.0
    if needs.gpu == "required" and gpus < want_gpus:
        raise PlacementError(f"model {model_name} needs a GPU ({SERVING_FILE}) and no node of the Ray cluster "
                             f"has {want_gpus:g}; add a GPU node, or mark the model gpu: preferred")
    use_gpu = needs.gpu == "required" or (needs.gpu == "preferred" and gpus >= settings.host_num_gpus > 0)
    options: dict[str, Any] = {"num_cpus": settings.host_num_cpus, "num_gpus": want_gpus if use_gpu else 0}
    if needs.memory_mb is not None:
        memory = needs.memory_mb * 2**20
        largest = max((resources.get("memory", 0.0) for resources in nodes), default=0.0)
        if memory > largest:
            raise PlacementError(f"model {model_name} needs {needs.memory_mb:g} MB ({SERVING_FILE}); the largest "
                                 f"node of the Ray cluster has {largest / 2**20:.0f} MB for tasks")
        options["memory"] = memory
    return options


def eligible_nodes(options: dict[str, Any]) -> dict[str, dict[str, float]]:
    """The live nodes (id -> resources) that could ever hold a host with these actor options (zero-CPU nodes
    cannot hold a host that asks for a share of a CPU)."""
    wants = {"CPU": options.get("num_cpus", 0), "GPU": options.get("num_gpus", 0), "memory": options.get("memory", 0)}
    return {node["NodeID"]: node["Resources"] for node in ray.nodes()
            if node["Alive"] and all(node["Resources"].get(k, 0.0) >= v for k, v in wants.items() if v)}


def replica_options(needs: ModelNeeds, options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, dict[str, float]]]:
    """(options for a CPU node, the nodes a replica may go to). A model that only prefers a GPU takes one on the
    nodes that have one and runs on the CPU elsewhere, so its replicas are not limited to the GPU nodes."""
    if needs.gpu != "preferred" or not options.get("num_gpus"):
        return options, eligible_nodes(options)
    on_cpu = {**options, "num_gpus": 0}
    return on_cpu, eligible_nodes(on_cpu)


def options_on(node: dict[str, float], cpu_options: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    """A replica's options on the node it goes to: the GPU it asks for where that node has one."""
    return options if node.get("GPU", 0.0) >= options.get("num_gpus", 0) else cpu_options
