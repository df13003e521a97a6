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

    kind: str = Field(max_length=100, description="what is done, e.g. audio.tokenize")
    model: str = Field(min_length=1, max_length=4096, description="a zoo name (mediaforge models) or a local "
                       "model directory (paths longer than a file system takes are refused here)")
    inputs: dict[str, str] = Field(default_factory=dict, max_length=16,
                                   description="input name -> file path or artifact id")
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


_UNION_TAGS = {"int": "integer", "float": "number", "str": "string", "bool": "boolean", "list": "array",
               "tuple": "array"}
"""pydantic's name of a union member in an error location (``int``, ``constrained-str``, ``list[...]``) -> that
member's JSON schema type."""


def format_validation_error(err: ValidationError, schema: dict[str, Any] | None = None) -> str:
    """pydantic's errors as one line a user can act on, without its internals (nor the offending value).

    With the params model's JSON ``schema`` (whose fields are flat: a name, then list positions and union members),
    each error names the field without pydantic's union member names and says what it allows
    (``max_seconds: ... (allowed: 0 < max_seconds <= 60)``), read from the same schema that documents the limits.
    """
    parts = []
    for item in err.errors():
        loc = item["loc"]
        if schema is None:
            parts.append(f"{'.'.join(str(p) for p in loc) or 'value'}: {item['msg']}")
            continue
        where = ".".join(str(p) for i, p in enumerate(loc) if i == 0 or isinstance(p, int)) or "value"
        node = _schema_at(schema, loc)
        allowed = _allowed(node, where) if node else ""
        parts.append(f"{where}: {item['msg']}" + (f" (allowed: {allowed})" if allowed else ""))
    return "; ".join(parts)


def _branches(node: dict[str, Any]) -> list[dict[str, Any]]:
    return node.get("anyOf", [node])


def _schema_at(schema: dict[str, Any], loc: tuple[int | str, ...]) -> dict[str, Any] | None:
    """The JSON schema of what an error location points at: list positions go into items, union tags into
    the member of that type; None when the location names no declared field (an unknown param)."""
    node = schema.get("properties", {}).get(loc[0]) if loc else None
    for part in loc[1:]:
        if node is None:
            return None
        if isinstance(part, int):
            array = next((b for b in _branches(node) if b.get("type") == "array"), None)
            prefix = array.get("prefixItems", []) if array else []
            node = prefix[part] if part < len(prefix) else array.get("items") if array else None
        else:
            wanted = _UNION_TAGS.get(part.removeprefix("constrained-").split("[")[0])
            node = next((b for b in _branches(node) if b.get("type") == wanted), None)
    return node


def _allowed(node: dict[str, Any], label: str) -> str:
    """A schema's limits in words, one phrase per union member: ``1 <= steps <= 200``, ``1 to 400 characters``."""
    return " or ".join(phrase for member in _branches(node) if (phrase := _limits(member, label)))


def _limits(node: dict[str, Any], label: str) -> str:
    kind = node.get("type")
    if kind in ("integer", "number"):
        low = (f"{_number(node['minimum'])} <= " if "minimum" in node
               else f"{_number(node['exclusiveMinimum'])} < " if "exclusiveMinimum" in node else "")
        high = (f" <= {_number(node['maximum'])}" if "maximum" in node
                else f" < {_number(node['exclusiveMaximum'])}" if "exclusiveMaximum" in node else "")
        return f"{low}{label}{high}" if low or high else ""
    sizes = {"string": ("minLength", "maxLength", "characters"), "array": ("minItems", "maxItems", "items")}
    if kind not in sizes:
        return ""
    least, most, unit = sizes[kind]
    if most not in node:
        return ""
    fewest = node.get(least, 0)
    return f"{node[most]} {unit}" if fewest == node[most] else f"{fewest} to {node[most]} {unit}"


def _number(value: float) -> str:
    """``60.0`` -> ``60``, ``0.05`` -> ``0.05``; integers (seeds up to 2**64 - 1) exactly."""
    return str(value) if isinstance(value, int) else f"{value:g}"


def parse_params(pipeline_class: type[Pipeline], params: dict[str, Any]) -> Params:
    """Validate a job's params by its kind's schema; ``InputError`` naming each bad field and what it allows."""
    model = pipeline_class.params_model
    try:
        return model.model_validate(params)
    except ValidationError as err:
        message = format_validation_error(err, model.model_json_schema())
        raise InputError(f"invalid params for {pipeline_class.kind}: {message}") from err


def resolve_job(spec: JobSpec, *, zoo_only: bool = False) -> ResolvedJob:
    """Registry + zoo + params schema checks; raises ``InputError`` naming the first problem."""
    job_kind = get_job_kind(spec.kind)
    model = _resolve_model(spec.model, zoo_only)
    pipeline = pipeline_target(spec.kind, model.model_class)
    pipeline_class = import_pipeline(pipeline)
    params = parse_params(pipeline_class, spec.params)
    if zoo_only:
        _check_model_params(params)
    expected, given = set(pipeline_class.inputs), set(spec.inputs)
    if expected != given:
        raise InputError(f"{spec.kind} takes inputs {sorted(expected)}; got {sorted(given)}")
    return ResolvedJob(spec, job_kind, model, pipeline_class, pipeline, params)


def _check_model_params(params: Params) -> None:
    """Params that name a model (``names_model``) name a zoo model in the service, like the job's ``model``."""
    for name, field in type(params).model_fields.items():
        extra = field.json_schema_extra
        if not isinstance(extra, dict) or not extra.get("names_model"):
            continue
        value = getattr(params, name)
        if value not in extra["besides"] and find_zoo_model(value) is None:
            raise InputError(f"param {name}: unknown model {value!r}; the service runs zoo models "
                             f"{sorted(m.name for m in list_models())} or {extra['besides']}")


def _resolve_model(ref: str, zoo_only: bool) -> ModelRef:
    """A zoo name (only that with ``zoo_only``, as the REST service runs) or, else, also a local model directory."""
    if not zoo_only:
        return resolve_model(ref)
    model = find_zoo_model(ref)
    if model is None:
        raise InputError(f"unknown model {ref!r}; the service runs zoo models: {sorted(m.name for m in list_models())}")
    return model
