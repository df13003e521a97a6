"""``image.tokenize`` on official KARL: an image -> codes at every latent position + a boolean active ``mask``.

Images are prepared as the official evaluation transform does: the shorter side resized to the model's side
(bicubic, antialiased), a centre crop, and ``pixel / 255`` with no normalisation; a 256 x 256 image reaches the
model unchanged. (The official transform resizes with PIL; torch's bicubic differs from it by rounding.)
Halting is per position, so the tokens file holds ``codes`` (1, T) (-1 where halted) or, for the continuous
VAE variant, ``latents`` (1, T, 12), plus ``mask`` (1, T) and the model fingerprint.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pipelines.karl.serving import KARLTokenizeParams, KARLTokenizePipeline
from pipelines.media import Tokens
from tokenizers_media.image.karl_official import KARLOfficial, KARLOfficialEncoding


def to_official_input(pixels: torch.Tensor, size: int) -> torch.Tensor:
    """(3, H, W) in [0, 1] -> (3, size, size): shorter side to ``size`` (bicubic, antialiased), centre crop."""
    _, h, w = pixels.shape
    x = pixels.float()
    if min(h, w) != size:
        scale = size / min(h, w)
        new = (max(size, round(h * scale)), max(size, round(w * scale)))
        # PIL clamps to [0, 255] after its bicubic resize; bicubic overshoot is clamped the same way here.
        x = F.interpolate(x[None], size=new, mode="bicubic", antialias=True, align_corners=False)[0].clamp(0, 1)
    top, left = (x.shape[1] - size) // 2, (x.shape[2] - size) // 2
    return x[:, top : top + size, left : left + size]


class KARLOfficialImageTokenizePipeline(KARLTokenizePipeline[KARLOfficial]):
    model_class = KARLOfficial

    def prepare(self, pixels: torch.Tensor) -> torch.Tensor:
        return to_official_input(pixels, self.model.config.image_size)

    def tokens_file(self, encoding: KARLOfficialEncoding, row: int, params: KARLTokenizeParams, budget: int,
                    threshold: float) -> Tokens:
        name = "latents" if encoding.codes is None else "codes"
        tensors = {name: encoding.tokens[row : row + 1].cpu(), "mask": encoding.mask[row : row + 1].cpu()}
        return Tokens(tensors, self.metadata(params, budget, threshold))
