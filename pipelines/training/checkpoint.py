"""The one checkpoint format of every trainer: what a run needs to continue, written atomically."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch


@dataclass
class Checkpoint:
    """Model, optimizer and scheduler state after ``step`` updates, the run's config and its training time.

    ``extra`` holds what only some trainers have (an EMA copy, discriminators and their optimizers, RNG states),
    keyed by name; ``scheduler`` is None for a trainer whose rate is a pure function of the step.
    """

    step: int
    elapsed_s: float
    config: dict[str, Any]
    model: dict[str, Any]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def save(self, path: Path) -> None:
        """Write to ``path`` through a temporary file and ``os.replace``: a run killed mid-save keeps the previous
        checkpoint whole."""
        tmp = path.with_name(path.name + ".tmp")
        torch.save({f.name: getattr(self, f.name) for f in fields(self)}, tmp)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> Checkpoint:
        """Read a checkpoint on the CPU (it holds RNG states and plain Python values, hence not weights-only)."""
        return cls(**torch.load(path, map_location="cpu", weights_only=False))
