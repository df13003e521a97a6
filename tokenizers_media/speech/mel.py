"""Continuous speech tokens: log-mel frames at a fixed rate (Flow-Omni's speech unit, the vocoder's input).

The frame grid matches WavTokenizer's 75 tokens/s variant (24 kHz, hop 320, window 1280), so a continuous frame
and a discrete code describe the same 13.3 ms of audio; that keeps the paper's comparison (continuous frames vs
codec codes) at equal rates. Frames use "same" padding: a clip of T samples gives ``ceil(T / hop)`` frames and a
vocoder with the same hop turns F frames back into exactly ``F * hop`` samples.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torchaudio.transforms import MelSpectrogram

from tokenizers_media.modeling import ModelConfig

LOG_MEL_FLOOR = 1e-5
"""Magnitude floor before the log (spec flow_omni.md §8): keeps silence finite and the value range compact."""


@dataclass(frozen=True)
class MelSpec:
    """Mel front-end settings; stored in every model config that reads or writes log-mel frames."""

    sample_rate: int = 24_000
    n_fft: int = 1280
    hop_length: int = 320
    n_mels: int = 80
    f_min: float = 0.0
    f_max: float = 12_000.0

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop_length

    def num_frames(self, samples: int) -> int:
        return math.ceil(samples / self.hop_length)


@dataclass(frozen=True)
class MelFrontendConfig(ModelConfig):
    """Base of the configs of models that read or write log-mel frames: the front-end, as config fields.

    Args:
        sample_rate, n_fft, hop_length, n_mels, f_min, f_max: the :class:`MelSpec` of the frames.
    """

    sample_rate: int = MelSpec.sample_rate
    n_fft: int = MelSpec.n_fft
    hop_length: int = MelSpec.hop_length
    n_mels: int = MelSpec.n_mels
    f_min: float = MelSpec.f_min
    f_max: float = MelSpec.f_max

    @property
    def mel_spec(self) -> MelSpec:
        return MelSpec(self.sample_rate, self.n_fft, self.hop_length, self.n_mels, self.f_min, self.f_max)


class LogMel(nn.Module):
    """Waveform ``(B, T)`` -> natural-log magnitude mel ``(B, ceil(T / hop), n_mels)``, frames last-but-one."""

    def __init__(self, spec: MelSpec = MelSpec()) -> None:
        super().__init__()
        if (spec.n_fft - spec.hop_length) % 2:
            raise ValueError(f"n_fft - hop_length must be even for 'same' padding, got {spec.n_fft}, "
                             f"{spec.hop_length}")
        self.spec = spec
        self.mel = MelSpectrogram(sample_rate=spec.sample_rate, n_fft=spec.n_fft, hop_length=spec.hop_length,
                                  n_mels=spec.n_mels, f_min=spec.f_min, f_max=spec.f_max, center=False,
                                  power=1.0, norm="slaney", mel_scale="slaney")

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        if wav.dim() != 2:
            raise ValueError(f"LogMel expects a (B, T) waveform, got shape {tuple(wav.shape)}")
        hop, pad = self.spec.hop_length, (self.spec.n_fft - self.spec.hop_length) // 2
        wav = F.pad(wav, (0, (-wav.shape[-1]) % hop))  # whole frames only
        padded = F.pad(wav[:, None], (pad, pad), mode="reflect" if wav.shape[-1] > pad else "constant")[:, 0]
        return torch.log(self.mel(padded).clamp(min=LOG_MEL_FLOOR)).transpose(1, 2)


def mel_floor_value() -> float:
    """The log-mel value of silence (what generated frames are clamped to from below)."""
    return math.log(LOG_MEL_FLOOR)
