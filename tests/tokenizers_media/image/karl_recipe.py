"""The seeded weight recipe the KARL golden vectors were made with (tests/data/karl_golden/README.md).

Keys are visited in ``sorted()`` order and drawn from one generator, so the tensors depend only on the seed and
the key -> shape layout; ``halting_mlp.2.bias`` is overwritten afterwards (so that some positions halt).
"""

from __future__ import annotations

import math

import torch

HALTING_BIAS = {"vqgan": 0.93, "vae": 1.39}
"""The constant that replaces ``halting_mlp.2.bias`` after the draws, per base tokenizer."""


def _draw(key: str, shape: tuple[int, ...], g: torch.Generator) -> torch.Tensor:
    x = torch.randn(shape, generator=g)
    if key.endswith("quantize.embedding.weight"):
        return x
    if key.endswith("bias"):
        return x * 0.02
    if len(shape) == 1:
        return 1 + x * 0.02
    if "." not in key:
        return x * 0.02
    return x / math.sqrt(math.prod(shape[1:]))


def recipe_state_dict(layout: dict[str, tuple[int, ...]], seed: int, halting_bias: float) -> dict[str, torch.Tensor]:
    """Float32 tensors for every key of ``layout`` (in its order), drawn by the recipe from ``seed``."""
    g = torch.Generator().manual_seed(seed)
    drawn = {key: _draw(key, tuple(layout[key]), g) for key in sorted(layout)}
    drawn["halting_mlp.2.bias"] = torch.full_like(drawn["halting_mlp.2.bias"], halting_bias)
    return {key: drawn[key] for key in layout}
