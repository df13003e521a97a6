"""``image.detokenize`` on KARL: a tokens file (``codes`` (1, T) + ``lengths`` (1,)) -> an image."""

from __future__ import annotations

import torch

from pipelines.base import InputError, Params, ProgressCallback, Request, Result
from pipelines.karl.serving import KARLPipeline
from pipelines.media import Image, Tokens


class KARLImageDetokenizePipeline(KARLPipeline):
    kind = "image.detokenize"
    params_model = Params
    inputs = {"tokens": "tokens"}

    def check_request(self, request: Request) -> None:
        super().check_request(request)
        tokens = request.inputs["tokens"]
        if not isinstance(tokens, Tokens) or not {"codes", "lengths"} <= set(tokens.tensors):
            raise InputError("image.detokenize on KARL needs a tokens file with 'codes' and 'lengths' tensors")
        self.check_provenance(tokens)
        codes, lengths = tokens.tensors["codes"], tokens.tensors["lengths"]
        if codes.dtype.is_floating_point or codes.dtype == torch.bool or codes.ndim != 2 or codes.shape[0] != 1:
            raise InputError(f"'codes' must be an integer (1, T) tensor, got {codes.dtype} {tuple(codes.shape)}")
        pool = self.model.config.latent_pool
        if not 1 <= codes.shape[1] <= pool:
            raise InputError(f"'codes' has {codes.shape[1]} slots; this model takes 1..{pool}")
        if lengths.shape != (1,) or not 0 <= int(lengths[0]) <= codes.shape[1]:
            raise InputError(f"'lengths' must be one value in [0, {codes.shape[1]}], got {lengths.tolist()}")
        active = codes[0, : int(lengths[0])]
        if active.numel() and (int(active.min()) < 0 or int(active.max()) >= self.model.config.codebook_size):
            raise InputError(f"codes out of range [{int(active.min())}, {int(active.max())}]; this model has "
                             f"{self.model.config.codebook_size} codes")

    @torch.inference_mode()
    def run(self, requests: list[Request], progress: ProgressCallback | None = None) -> list[Result]:
        for request in requests:
            self.check_request(request)
        results: list[Result] = []
        for i, request in enumerate(requests):
            # One by one: budgets (T) may differ between files, and decoding needs no padding across them.
            tensors = request.inputs["tokens"].tensors
            codes, lengths = tensors["codes"].long().to(self.device), tensors["lengths"].long().to(self.device)
            image = self.model.decode(codes, lengths)[0].cpu()
            results.append({"image": Image(image)})
            if progress:
                progress((i + 1) / len(requests), f"decoded {i + 1}/{len(requests)}")
        return results
