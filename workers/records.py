"""The job record (DESIGN.md "The job") and how it is written to and read from a Redis hash."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, Field

State = Literal["queued", "running", "succeeded", "failed", "cancelled"]
STATES: tuple[State, ...] = ("queued", "running", "succeeded", "failed", "cancelled")
TERMINAL: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})


class JobError(BaseModel):
    type: str
    message: str


class JobTarget(BaseModel):
    """What a job runs on, resolved once at submit: the worker and the model host use it and resolve nothing."""

    model_name: str
    """The model host's name (``host:<model_name>``): the zoo name, or a local model directory's own name."""
    model_dir: str
    model_class: str
    pipeline: str
    """The registry's ``module:Class`` target serving this kind on this model class."""


class JobRecord(BaseModel):
    """What the store keeps for a job (DESIGN.md "The job")."""

    id: str
    kind: str
    model: str
    family: str
    params: dict[str, Any] = Field(default_factory=dict)
    inputs: dict[str, str] = Field(default_factory=dict)
    priority: Literal["interactive", "batch"] = "interactive"
    state: State = "queued"
    progress: float = 0.0
    message: str = ""
    outputs: dict[str, str] = Field(default_factory=dict)
    error: JobError | None = None
    attempts: int = 0
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    idempotency_key: str | None = None
    cancel_requested: bool = False
    owner: str = "anonymous"
    spec_hash: str = ""
    target: JobTarget | None = None
    """None only on records written before jobs were resolved at submit."""
    host: str | None = None
    """The model host replica (``host:<model>:<i>``) that last started it."""

    @property
    def finished(self) -> bool:
        return self.state in TERMINAL


JSON_FIELDS = {"params", "inputs", "outputs", "error", "target"}


def encode_record(record: JobRecord) -> dict[str, str]:
    out = {}
    for key, value in record.model_dump().items():
        if value is None:
            continue
        out[key] = json.dumps(value) if key in JSON_FIELDS else str(int(value) if isinstance(value, bool) else value)
    return out


def decode_record(raw: dict[str, str]) -> JobRecord:
    values: dict[str, Any] = {k: json.loads(v) if k in JSON_FIELDS else v for k, v in raw.items()}
    values["cancel_requested"] = values.get("cancel_requested") == "1"
    return JobRecord.model_validate(values)
