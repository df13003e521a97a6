"""``image.detokenize`` on official KARL: ``codes`` (or ``latents``) with a ``mask`` (1, T) of active
positions, or a karl-tiny style ``lengths`` (1,) prefix, -> an image clipped to [0, 1]."""

from __future__ import annotations

import torch

from pipelines.base import InputError
from pipelines.karl.serving import KARLDetokenizePipeline
from pipelines.media import Tokens
from tokenizers_media.image.karl_official import KARLOfficial


class KARLOfficialImageDetokenizePipeline(KARLDetokenizePipeline[KARLOfficial]):
    model_class = KARLOfficial

    def decode_args(self, tokens: Tokens) -> tuple[torch.Tensor, torch.Tensor]:
        """(values (1, T[, D]), mask (1, T) bool): codes for a quantised model, latents for a continuous one."""
        name = "codes" if self.model.quantize is not None else "latents"
        if name not in tokens.tensors or not {"mask", "lengths"} & set(tokens.tensors):
            raise InputError(f"image.detokenize on this KARL needs '{name}' and a 'mask' (or 'lengths') tensor")
        values = tokens.tensors[name]
        if values.ndim != (2 if name == "codes" else 3) or values.shape[0] != 1:
            raise InputError(f"'{name}' must be (1, T{'' if name == 'codes' else ', D'}), got {tuple(values.shape)}")
        slots = self._check_slots(name, values)
        if "mask" in tokens.tensors:
            mask = tokens.tensors["mask"]
            if mask.shape != (1, slots):
                raise InputError(f"'mask' must be (1, {slots}), got {tuple(mask.shape)}")
            mask = mask != 0
        else:
            mask = self._prefix_mask(tokens.tensors["lengths"], slots)
        if name == "codes":
            if values.dtype.is_floating_point or values.dtype == torch.bool:
                raise InputError(f"'codes' must be integers, got {values.dtype}")
            self._check_codes(values[mask])
        return values, mask
