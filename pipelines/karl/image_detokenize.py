"""``image.detokenize`` on KARL: a tokens file (``codes`` (1, T) + ``lengths`` (1,)) -> an image."""

from __future__ import annotations

import torch

from pipelines.base import InputError
from pipelines.karl.serving import KARLDetokenizePipeline
from pipelines.media import Tokens
from tokenizers_media.image.karl import KARL


class KARLImageDetokenizePipeline(KARLDetokenizePipeline[KARL]):
    model_class = KARL

    def decode_args(self, tokens: Tokens) -> tuple[torch.Tensor, torch.Tensor]:
        """(codes (1, T), lengths (1,)), int64; the codes past the length are padding and not checked."""
        if not {"codes", "lengths"} <= set(tokens.tensors):
            raise InputError("image.detokenize on KARL needs a tokens file with 'codes' and 'lengths' tensors")
        codes, lengths = tokens.tensors["codes"], tokens.tensors["lengths"]
        if codes.dtype.is_floating_point or codes.dtype == torch.bool or codes.ndim != 2 or codes.shape[0] != 1:
            raise InputError(f"'codes' must be an integer (1, T) tensor, got {codes.dtype} {tuple(codes.shape)}")
        self._check_codes(codes[self._prefix_mask(lengths, self._check_slots("codes", codes))])
        return codes.long(), lengths.long()
