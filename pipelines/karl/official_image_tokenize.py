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

from pipelines.base import InputError, ProgressCallback, Request, Result
from pipelines.image_resize import check_rgb_image
from pipelines.karl.image_tokenize import KARLTokenizeParams
from pipelines.karl.official_serving import KARLOfficialPipeline
from pipelines.media import Tokens


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


# The checks and the (budget, threshold) grouping follow pipelines.karl.image_tokenize (karl-tiny) on purpose
# (one file per job kind); the model, the input transform and the tokens file differ.
class KARLOfficialImageTokenizePipeline(KARLOfficialPipeline):
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
        # 1. Check inputs and prepare every image as the official transform does.
        for request in requests:
            self.check_request(request)
        c = self.model.config
        images = torch.stack([to_official_input(r.inputs["image"].pixels, c.image_size) for r in requests])
        settings = [(r.params.max_tokens or c.max_tokens, r.params.halt_threshold or c.halt_threshold)
                    for r in requests]
        results: list[Result | None] = [None] * len(requests)
        # 2. One batched encoder pass per distinct (budget, threshold); each image keeps its own mask.
        for budget, threshold in sorted(set(settings)):
            rows = [i for i, s in enumerate(settings) if s == (budget, threshold)]
            targets = torch.tensor([requests[i].params.target_error for i in rows])
            enc = self.model.encode(images[rows].to(self.device), target_error=targets, max_tokens=budget,
                                    halt_threshold=threshold)
            for j, i in enumerate(rows):
                values = enc.codes if enc.codes is not None else enc.latents
                tensors = {"codes" if enc.codes is not None else "latents": values[j : j + 1].cpu(),
                           "mask": enc.mask[j : j + 1].cpu()}
                metadata = {**self.provenance(), "model_class": "KARLOfficial", "image_size": str(c.image_size),
                            "target_error": f"{requests[i].params.target_error:g}", "max_tokens": str(budget),
                            "halt_threshold": f"{threshold:g}"}
                results[i] = {"tokens": Tokens(tensors, metadata)}
            if progress:
                progress(sum(r is not None for r in results) / len(results), f"encoded {len(rows)} image(s)")
        return [r for r in results if r is not None]
