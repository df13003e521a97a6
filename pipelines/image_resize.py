"""Image inputs of the image job kinds: shape checks and resizing to the square size a model takes."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image as PILImage

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


def resize_and_center_crop(pixels: torch.Tensor, size: int) -> torch.Tensor:
    """(3, H, W) in [0, 1] -> (3, size, size), as torchvision's ``Resize(size, BICUBIC)``, ``CenterCrop(size)``,
    ``ToTensor()`` prepare an 8-bit RGB PIL image (the evaluation transform of official ImageNet code, e.g. KARL).

    Those transforms resize with PIL on 8-bit pixels, so this does too: torch's antialiased bicubic on floats
    differs from PIL by up to 6/255 on a noisy 300 x 200 image. The sizes follow torchvision to the pixel: the
    long side is ``int(size * long / short)`` (truncated) and the crop offset ``int(round(excess / 2))`` (Python's
    round half to even). Rounding the long side instead rescales 1024 x 683 (values move by up to 57/255), and
    flooring the offset shifts the crop of 256 x 259 by a pixel (up to 141/255). Pixels are rounded to 8 bits
    (exact for decoded image files, which are ``uint8 / 255``) only when a resize is needed: an image whose
    shorter side is already ``size`` is only cropped, so a 256 x 256 PNG reaches a 256 model as ``pixel / 255``.
    """
    _, h, w = pixels.shape
    x = pixels.float()
    if min(h, w) != size:
        new_long = int(size * max(h, w) / min(h, w))
        new_h, new_w = (size, new_long) if h <= w else (new_long, size)
        eight_bit = (x.clamp(0.0, 1.0) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
        resized = PILImage.fromarray(eight_bit).resize((new_w, new_h), PILImage.Resampling.BICUBIC)
        x = torch.from_numpy(np.array(resized)).permute(2, 0, 1).float() / 255
    top, left = int(round((x.shape[1] - size) / 2)), int(round((x.shape[2] - size) / 2))
    return x[:, top : top + size, left : left + size]


def check_rgb_image(value: object, kind: str) -> None:
    """Raise ``InputError`` unless ``value`` is a non-empty RGB ``Image`` (3, H, W)."""
    if not isinstance(value, Image) or value.pixels.ndim != 3 or value.pixels.shape[0] != 3:
        raise InputError(f"{kind} needs an RGB image (3, H, W)")
    if min(value.pixels.shape[1:]) < 1:
        raise InputError(f"{kind} got an empty image {tuple(value.pixels.shape)}")
