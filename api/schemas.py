"""What the REST API returns. Internal records (owner, spec hash, queue family) never leave the API."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field

from pipelines.registry import PIPELINES, JobKind, import_pipeline
from pipelines.zoo import ModelRef
from workers.artifacts import Artifact, ArtifactNotFound, ArtifactStore
from workers.jobspec import JobSpec
from workers.placement import ModelNeeds
from workers.settings import BatchConfig
from workers.store import JobError, JobRecord, State

JobCreate = JobSpec
"""The REST body is the job contract itself (DESIGN.md "The job"): inputs are artifact ids."""


def artifact_url(artifact_id: str) -> str:
    return f"/v1/artifacts/{artifact_id}"


def _iso(epoch: float | None) -> str | None:
    """ISO 8601 in UTC (``2026-12-04T19:17:43.120Z``): what a browser's ``new Date()`` reads as it is."""
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class ErrorPublic(BaseModel):
    """Every 4xx/5xx body: one message naming what was wrong (cut to a few KB, see api/main.py)."""

    detail: str


ERROR_DESCRIPTIONS = {
    400: "the body is malformed for its content type",
    401: "API keys are set (MEDIAFORGE_API_KEYS) and the request has none, or an unknown one",
    404: "no such resource (or another key's)",
    409: "the request conflicts with the resource's state",
    413: "the request body is past its size limit",
    422: "the request is invalid: the detail names each bad field and what it allows",
    429: "a rate limit (per key or client address, or of failed authentications) is reached: retry after "
         "Retry-After seconds",
    503: "a backend is unavailable: retry after Retry-After seconds",
}
_RETRY_AFTER = {"Retry-After": {"description": "seconds to wait before retrying", "schema": {"type": "integer"}}}


def errors(*codes: int, **descriptions: str) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the error codes a route answers, each an ``ErrorPublic`` body;
    ``descriptions`` (``e409="..."``) say what a code means on that route."""
    return {code: {"model": ErrorPublic, "description": descriptions.get(f"e{code}", ERROR_DESCRIPTIONS[code]),
                   **({"headers": _RETRY_AFTER} if code in (429, 503) else {})} for code in codes}


def event_stream(model: type[BaseModel]) -> dict[str, Any]:
    """The OpenAPI 200 response of a server-sent event stream whose events carry ``model`` as JSON (OpenAPI 3.1:
    a ``text/event-stream`` schema describes each event)."""
    event = {"type": "object", "required": ["event", "data"], "properties": {
        "event": {"enum": ["progress", "final"]},
        "data": {"type": "string", "contentMediaType": "application/json",
                 "contentSchema": {"$ref": f"#/components/schemas/{model.__name__}"}},
    }}
    return {"description": f"``progress`` events, then one ``final``; each event's data is a {model.__name__}",
            "content": {"text/event-stream": {"schema": event}}}


CALLER_ERRORS = errors(401, 429)
"""What every /v1 route may answer before it runs (``api.deps.CallerDep``: authentication, rate limit)."""


class OutputFile(BaseModel):
    id: str
    url: str
    media_type: str
    size: int


class JobPublic(BaseModel):
    id: str
    kind: str
    model: str
    params: dict[str, Any]
    inputs: dict[str, str]
    priority: str
    state: State
    progress: float
    message: str
    outputs: dict[str, str] = Field(description="output name -> artifact id (GET /v1/artifacts/{id})")
    error: JobError | None
    attempts: int
    host: str | None = Field(None, description="the model host replica that last started it (host:<model>:<i>)")
    output_files: dict[str, OutputFile] = Field(description="output name -> its artifact's id, download URL, "
                                                "media type and size")
    created_at: float
    started_at: float | None
    finished_at: float | None
    created_at_iso: str
    started_at_iso: str | None
    finished_at_iso: str | None

    @classmethod
    def of(cls, job: JobRecord, artifacts: ArtifactStore) -> JobPublic:
        """The public view of ``job``; ``artifacts`` describes its outputs in ``output_files`` (one small
        metadata read each)."""
        files = {}
        for name, artifact_id in job.outputs.items():
            try:
                artifact = artifacts.get(artifact_id)
            except ArtifactNotFound:  # removed from disk: the bare id stays in ``outputs``
                continue
            files[name] = OutputFile(id=artifact.id, url=artifact_url(artifact.id), media_type=artifact.media_type,
                                     size=artifact.size)
        return cls.model_validate({**job.model_dump(include=set(cls.model_fields)), "output_files": files,
                                   "created_at_iso": _iso(job.created_at), "started_at_iso": _iso(job.started_at),
                                   "finished_at_iso": _iso(job.finished_at)})


class JobsPublic(BaseModel):
    data: list[JobPublic]
    count: int
    next_cursor: str | None = Field(description="pass as ?cursor= for the next (older) page; null at the end")


class ArtifactPublic(BaseModel):
    id: str
    sha256: str
    media_type: str
    size: int
    filename: str
    url: str

    @classmethod
    def of(cls, artifact: Artifact) -> ArtifactPublic:
        return cls(id=artifact.id, sha256=artifact.sha256, media_type=artifact.media_type, size=artifact.size,
                   filename=artifact.filename, url=artifact_url(artifact.id))


class HostPublic(BaseModel):
    name: str = Field(description="the replica's Ray actor name, host:<model>:<i>")
    node_id: str
    device: str
    inflight: int
    batches: int
    memory_bytes: int


class ModelPublic(BaseModel):
    name: str
    model_class: str
    kinds: list[str]
    loaded: list[HostPublic] = Field(description="model hosts (Ray actors) holding this model now")
    batching: BatchConfig = Field(description="dynamic batching of its host (MEDIAFORGE_BATCH_* / BATCHING)")
    needs: ModelNeeds = Field(description="where its host may run (serving.json beside its weights)")


class ModelsPublic(BaseModel):
    data: list[ModelPublic]
    count: int


class KindPublic(BaseModel):
    """A job kind as a client needs it to build a job: its inputs, its params' JSON schema and its models."""

    kind: str
    family: str
    description: str
    inputs: dict[str, str] = Field(description="input name -> media kind (audio, image, tokens or text)")
    params_schema: dict[str, Any] = Field(description="JSON schema of the params (by alias, with defaults, "
                                          "descriptions and limits) of the kind's first model")
    models: list[str] = Field(description="zoo models that serve this kind")
    params_schema_by_model: dict[str, dict[str, Any]] = Field(
        description="each model's params schema: models of one kind may differ (image.generate: a prompt for "
                    "Stable Diffusion, a class for xAR)")

    @classmethod
    def of(cls, job_kind: JobKind, zoo: list[ModelRef]) -> KindPublic:
        # Registry order: the kind's first pipeline that a zoo model runs gives ``params_schema`` and ``inputs``.
        pipelines = {model_class: import_pipeline(target) for (kind, model_class), target in PIPELINES.items()
                     if kind == job_kind.name}
        served = {ref.name: pipelines[ref.model_class] for ref in zoo if ref.model_class in pipelines}
        classes = {ref.model_class for ref in zoo}
        first = next((p for model_class, p in pipelines.items() if model_class in classes),
                     next(iter(pipelines.values())))
        return cls(kind=job_kind.name, family=job_kind.family, description=job_kind.description,
                   inputs=dict(first.inputs), params_schema=first.params_model.model_json_schema(by_alias=True),
                   models=list(served),
                   params_schema_by_model={name: p.params_model.model_json_schema(by_alias=True)
                                           for name, p in served.items()})


class KindsPublic(BaseModel):
    kinds: list[KindPublic]


class Readiness(BaseModel):
    status: str
    checks: dict[str, str]
