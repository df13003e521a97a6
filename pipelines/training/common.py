"""Run-directory pieces the resumable audio trainers share (WavTokenizer, mel vocoder).

One place for the learning-rate schedule, the file names of a run directory, the ``train_config.json`` round trip,
the start-or-resume check and the progress bar, so the trainers cannot drift apart on what a run directory holds.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any, Self, TypeVar

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

STATE_NAME = "train_state.pt"
TRAIN_CONFIG_NAME = "train_config.json"


def cosine_schedule(optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int = 0,
                    min_ratio: float = 0.0) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up then half-cosine decay from the base learning rate to ``min_ratio`` x base."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class JsonTrainConfig:
    """Mixin for a frozen train-config dataclass with ``model_overrides`` and ``betas``: saved as JSON, which has no
    tuples, so ``from_json`` turns those lists back into the tuples a frozen (hashable) config holds."""

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> Self:
        values: dict[str, Any] = json.loads(text)
        values["model_overrides"] = tuple(tuple(p) for p in values["model_overrides"])
        values["betas"] = tuple(values["betas"])
        return cls(**values)


ConfigT = TypeVar("ConfigT", bound=JsonTrainConfig)


def open_run_dir(output_dir: Path, config: ConfigT, resume: bool,
                 extendable: tuple[str, ...] = ("steps",)) -> ConfigT:
    """Create ``output_dir`` and write the config the run uses into it, which this returns.

    With ``resume`` that is the saved config with this call's ``extendable`` fields (the step budget, and phase
    boundaries such as ``mel_only_steps`` so that an extended run can stay in its phase); without it an existing
    checkpoint is an error, so a run is never overwritten by accident.
    """
    state_path, config_path = output_dir / STATE_NAME, output_dir / TRAIN_CONFIG_NAME
    if resume:
        if not state_path.is_file():
            raise FileNotFoundError(f"--resume: no {STATE_NAME} in {output_dir}")
        saved = type(config).from_json(config_path.read_text())
        config = dataclasses.replace(saved, **{name: getattr(config, name) for name in extendable})
    elif state_path.is_file():
        raise FileExistsError(f"{output_dir} already holds a training run; pass resume or choose another dir")
    output_dir.mkdir(parents=True, exist_ok=True)
    config_path.write_text(config.to_json() + "\n")
    return config


def progress_bar(name: str, enabled: bool) -> Progress:
    """Steps done, elapsed and remaining time, and the last step's losses (a ``losses`` task field)."""
    return Progress(TextColumn(f"[bold]{name}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TimeRemainingColumn(), TextColumn("{task.fields[losses]}"), disable=not enabled)
