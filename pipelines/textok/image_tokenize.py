"""``image.tokenize`` on TexTok: an image + its caption -> N continuous latent tokens (or VQ codes).

The image is centre-cropped and resized to the model's side. The tokens file holds ``latents`` (1, N, d)
(the Gaussian mean: deterministic) -- or ``codes`` (1, N) for a ``vq`` TexTok -- and as metadata the model
name, fingerprint, image size and the caption, which ``image.detokenize`` needs again.
"""

from __future__ import annotations

import torch
from pydantic import Field

from pipelines.base import Params, ProgressCallback, Request, Result
from pipelines.image_resize import check_rgb_image, to_model_size
from pipelines.media import Tokens
from pipelines.textok.serving import MAX_CAPTION_CHARS, TexTokPipeline


class TexTokTokenizeParams(Params):
    caption: str = Field(..., min_length=1, max_length=MAX_CAPTION_CHARS,
                         description="a description of the image; TexTok conditions its tokens on it")


class TexTokImageTokenizePipeline(TexTokPipeline):
    kind = "image.tokenize"
    params_model = TexTokTokenizeParams
    inputs = {"image": "image"}

    def check_request(self, request: Request) -> None:
        super().check_request(request)
        check_rgb_image(request.inputs["image"], self.kind)

    @torch.inference_mode()
    def run(self, requests: list[Request], progress: ProgressCallback | None = None) -> list[Result]:
        # 1. Check inputs (captions included) before any compute.
        captions = [r.params.caption for r in requests]
        text = self.embed_captions(captions)
        # 2. Resize and encode the batch.
        size = self.model.config.image_size
        images = torch.stack([to_model_size(r.inputs["image"].pixels, size) for r in requests]).to(self.device)
        encoding = self.model.encode(images, text)
        if progress:
            progress(1.0, f"encoded {len(requests)} image(s)")
        # 3. One tokens file per image.
        results: list[Result] = []
        for i, caption in enumerate(captions):
            if encoding.codes is not None:
                tensors = {"codes": encoding.codes[i : i + 1].cpu()}
            else:
                tensors = {"latents": encoding.latents[i : i + 1].float().cpu()}
            results.append({"tokens": Tokens(tensors, self._metadata(caption))})
        return results

    def _metadata(self, caption: str) -> dict[str, str]:
        c = self.model.config
        return {**self.provenance(), "model_class": "TexTok",
                "image_size": str(c.image_size), "num_tokens": str(c.num_latent_tokens),
                "latent_dim": str(c.latent_dim), "caption": caption}
