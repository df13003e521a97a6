"""The pipeline contract shared by every job kind.

A pipeline is built once per model (``load``) and then serves batches (``run``): a list of requests in, a
list of results of the same length out. It sees decoded media and validated params, never paths or job ids,
so the CLI, the Celery task and the Ray host all drive it the same way.
"""

from __future__ import annotations

import hashlib
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar, Generic, Self, TypeVar

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from pipelines.media import Media, Tokens
from tokenizers_media.modeling import WEIGHTS_NAME, PretrainedModel

ProgressCallback = Callable[[float, str], None]
"""Called with (fraction done in [0, 1], short message). May raise ``JobCancelled`` to stop the work."""


def item_progress(progress: ProgressCallback | None, item: int, items: int) -> ProgressCallback:
    """The callback of batch item ``item`` (from 0) of ``items`` run one after another: its own fractions become
    its share of the batch's, so the batch's bar moves through every item and reaches 1 with the last."""
    def report(fraction: float, message: str) -> None:
        if progress:
            progress((item + fraction) / items, message)

    return report


class JobCancelled(Exception):
    """Raised from a progress callback to abandon a job at the next progress point."""


class InputError(ValueError):
    """A caller's mistake (bad file, bad params, wrong model): never retried, reported verbatim."""


SEED_MAX = 2**64 - 1
"""The largest seed ``torch.Generator.manual_seed`` takes (above it: ``Overflow when unpacking long long``)."""

Seed = Annotated[int, Field(ge=0, le=SEED_MAX)]
"""A job's random seed: refused at submit when the generator could not take it."""


def names_model(*besides: str) -> dict[str, Any]:
    """``json_schema_extra`` of a param that names another model: the service lets it name only zoo models (as
    it does a job's ``model``), never a directory of the server's; ``besides`` are the other values it takes."""
    return {"names_model": True, "besides": list(besides)}


class Params(BaseModel):
    """Base of every job kind's params schema, checked at submit so that a queued job never fails on its params.

    Unknown fields are errors; floats must be finite (``Infinity`` / ``NaN`` pass no range check and overflow
    later, e.g. in ``int(max_seconds * rate)``); a dump uses the field aliases (``class``), so the params a job
    record stores validate again where the job runs.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, serialize_by_alias=True)
    renamed: ClassVar[dict[str, str]] = {}
    """Old param name -> its new name: still accepted (with a DeprecationWarning) for one release."""

    @model_validator(mode="before")
    @classmethod
    def _accept_old_names(cls, values: Any) -> Any:
        """Map old names to the shared ones (``num_inference_steps``, ``guidance_scale``) so old jobs still run."""
        if not cls.renamed or not isinstance(values, dict):
            return values
        values = dict(values)
        for old, new in cls.renamed.items():
            if old not in values:
                continue
            if new in values:
                raise InputError(f"pass {new!r} only: {old!r} is its deprecated old name")
            warnings.warn(f"param {old!r} is deprecated and will be removed; use {new!r}", DeprecationWarning,
                          stacklevel=2)
            values[new] = values.pop(old)
        return values


@dataclass
class Request:
    """One job's decoded inputs (by input name) and validated params."""

    inputs: dict[str, Media]
    params: Params


Result = dict[str, Media]
"""Outputs by name (``tokens``, ``audio``, ``image``, ``image_000``...)."""


class Pipeline(ABC):
    """A loaded model serving one job kind."""

    kind: ClassVar[str]
    params_model: ClassVar[type[Params]] = Params
    inputs: ClassVar[dict[str, str]]
    """Input name -> media type name (``audio``, ``image``, ``tokens``, ``text``)."""

    @classmethod
    @abstractmethod
    def load(cls, model_dir: Path, device: str | torch.device = "cpu") -> Pipeline:
        """Build the pipeline from a model directory (the zoo resolves names to directories)."""

    @abstractmethod
    def run(self, requests: list[Request], progress: ProgressCallback | None = None) -> list[Result]:
        """Serve a batch of requests that passed ``check_request`` (validated once, by its one caller
        ``workers.execute.prepare_request``); the i-th result answers the i-th request."""

    def check_request(self, request: Request) -> None:
        """Validate one request before any compute; raise ``InputError`` naming the problem."""
        missing = sorted(set(self.inputs) - set(request.inputs))
        if missing:
            raise InputError(f"{self.kind} needs inputs {sorted(self.inputs)}; missing {missing}")


def model_fingerprint(model_dir: Path) -> str:
    """Short hash of the weights file: token files carry it so they are never decoded by another model."""
    digest = hashlib.sha256()
    with open(model_dir / WEIGHTS_NAME, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:16]


ModelT = TypeVar("ModelT", bound=PretrainedModel)


class TokenizerPipeline(Pipeline, Generic[ModelT]):
    """Base of the tokenize/detokenize job kinds: a loaded tokenizer, its zoo name and its weights fingerprint.

    Each family names its model class (``model_class``); the name and fingerprint go into every tokens file.
    """

    model_class: ClassVar[type[PretrainedModel]]
    """The tokenizer class, loaded in eval mode by its ``from_pretrained``."""

    def __init__(self, model: ModelT, name: str, fingerprint: str) -> None:
        self.model, self.name, self.fingerprint = model, name, fingerprint
        self.device = next(model.parameters()).device

    @classmethod
    def load(cls, model_dir: Path, device: str | torch.device = "cpu") -> Self:
        model_dir = Path(model_dir)
        return cls(cls.model_class.from_pretrained(model_dir, device=device), model_dir.name,
                   model_fingerprint(model_dir))

    def provenance(self) -> dict[str, str]:
        """The metadata that says which model made a tokens file (checked by ``check_provenance``)."""
        return {"model": self.name, "model_sha": self.fingerprint}

    def check_provenance(self, tokens: Tokens) -> None:
        """Refuse tokens another model made: its codes or latents mean nothing to this one."""
        made_by = tokens.metadata.get("model_sha")
        if made_by is not None and made_by != self.fingerprint:
            raise InputError(f"these tokens were made by model {tokens.metadata.get('model')!r} "
                             f"({made_by}), not by {self.name!r} ({self.fingerprint})")
