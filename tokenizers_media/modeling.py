"""The model contract every mediaforge model follows (diffusers-style config + from_pretrained).

A model is an ``nn.Module`` whose hyper-parameters live in a frozen dataclass config. ``save_pretrained(dir)``
writes ``config.json`` (with the model class name) and ``model.safetensors``; ``from_pretrained(dir)`` rebuilds
the module from the config, loads the weights strictly and returns it in ``eval()`` mode. Presets (``paper-*``
published sizes, ``tiny`` CPU-trainable) are named config factories, not magic numbers in code.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, Self

import torch
from safetensors.torch import load_file, save_file
from torch import nn

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"

_MODEL_CLASSES: dict[str, type[PretrainedModel]] = {}


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Base of every model config: a frozen dataclass that round-trips through JSON."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Self:
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ValueError(f"{cls.__name__} got unknown config fields {unknown}; allowed: {sorted(known)}")
        # JSON turns tuples into lists; restore them so configs compare equal after a round trip.
        fixed = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
        return cls(**fixed)

    def replace(self, **changes: Any) -> Self:
        return dataclasses.replace(self, **changes)


def register_model(cls: type[PretrainedModel]) -> type[PretrainedModel]:
    """Class decorator: lets ``load_pretrained`` find the class named in a ``config.json``."""
    _MODEL_CLASSES[cls.__name__] = cls
    return cls


class PretrainedModel(nn.Module):
    """Mixin giving ``from_pretrained`` / ``save_pretrained`` / ``from_preset`` to a config-built module."""

    config_class: ClassVar[type[ModelConfig]]
    presets: ClassVar[dict[str, Callable[[], ModelConfig]]] = {}

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if not isinstance(config, self.config_class):
            raise TypeError(f"{type(self).__name__} needs a {self.config_class.__name__}, got {type(config)}")
        self.config = config

    @classmethod
    def preset_config(cls, name: str) -> ModelConfig:
        if name not in cls.presets:
            raise ValueError(f"unknown preset {name!r} for {cls.__name__}; available: {sorted(cls.presets)}")
        return cls.presets[name]()

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> Self:
        """A randomly initialised model of a named size (``tiny``, ``paper-*``)."""
        return cls(cls.preset_config(name).replace(**overrides))

    def save_pretrained(self, directory: str | Path, dtype: torch.dtype | None = None) -> Path:
        """Write config + weights; ``dtype`` (e.g. float16) casts floating tensors to halve a shipped file.

        ``from_pretrained`` loads such a file into the float32 module (``load_state_dict`` casts on copy).
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        payload = {"model_class": type(self).__name__, **self.config.to_dict()}
        (directory / CONFIG_NAME).write_text(json.dumps(payload, indent=2) + "\n")
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        if dtype is not None:
            state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
        save_file(state, str(directory / WEIGHTS_NAME), metadata={"model_class": type(self).__name__})
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | Path, device: str | torch.device = "cpu") -> Self:
        config, state = _read_model_dir(Path(directory), expected=cls.__name__)
        model = cls(cls.config_class.from_dict(config))
        model.load_state_dict(state, strict=True)
        return model.to(device).eval()


def _read_model_dir(directory: Path, expected: str | None = None) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    config_path, weights_path = directory / CONFIG_NAME, directory / WEIGHTS_NAME
    for path in (config_path, weights_path):
        if not path.is_file():
            raise FileNotFoundError(f"model directory {directory} has no {path.name}")
    try:
        config = json.loads(config_path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{config_path} is not valid JSON: {err}") from err
    name = config.pop("model_class", None)
    if expected is not None and name != expected:
        raise ValueError(f"{directory} holds a {name!r} model, not a {expected!r}")
    return config, load_file(str(weights_path))


def read_model_class(directory: str | Path) -> str:
    """The ``model_class`` named in a model directory's ``config.json``."""
    path = Path(directory) / CONFIG_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{directory} is not a model directory (no {CONFIG_NAME})")
    name = json.loads(path.read_text()).get("model_class")
    if not isinstance(name, str):
        raise ValueError(f"{path} does not name a model_class")
    return name


def load_pretrained(directory: str | Path, device: str | torch.device = "cpu") -> PretrainedModel:
    """Load any registered model from its directory, choosing the class from ``config.json``."""
    name = read_model_class(directory)
    if name not in _MODEL_CLASSES:
        raise ValueError(f"{directory} names model class {name!r}, which is not one of {sorted(_MODEL_CLASSES)}")
    return _MODEL_CLASSES[name].from_pretrained(directory, device=device)
