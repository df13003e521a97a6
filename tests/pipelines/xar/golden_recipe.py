"""The weight recipe of shared/reference/xar_golden/README.md, reusable with any seed.

``python -m tests.pipelines.xar.golden_recipe --seed 7 -o xar_b_seed7.pth`` writes an official-layout
checkpoint (``model_ema``) that ``mediaforge convert xar`` turns into a model directory.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch

from pipelines.xar.entities import make_layout
from tokenizers_media.nn.rope import RoPE2D

GOLDEN = Path(__file__).parent / "golden"  # copied from shared/reference/xar_golden (+ the state-dict layout)
LAYOUT = GOLDEN / "xar_b_state_dict.json"
_COMPUTED = ("rope.freqs", "rope.freqs_cos", "rope.freqs_sin")


def recipe_state_dict(
    layout: dict[str, list[int]], computed: dict[str, torch.Tensor], seed: int
) -> dict[str, torch.Tensor]:
    """Draw every tensor of ``layout`` by the README's rules; ``computed`` supplies mask and RoPE tables."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key in sorted(layout):
        shape = layout[key]
        if key == "mask" or key.endswith(_COMPUTED):
            state[key] = computed[key].clone()
        elif key.endswith("bias"):
            state[key] = torch.randn(shape, generator=generator) * 0.02
        elif len(shape) == 1:
            state[key] = 1 + torch.randn(shape, generator=generator) * 0.02
        elif "pos_embed" in key or key == "class_emb.weight":
            state[key] = torch.randn(shape, generator=generator) * 0.02
        else:
            state[key] = torch.randn(shape, generator=generator) / math.sqrt(shape[-1])
    return state


def official_buffers(layout: dict[str, list[int]]) -> dict[str, torch.Tensor]:
    """The mask and RoPE tables of xAR-B (computed, never drawn), without building the 172 M model."""
    entities = make_layout("cell", grid_size=16, entity_size=8)
    rope = RoPE2D(head_dim=64, positions=entities.positions).state_dict()
    buffers = {"mask": entities.block_causal_mask()}
    for key in layout:
        if key.endswith(_COMPUTED):
            buffers[key] = rope[key.rsplit(".", 1)[-1]]
    return buffers


def write_checkpoint(path: Path, seed: int) -> Path:
    """An official-style ``.pth`` (``{"model_ema": state}``) of xAR-B weights drawn with ``seed``."""
    layout = json.loads(LAYOUT.read_text())
    state = recipe_state_dict(layout, official_buffers(layout), seed)
    torch.save({"model_ema": state, "epoch": 0}, path)
    return path


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args()
    write_checkpoint(args.output, args.seed)
