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


def resolve_model(ref: str) -> ModelRef:
    """A zoo name or a local model directory -> its directory and model class."""
    for model in list_models():
        if model.name == ref:
            return model
    path = Path(ref).expanduser()
    if (path / "config.json").is_file():
        return ModelRef(path.name, path.resolve(), read_model_class(path))
    names = [m.name for m in list_models()]
    raise InputError(f"unknown model {ref!r}: not a zoo name ({names}) nor a model directory")
