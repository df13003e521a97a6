"""``image.detokenize`` on TexTok: a tokens file (``latents`` (1, N, d) or ``codes`` (1, N)) + caption -> image.

The caption defaults to the one ``image.tokenize`` stored in the file; a ``caption`` param overrides it.
"""

from __future__ import annotations

import torch
from pydantic import Field

from pipelines.base import InputError, Params, ProgressCallback, Request, Result
from pipelines.media import Image, Tokens
from pipelines.textok.serving import MAX_CAPTION_CHARS, TexTokPipeline


class TexTokDetokenizeParams(Params):
    caption: str | None = Field(None, min_length=1, max_length=MAX_CAPTION_CHARS,
                                description="caption to decode with (default: the one in the tokens file)")


class TexTokImageDetokenizePipeline(TexTokPipeline):
    kind = "image.detokenize"
    params_model = TexTokDetokenizeParams
    inputs = {"tokens": "tokens"}

    def check_request(self, request: Request) -> None:
        super().check_request(request)
        tokens = request.inputs["tokens"]
        key = "codes" if self.model.config.bottleneck == "vq" else "latents"
        if not isinstance(tokens, Tokens) or key not in tokens.tensors:
            raise InputError(f"image.detokenize on this TexTok needs a tokens file with a '{key}' tensor")
        self.check_provenance(tokens)
        c = self.model.config
        value = tokens.tensors[key]
        if key == "latents":
            expected = (1, c.num_latent_tokens, c.latent_dim)
            if tuple(value.shape) != expected or not value.dtype.is_floating_point or not value.isfinite().all():
                raise InputError(f"'latents' must be finite floats of shape {expected}, got {value.dtype} "
                                 f"{tuple(value.shape)}")
        elif (tuple(value.shape) != (1, c.num_latent_tokens) or value.dtype.is_floating_point
              or int(value.min()) < 0 or int(value.max()) >= c.codebook_size):
            raise InputError(f"'codes' must be (1, {c.num_latent_tokens}) ints in [0, {c.codebook_size})")
        if c.text_conditioning and not self._caption(request):
            raise InputError("TexTok needs the image's caption to decode: pass 'caption' (the tokens file has none)")

    @staticmethod
    def _caption(request: Request) -> str:
        return request.params.caption or request.inputs["tokens"].metadata.get("caption", "")

    @torch.inference_mode()
    def run(self, requests: list[Request], progress: ProgressCallback | None = None) -> list[Result]:
        # 1. Check inputs, then embed every caption in one batch.
        text = self.embed_captions([self._caption(r) for r in requests])
        # 2. Decode the batch.
        if self.model.config.bottleneck == "vq":
            codes = torch.cat([r.inputs["tokens"].tensors["codes"].long() for r in requests]).to(self.device)
            images = self.model.decode_codes(codes, text)
        else:
            latents = torch.cat([r.inputs["tokens"].tensors["latents"].float() for r in requests])
            images = self.model.decode(latents.to(self.device), text)
        if progress:
            progress(1.0, f"decoded {len(requests)} image(s)")
        return [{"image": Image(image.cpu())} for image in images]
