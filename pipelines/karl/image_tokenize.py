"""``image.tokenize`` on KARL: an image -> an adaptive number of discrete codes for a target error.

The image is centre-cropped to a square and resized (bilinear, antialiased) to the model's side; the tokens
file holds ``codes`` (1, T) padded with -1 past ``lengths`` (1,), and the model name, fingerprint, image size,
target error and budget as metadata.
"""

from __future__ import annotations

import torch
from pydantic import Field

from pipelines.base import InputError, Params, ProgressCallback, Request, Result
from pipelines.image_resize import check_rgb_image, to_model_size
from pipelines.karl.serving import KARLPipeline
from pipelines.media import Tokens


class KARLTokenizeParams(Params):
    target_error: float = Field(0.05, gt=0.0, le=1.0, description="desired per-image L1 in [0, 1] pixels")
    max_tokens: int | None = Field(None, ge=1, description="token budget (default: the model's)")
    halt_threshold: float | None = Field(None, gt=0.0, lt=1.0, description="halting probability above which "
                                         "tokens are dropped (default: the model's; lower = fewer tokens)")



class KARLImageTokenizePipeline(KARLPipeline):
    kind = "image.tokenize"
    params_model = KARLTokenizeParams
    inputs = {"image": "image"}

    def check_request(self, request: Request) -> None:
        super().check_request(request)
        check_rgb_image(request.inputs["image"], self.kind)
        budget = request.params.max_tokens
        if budget is not None and budget > self.model.config.latent_pool:
            raise InputError(f"max_tokens {budget} is larger than this model's {self.model.config.latent_pool}")

    @torch.inference_mode()
    def run(self, requests: list[Request], progress: ProgressCallback | None = None) -> list[Result]:
        # 1. Check inputs and bring every image to the model's size.
        for request in requests:
            self.check_request(request)
        size = self.model.config.image_size
        images = torch.stack([to_model_size(r.inputs["image"].pixels, size) for r in requests]).to(self.device)
        c = self.model.config
        settings = [(r.params.max_tokens or c.max_tokens, r.params.halt_threshold or c.halt_threshold)
                    for r in requests]
        results: list[Result | None] = [None] * len(requests)
        # 2. One encoder pass per distinct (budget, threshold); targets may differ per image.
        for budget, threshold in sorted(set(settings)):
            rows = [i for i, s in enumerate(settings) if s == (budget, threshold)]
            targets = torch.tensor([requests[i].params.target_error for i in rows])
            enc = self.model.encode(images[rows], target_error=targets, max_tokens=budget, halt_threshold=threshold)
            for j, i in enumerate(rows):
                tensors = {"codes": enc.codes[j : j + 1].cpu(), "lengths": enc.lengths[j : j + 1].cpu()}
                results[i] = {"tokens": Tokens(tensors, self._metadata(requests[i].params, budget, threshold))}
            if progress:
                progress(sum(r is not None for r in results) / len(results), f"encoded {len(rows)} image(s)")
        return [r for r in results if r is not None]

    def _metadata(self, params: KARLTokenizeParams, budget: int, threshold: float) -> dict[str, str]:
        return {**self.provenance(), "model_class": "KARL",
                "image_size": str(self.model.config.image_size), "target_error": f"{params.target_error:g}",
                "max_tokens": str(budget), "codebook_size": str(self.model.config.codebook_size),
                "halt_threshold": f"{threshold:g}"}
