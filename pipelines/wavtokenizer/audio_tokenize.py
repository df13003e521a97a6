"""``audio.tokenize``: a mono clip -> WavTokenizer codes (one 4096-entry codebook, 40 or 75 tokens/s)."""

from __future__ import annotations

import torch
import torchaudio.functional as AF

from pipelines.base import InputError, Params, ProgressCallback, Request, Result
from pipelines.media import Audio, Tokens
from pipelines.wavtokenizer.serving import WavTokenizerPipeline


class AudioTokenizePipeline(WavTokenizerPipeline):
    kind = "audio.tokenize"
    params_model = Params
    inputs = {"audio": "audio"}

    def _to_model_rate(self, audio: Audio) -> torch.Tensor:
        samples = audio.samples.float()
        if audio.sample_rate != self.model.sample_rate:
            samples = AF.resample(samples, orig_freq=audio.sample_rate, new_freq=self.model.sample_rate)
        return samples

    def check_request(self, request: Request) -> None:
        super().check_request(request)
        audio = request.inputs["audio"]
        if not isinstance(audio, Audio) or audio.samples.ndim != 1 or audio.samples.numel() == 0:
            raise InputError("audio.tokenize needs a non-empty mono clip")

    @torch.inference_mode()
    def run(self, requests: list[Request], progress: ProgressCallback | None = None) -> list[Result]:
        # 1. Check inputs and bring every clip to the model's rate.
        clips = [self._to_model_rate(r.inputs["audio"]) for r in requests]
        # 2. Encode the batch padded, with lengths, so unequal clips give the codes they give alone.
        lengths = torch.tensor([c.numel() for c in clips])
        batch = torch.nn.utils.rnn.pad_sequence(clips, batch_first=True).to(self.device)
        codes = self.model.encode(batch, lengths=lengths.to(batch.device)).cpu()
        frames = (lengths + self.model.hop_length - 1) // self.model.hop_length
        if progress:  # one forward pass for the batch: nothing to count before it ends
            progress(1.0, f"encoded {len(clips)} clip(s)")
        # 3. One tokens file per clip.
        return [{"tokens": Tokens({"codes": codes[i : i + 1, :, : int(f)].contiguous()}, self._metadata(int(n)))}
                for i, (f, n) in enumerate(zip(frames, lengths, strict=True))]

    def _metadata(self, samples: int) -> dict[str, str]:
        return {**self.provenance(), "sample_rate": str(self.model.sample_rate),
                "token_rate": f"{self.model.token_rate:g}", "hop_length": str(self.model.hop_length),
                "codebook_size": str(self.model.codebook_size), "samples": str(samples)}
