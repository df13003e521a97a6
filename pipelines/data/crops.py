"""Random fixed-length training crops with the official gain augmentation (audio tokenizer training data).

As in the official WavTokenizer data loader (spec ``audio.md`` §1 "Data"): each clip is peak-normalised to a
random gain in U(-6, -1) dB (sox ``norm``), then a random crop of ``crop_samples`` is taken; clips shorter than
the crop are padded by repetition. With probability ``tone_prob`` a crop is a synthetic tone instead
(:mod:`pipelines.data.tones`). All randomness comes from one ``torch.Generator`` whose state is checkpointed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from pipelines.data.tones import synth_tone

GAIN_DB_RANGE = (-6.0, -1.0)


def repeat_pad(clip: torch.Tensor, length: int) -> torch.Tensor:
    """Tile ``clip`` ``(T,)`` until it is at least ``length`` samples long."""
    if len(clip) == 0:
        raise ValueError("cannot pad an empty clip")
    if len(clip) >= length:
        return clip
    return clip.repeat(-(-length // len(clip)))


class CropSampler:
    """Draws batches ``(B, crop_samples)`` from a list of clips (and synthetic tones)."""

    def __init__(self, clips: Sequence[torch.Tensor], crop_samples: int, tone_prob: float = 0.0,
                 seed: int = 0, sample_rate: int = 24_000) -> None:
        if not clips:
            raise ValueError("CropSampler needs at least one clip")
        if crop_samples < 1:
            raise ValueError(f"crop_samples must be >= 1, got {crop_samples}")
        if not 0.0 <= tone_prob <= 1.0:
            raise ValueError(f"tone_prob must be in [0, 1], got {tone_prob}")
        self.clips = [repeat_pad(c, crop_samples) for c in clips]
        self.peaks = [float(c.abs().max().clamp(min=1e-8)) for c in self.clips]
        self.crop_samples, self.tone_prob, self.sample_rate = crop_samples, tone_prob, sample_rate
        self.generator = torch.Generator().manual_seed(seed)

    def _crop(self) -> torch.Tensor:
        gen = self.generator
        if self.tone_prob > 0 and float(torch.rand((), generator=gen)) < self.tone_prob:
            crop, peak = synth_tone(self.crop_samples, gen, self.sample_rate), 1.0
        else:
            idx = int(torch.randint(len(self.clips), (), generator=gen))
            clip, peak = self.clips[idx], self.peaks[idx]
            start = int(torch.randint(len(clip) - self.crop_samples + 1, (), generator=gen))
            crop = clip[start:start + self.crop_samples]
        low, high = GAIN_DB_RANGE
        gain_db = low + (high - low) * float(torch.rand((), generator=gen))
        return crop * (10 ** (gain_db / 20) / peak)

    def sample(self, batch_size: int) -> torch.Tensor:
        """A batch ``(B, crop_samples)`` float32."""
        return torch.stack([self._crop() for _ in range(batch_size)])

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
