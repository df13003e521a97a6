"""The job contract shared by CLI, REST and batch files (DESIGN.md, "The job").

``{"kind": ..., "model": ..., "inputs": {name: path or artifact id}, "params": {...}, "priority": ...}``.
``resolve_job`` checks it against the registry and the pipeline's params schema before anything runs, so a bad
job is refused at the door with a message naming the problem. The service resolves a job once, at submit, and
stores the answer on the job record (``JobTarget``): the Celery task and the model host run what it names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pipelines.base import InputError, Params, Pipeline
from pipelines.registry import JobKind, get_job_kind, import_pipeline, pipeline_target
from pipelines.zoo import ModelRef, find_zoo_model, list_models, resolve_model
from workers.store import JobTarget

Priority = Literal["interactive", "batch"]


class JobSpec(BaseModel):
    """One job as users write it (a REST body, a line of a batch file, or built from ``mediaforge run`` flags)."""

    model_config = ConfigDict(extra="forbid")

    kind: str = Field(description="what is done, e.g. audio.tokenize")
    model: str = Field(description="a zoo name (mediaforge models) or a local model directory")
    inputs: dict[str, str] = Field(default_factory=dict, description="input name -> file path or artifact id")
    params: dict[str, Any] = Field(default_factory=dict, description="the job kind's parameters")
    priority: Priority = "interactive"


@dataclass(frozen=True)
class ResolvedJob:
    spec: JobSpec
    job_kind: JobKind
    model: ModelRef
    pipeline_class: type[Pipeline]
    pipeline: str
    """The registry's ``module:Class`` target for ``pipeline_class``."""
    params: Params

    @property
    def target(self) -> JobTarget:
        return JobTarget(model_name=self.model.name, model_dir=str(self.model.path),
                         model_class=self.model.model_class, pipeline=self.pipeline)


def format_validation_error(err: ValidationError) -> str:
    """pydantic's errors as one line a user can act on, without its internals."""
    parts = []
    for item in err.errors():
        where = ".".join(str(p) for p in item["loc"]) or "value"
        parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)


def parse_params(pipeline_class: type[Pipeline], params: dict[str, Any]) -> Params:
    try:
        return pipeline_class.params_model.model_validate(params)
    except ValidationError as err:
        raise InputError(f"invalid params for {pipeline_class.kind}: {format_validation_error(err)}") from err


def resolve_job(spec: JobSpec, *, zoo_only: bool = False) -> ResolvedJob:
    """Registry + zoo + params schema checks; raises ``InputError`` naming the first problem."""
    job_kind = get_job_kind(spec.kind)
    model = _resolve_model(spec.model, zoo_only)
    pipeline = pipeline_target(spec.kind, model.model_class)
    pipeline_class = import_pipeline(pipeline)
    params = parse_params(pipeline_class, spec.params)
    expected, given = set(pipeline_class.inputs), set(spec.inputs)
    if expected != given:
        raise InputError(f"{spec.kind} takes inputs {sorted(expected)}; got {sorted(given)}")
    return ResolvedJob(spec, job_kind, model, pipeline_class, pipeline, params)


def _resolve_model(ref: str, zoo_only: bool) -> ModelRef:
    """A zoo name (only that with ``zoo_only``, as the REST service runs) or, else, also a local model directory."""
    if not zoo_only:
        return resolve_model(ref)
    model = find_zoo_model(ref)
    if model is None:
        raise InputError(f"unknown model {ref!r}; the service runs zoo models: {sorted(m.name for m in list_models())}")
    return model
