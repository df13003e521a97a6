"""Sample grids written during training: a batch of images -> one PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image


def save_image_grid(images: torch.Tensor, path: Path, columns: int, padding: int = 1) -> Path:
    """Images (N, 3, H, W) in [0, 1] -> a PNG grid of ``columns`` images per row (white padding)."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"need images (N, 3, H, W), got {tuple(images.shape)}")
    n, _, h, w = images.shape
    rows = -(-n // columns)
    grid = torch.ones(3, rows * (h + padding) + padding, columns * (w + padding) + padding)
    for i, image in enumerate(images.detach().float().cpu().clamp(0, 1)):
        r, c = divmod(i, columns)
        top, left = padding + r * (h + padding), padding + c * (w + padding)
        grid[:, top : top + h, left : left + w] = image
    pixels = (grid.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return Path(path)
