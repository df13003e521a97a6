"""Bring any decoded image to the square size an image model takes."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def to_model_size(pixels: torch.Tensor, size: int) -> torch.Tensor:
    """(3, H, W) in [0, 1] -> (3, size, size): centre crop to a square, then an antialiased bilinear resize."""
    _, h, w = pixels.shape
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    square = pixels[:, top : top + side, left : left + side].float()
    if side == size:
        return square
    resized = F.interpolate(square[None], size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return resized[0].clamp(0.0, 1.0)  # bilinear overshoot at edges would leave [0, 1]
