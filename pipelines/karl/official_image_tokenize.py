"""``image.tokenize`` on official KARL: an image -> codes at every latent position + a boolean active ``mask``.

Images are prepared as the official evaluation transform does, to the pixel (``resize_and_center_crop``: the
shorter side resized with PIL's bicubic to the model's side, a centre crop, ``pixel / 255``, no normalisation);
a 256 x 256 image reaches the model unchanged.
Halting is per position, so the tokens file holds ``codes`` (1, T) (-1 where halted) or, for the continuous
VAE variant, ``latents`` (1, T, 12), plus ``mask`` (1, T) and the model fingerprint.
"""

from __future__ import annotations

import torch

from pipelines.image_resize import resize_and_center_crop
from pipelines.karl.serving import KARLTokenizeParams, KARLTokenizePipeline
from pipelines.media import Tokens
from tokenizers_media.image.karl_official import KARLOfficial, KARLOfficialEncoding


class KARLOfficialImageTokenizePipeline(KARLTokenizePipeline[KARLOfficial]):
    model_class = KARLOfficial

    def prepare(self, pixels: torch.Tensor) -> torch.Tensor:
        return resize_and_center_crop(pixels, self.model.config.image_size)

    def tokens_file(self, encoding: KARLOfficialEncoding, row: int, params: KARLTokenizeParams, budget: int,
                    threshold: float) -> Tokens:
        name = "latents" if encoding.codes is None else "codes"
        tensors = {name: encoding.tokens[row : row + 1].cpu(), "mask": encoding.mask[row : row + 1].cpu()}
        return Tokens(tensors, self.metadata(params, budget, threshold))
