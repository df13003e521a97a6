"""The one learning-rate schedule of every trainer here: linear warm-up, then half-cosine decay to a floor.

``min_ratio=1.0`` keeps the rate flat after the warm-up (xAR's recipe); ``warmup_steps=0`` starts at the peak.
"""

from __future__ import annotations

import math

import torch


def warmup_cosine_factor(step: int, total_steps: int, warmup_steps: int = 0, min_ratio: float = 0.0) -> float:
    """Multiplier of the peak rate at ``step`` (0-based): ``(step + 1) / warmup_steps`` during the warm-up, then
    ``min_ratio + (1 - min_ratio) * (1 + cos(pi * p)) / 2`` with ``p`` the share of the post-warm-up steps done
    (held at 1 past ``total_steps``)."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def warmup_cosine(optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int = 0,
                  min_ratio: float = 0.0) -> torch.optim.lr_scheduler.LambdaLR:
    """A scheduler applying :func:`warmup_cosine_factor` to each group's base rate; step it after each update."""
    if total_steps < 1 or warmup_steps < 0 or not 0.0 <= min_ratio <= 1.0:
        raise ValueError(f"need total_steps >= 1, warmup_steps >= 0 and 0 <= min_ratio <= 1, got "
                         f"{total_steps}, {warmup_steps}, {min_ratio}")
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: warmup_cosine_factor(step, total_steps, warmup_steps, min_ratio))
