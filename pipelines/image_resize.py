"""Image inputs of the image job kinds: shape checks and resizing to the square size a model takes."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pipelines.base import InputError
from pipelines.media import Image


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


def check_rgb_image(value: object, kind: str) -> None:
    """Raise ``InputError`` unless ``value`` is a non-empty RGB ``Image`` (3, H, W)."""
    if not isinstance(value, Image) or value.pixels.ndim != 3 or value.pixels.shape[0] != 3:
        raise InputError(f"{kind} needs an RGB image (3, H, W)")
    if min(value.pixels.shape[1:]) < 1:
        raise InputError(f"{kind} got an empty image {tuple(value.pixels.shape)}")
