"""``image.detokenize`` on official KARL: ``codes`` (or ``latents``) with a ``mask`` (1, T) of active
positions, or a karl-tiny style ``lengths`` (1,) prefix, -> an image clipped to [0, 1]."""

from __future__ import annotations

import torch

from pipelines.base import InputError, Params, ProgressCallback, Request, Result
from pipelines.karl.official_serving import KARLOfficialPipeline
from pipelines.media import Image, Tokens


class KARLOfficialImageDetokenizePipeline(KARLOfficialPipeline):
    kind = "image.detokenize"
    params_model = Params
    inputs = {"tokens": "tokens"}

    def _tokens_and_mask(self, tokens: Tokens) -> tuple[torch.Tensor, torch.Tensor]:
        """(values (1, T[, D]), mask (1, T) bool) of a tokens file, or ``InputError`` naming what is wrong."""
        name = "codes" if self.model.quantize is not None else "latents"
        if name not in tokens.tensors or not {"mask", "lengths"} & set(tokens.tensors):
            raise InputError(f"image.detokenize on this KARL needs '{name}' and a 'mask' (or 'lengths') tensor")
        values = tokens.tensors[name]
        if values.ndim != (2 if name == "codes" else 3) or values.shape[0] != 1:
            raise InputError(f"'{name}' must be (1, T{'' if name == 'codes' else ', D'}), got {tuple(values.shape)}")
        slots = values.shape[1]
        if not 1 <= slots <= self.model.config.latent_pool:
            raise InputError(f"'{name}' has {slots} slots; this model takes 1..{self.model.config.latent_pool}")
        if "mask" in tokens.tensors:
            mask = tokens.tensors["mask"]
            if mask.shape != (1, slots):
                raise InputError(f"'mask' must be (1, {slots}), got {tuple(mask.shape)}")
            mask = mask != 0
        else:
            lengths = tokens.tensors["lengths"]
            if lengths.shape != (1,) or not 0 <= int(lengths[0]) <= slots:
                raise InputError(f"'lengths' must be one value in [0, {slots}], got {lengths.tolist()}")
            mask = torch.arange(slots)[None] < int(lengths[0])
        if name == "codes":
            if values.dtype.is_floating_point or values.dtype == torch.bool:
                raise InputError(f"'codes' must be integers, got {values.dtype}")
            active = values[mask]
            size = self.model.config.codebook_size
            if active.numel() and (int(active.min()) < 0 or int(active.max()) >= size):
                raise InputError(f"active codes out of range [0, {size})")
        return values, mask

    def check_request(self, request: Request) -> None:
        super().check_request(request)
        tokens = request.inputs["tokens"]
        if not isinstance(tokens, Tokens):
            raise InputError("image.detokenize needs a tokens file")
        self.check_provenance(tokens)
        self._tokens_and_mask(tokens)

    @torch.inference_mode()
    def run(self, requests: list[Request], progress: ProgressCallback | None = None) -> list[Result]:
        for request in requests:
            self.check_request(request)
        results: list[Result] = []
        for i, request in enumerate(requests):
            # One by one: budgets (T) may differ between files.
            values, mask = self._tokens_and_mask(request.inputs["tokens"])
            image = self.model.decode(values.to(self.device), mask.to(self.device))[0].clamp(0.0, 1.0).cpu()
            results.append({"image": Image(image)})
            if progress:
                progress((i + 1) / len(requests), f"decoded {i + 1}/{len(requests)}")
        return results
