"""A training run's directory: ``train_config.json``, ``checkpoint.pt`` and the one start-or-resume rule.

Without ``resume`` a run starts only in a new or empty directory, so nothing is ever overwritten by accident;
with ``resume`` it continues the directory's checkpoint under the config saved there, taking from the caller only
the fields a continuation may change (the step budget, phase boundaries).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
import types
from pathlib import Path
from typing import Any, TypeVar, Union, get_args, get_origin, get_type_hints

from pipelines.training.checkpoint import Checkpoint

logger = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoint.pt"
TRAIN_CONFIG_NAME = "train_config.json"

ConfigT = TypeVar("ConfigT")


def config_to_dict(config: Any) -> dict[str, Any]:
    """A config dataclass as JSON-ready values (nested dataclasses as dicts, tuples as they are)."""
    return dataclasses.asdict(config)


def config_from_dict(cls: type[ConfigT], values: dict[str, Any]) -> ConfigT:
    """Inverse of :func:`config_to_dict` after a JSON round trip: lists become the tuples the field types name
    and dicts the nested dataclasses, so the rebuilt (frozen, hashable) config equals the saved one."""
    hints = get_type_hints(cls)
    return cls(**{name: _coerce(hints[name], value) for name, value in values.items()})


def _coerce(hint: Any, value: Any) -> Any:
    if value is None:
        return None
    if dataclasses.is_dataclass(hint) and isinstance(value, dict):
        return config_from_dict(hint, value)
    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, types.UnionType):
        wanted = [a for a in args if a is not type(None)]
        return _coerce(wanted[0], value) if len(wanted) == 1 else value
    if origin is tuple and isinstance(value, list | tuple):
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], item) for item in value)
        return tuple(_coerce(a, item) for a, item in zip(args, value, strict=True)) if args else tuple(value)
    return value


class RunDir:
    """Paths of one run, the config it uses and its training clock (earlier sessions + this one)."""

    def __init__(self, path: Path, config: Any) -> None:
        self.path, self.config = Path(path), config
        self.checkpoint_path = self.path / CHECKPOINT_NAME
        self.config_path = self.path / TRAIN_CONFIG_NAME
        self._earlier_s = 0.0
        self._started = time.perf_counter()

    @classmethod
    def open(cls, path: str | Path, config: ConfigT, resume: bool,
             extendable: tuple[str, ...] = ("steps",)) -> tuple[RunDir, ConfigT]:
        """The run directory and the config the run uses (written to ``train_config.json``).

        ``resume``: ``path`` must hold a checkpoint; the config is the saved one with this call's ``extendable``
        fields. Otherwise ``path`` must be new or empty (``FileExistsError`` names the way out).
        """
        run = cls(Path(path), config)
        if resume:
            if not run.checkpoint_path.is_file():
                raise FileNotFoundError(f"resume: no {CHECKPOINT_NAME} in {run.path}")
            saved = config_from_dict(type(config), json.loads(run.config_path.read_text()))
            config = dataclasses.replace(saved, **{name: getattr(config, name) for name in extendable})
        elif run.path.exists() and any(run.path.iterdir()):
            raise FileExistsError(f"{run.path} is not empty: pass resume to continue the run in it, or give a new "
                                  "or empty directory to start over")
        run.config = config
        run.path.mkdir(parents=True, exist_ok=True)
        run.config_path.write_text(json.dumps(config_to_dict(config), indent=2) + "\n")
        return run, config

    @property
    def elapsed_s(self) -> float:
        """Training seconds of this run over all its sessions."""
        return self._earlier_s + time.perf_counter() - self._started

    def load(self) -> Checkpoint:
        """The saved checkpoint; the clock continues from its ``elapsed_s``."""
        checkpoint = Checkpoint.load(self.checkpoint_path)
        self._earlier_s, self._started = checkpoint.elapsed_s, time.perf_counter()
        return checkpoint

    def restore(self, model: Any, optimizer: Any, scheduler: Any) -> Checkpoint:
        """Load the checkpoint into the model, optimizer and scheduler (what every trainer resumes the same way)."""
        checkpoint = self.load()
        model.load_state_dict(checkpoint.model)
        optimizer.load_state_dict(checkpoint.optimizer)
        scheduler.load_state_dict(checkpoint.scheduler)
        logger.info("resuming %s from step %d", self.path, checkpoint.step)
        return checkpoint

    def save(self, step: int, model: dict[str, Any], optimizer: dict[str, Any],
             scheduler: dict[str, Any] | None = None, **extra: Any) -> None:
        """Checkpoint the state after ``step`` updates with the run's config and clock."""
        Checkpoint(step, self.elapsed_s, config_to_dict(self.config), model, optimizer, scheduler,
                   extra).save(self.checkpoint_path)
