"""``audio.detokenize``: WavTokenizer codes -> a 24 kHz mono clip, trimmed to the original length."""

from __future__ import annotations

import torch

from pipelines.base import InputError, Params, ProgressCallback, Request, Result
from pipelines.media import Audio, Tokens
from pipelines.wavtokenizer.serving import WavTokenizerPipeline


class AudioDetokenizePipeline(WavTokenizerPipeline):
    kind = "audio.detokenize"
    params_model = Params
    inputs = {"tokens": "tokens"}

    def check_request(self, request: Request) -> None:
        super().check_request(request)
        tokens = request.inputs["tokens"]
        if not isinstance(tokens, Tokens) or "codes" not in tokens.tensors:
            raise InputError("audio.detokenize needs a tokens file with a 'codes' tensor")
        self.check_provenance(tokens)
        codes = tokens.tensors["codes"]
        if codes.dtype.is_floating_point or codes.dtype == torch.bool:
            raise InputError(f"'codes' must be integers, got {codes.dtype}")
        if codes.numel() == 0 or codes.reshape(-1).shape[0] != codes.shape[-1]:
            raise InputError(f"'codes' must be a non-empty (1, 1, F) tensor, got shape {tuple(codes.shape)}")
        low, high = int(codes.min()), int(codes.max())
        if low < 0 or high >= self.model.codebook_size:
            raise InputError(f"codes out of range [{low}, {high}]; this model has {self.model.codebook_size} codes")

    @torch.inference_mode()
    def run(self, requests: list[Request], progress: ProgressCallback | None = None) -> list[Result]:
        results: list[Result] = []
        for i, request in enumerate(requests):
            # Clips are decoded one by one: the backbone attends over the whole clip, so padding would change them.
            tokens = request.inputs["tokens"]
            codes = tokens.tensors["codes"].reshape(1, 1, -1).long().to(self.device)
            audio = self.model.decode(codes)[0].cpu()
            samples = int(tokens.metadata.get("samples", audio.numel()))
            results.append({"audio": Audio(audio[:samples].contiguous(), self.model.sample_rate)})
            if progress:
                progress((i + 1) / len(requests), f"decoded {i + 1}/{len(requests)}")
        return results
