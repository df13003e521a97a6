"""The model zoo: names (``mediaforge models``) -> model directories.

Shipped defaults live in ``pipelines/weights/<name>/`` (config.json + model.safetensors + README.md model
card), made by this repo's own training commands. A model reference may also be a local model directory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from pipelines.base import InputError
from tokenizers_media.modeling import read_model_class

WEIGHTS_DIR = Path(__file__).parent / "weights"


@dataclass(frozen=True)
class ModelRef:
    name: str
    path: Path
    model_class: str


def zoo_dirs() -> list[Path]:
    """Directories searched for named models: ``MEDIAFORGE_MODELS_DIR`` (if set), then shipped weights."""
    extra = os.environ.get("MEDIAFORGE_MODELS_DIR")
    return ([Path(extra)] if extra else []) + [WEIGHTS_DIR]


def list_models() -> list[ModelRef]:
    found: dict[str, ModelRef] = {}
    for root in zoo_dirs():
        if not root.is_dir():
            continue
        for child in sorted(root.iterdir()):
            if (child / "config.json").is_file() and child.name not in found:
                found[child.name] = ModelRef(child.name, child, read_model_class(child))
    return list(found.values())


def find_zoo_model(name: str) -> ModelRef | None:
    """The zoo model called ``name`` (the first zoo directory holding it wins, as in :func:`list_models`).

    Looks only at ``<zoo dir>/<name>``: the service resolves a model two or three times per job, and scanning
    every model's config each time cost about 1 ms of CPU per job.
    """
    if not name or name != Path(name).name or name.startswith("."):
        return None  # not a plain directory name: never a zoo entry, and never a path out of the zoo
    for root in zoo_dirs():
        child = root / name
        if (child / "config.json").is_file():
            return ModelRef(name, child, read_model_class(child))
    return None


def resolve_model(ref: str) -> ModelRef:
    """A zoo name or a local model directory -> its directory and model class."""
    model = find_zoo_model(ref)
    if model is not None:
        return model
    path = Path(ref).expanduser()
    if (path / "config.json").is_file():
        return ModelRef(path.name, path.resolve(), read_model_class(path))
    names = [m.name for m in list_models()]
    raise InputError(f"unknown model {ref!r}: not a zoo name ({names}) nor a model directory")
