"""What the REST API returns. Internal records (owner, spec hash, queue family) never leave the API."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from workers.artifacts import Artifact
from workers.jobspec import JobSpec
from workers.store import JobError, JobRecord, State

JobCreate = JobSpec
"""The REST body is the job contract itself (DESIGN.md "The job"): inputs are artifact ids."""


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
    created_at: float
    started_at: float | None
    finished_at: float | None

    @classmethod
    def of(cls, job: JobRecord) -> JobPublic:
        return cls.model_validate(job.model_dump(include=set(cls.model_fields)))


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
                   filename=artifact.filename, url=f"/v1/artifacts/{artifact.id}")


class HostPublic(BaseModel):
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


class ModelsPublic(BaseModel):
    data: list[ModelPublic]
    count: int


class Readiness(BaseModel):
    status: str
    checks: dict[str, str]
