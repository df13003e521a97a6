"""``image.tokenize`` on KARL: an image -> an adaptive number of discrete codes for a target error.

The image is centre-cropped to a square and resized (bilinear, antialiased) to the model's side; the tokens
file holds ``codes`` (1, T) padded with -1 past ``lengths`` (1,), and the model name, fingerprint, image size,
target error and budget as metadata.
"""

from __future__ import annotations

import torch

from pipelines.image_resize import to_model_size
from pipelines.karl.serving import KARLTokenizeParams, KARLTokenizePipeline
from pipelines.media import Tokens
from tokenizers_media.image.karl import KARL, KARLEncoding


class KARLImageTokenizePipeline(KARLTokenizePipeline[KARL]):
    model_class = KARL

    def prepare(self, pixels: torch.Tensor) -> torch.Tensor:
        return to_model_size(pixels, self.model.config.image_size)

    def tokens_file(self, encoding: KARLEncoding, row: int, params: KARLTokenizeParams, budget: int,
                    threshold: float) -> Tokens:
        tensors = {"codes": encoding.codes[row : row + 1].cpu(), "lengths": encoding.lengths[row : row + 1].cpu()}
        metadata = {**self.metadata(params, budget, threshold), "codebook_size": str(self.model.config.codebook_size)}
        return Tokens(tensors, metadata)
