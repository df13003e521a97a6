"""2-D rotary position embedding (RoPE) in the EVA-02 layout, for grids of image tokens.

EVA-02 (arXiv 2303.11331) splits each attention head in two halves: the first half rotates with the token's
row, the second with its column. Within a half, frequency ``i`` is ``theta ** (-2i / half)`` and each
frequency is used for an adjacent channel pair (interleaved), so ``rotate_half`` swaps neighbours
``(x0, x1) -> (-x1, x0)``. Positions may be fractional (coarse scales sit between fine grid points).
"""

from __future__ import annotations

import torch
from torch import nn


def rotary_frequencies(half_dim: int, theta: float = 10000.0) -> torch.Tensor:
    """Angular frequencies of one axis, ``(half_dim // 2,)``."""
    if half_dim % 2:
        raise ValueError(f"each RoPE axis needs an even number of channels, got {half_dim}")
    return 1.0 / theta ** (torch.arange(0, half_dim, 2, dtype=torch.float64) / half_dim)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """``(..., 2k) -> (..., 2k)``: each adjacent pair ``(a, b)`` becomes ``(-b, a)``."""
    pairs = x.unflatten(-1, (-1, 2))  # (..., k, 2)
    return torch.stack((-pairs[..., 1], pairs[..., 0]), dim=-1).flatten(-2)


class RoPE2D(nn.Module):
    """Rotary tables for a fixed token sequence with 2-D positions.

    Args:
        head_dim: channels per attention head (a multiple of 4).
        positions: ``(N, 2)`` (row, column) of each token in sequence order.
        theta: RoPE base.

    The tables are persistent buffers (``freqs`` ``(head_dim // 4,)``, ``freqs_cos`` / ``freqs_sin``
    ``(N, head_dim)``) because official checkpoints carry them; they are recomputed, never learned.
    """

    def __init__(self, head_dim: int, positions: torch.Tensor, theta: float = 10000.0) -> None:
        super().__init__()
        if head_dim % 4:
            raise ValueError(f"2-D RoPE needs head_dim divisible by 4, got {head_dim}")
        freqs = rotary_frequencies(head_dim // 2, theta)  # (head_dim // 4,)
        angles = positions.to(torch.float64)[..., None] * freqs  # (N, 2, head_dim // 4)
        angles = angles.repeat_interleave(2, dim=-1).flatten(1)  # (N, head_dim): rows then columns
        self.register_buffer("freqs", freqs.float())
        self.register_buffer("freqs_cos", angles.cos().float())
        self.register_buffer("freqs_sin", angles.sin().float())

    def forward(self, x: torch.Tensor, start: int = 0) -> torch.Tensor:
        """Rotate ``x`` ``(B, H, n, head_dim)`` holding the tokens ``start .. start + n`` of the sequence."""
        n = x.shape[-2]
        cos = self.freqs_cos[start : start + n].to(x.dtype)
        sin = self.freqs_sin[start : start + n].to(x.dtype)
        return x * cos + rotate_half(x) * sin
