"""Training losses shared by the audio codecs and vocoders (WavTokenizer, later mel vocoders).

Follows the WavTokenizer / Vocos recipe (spec ``audio.md`` §1 "Losses"):

- mel L1 on ``log(clip(mel, 1e-7))`` with a 24 kHz, n_fft 1024, hop 256, 100-band magnitude mel spectrogram;
- hinge GAN losses (Lim & Ye 2017, "Geometric GAN"), averaged over sub-discriminators;
- feature matching (Larsen et al. 2016; MelGAN §2.3): mean ``|real - fake|`` over every layer of every
  sub-discriminator, divided by the number of sub-discriminators.
"""

from __future__ import annotations

import torch
from torch import nn
from torchaudio.transforms import MelSpectrogram

MEL_FLOOR = 1e-7


class LogMelSpectrogram(nn.Module):
    """``(B, T)`` waveform -> ``(B, n_mels, frames)`` log magnitude mel spectrogram (floor ``MEL_FLOOR``)."""

    def __init__(self, sample_rate: int = 24_000, n_fft: int = 1024, hop_length: int = 256,
                 n_mels: int = 100) -> None:
        super().__init__()
        self.mel = MelSpectrogram(sample_rate=sample_rate, n_fft=n_fft, hop_length=hop_length, n_mels=n_mels,
                                  center=True, power=1.0)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        # The floor keeps log() finite on silent bins.
        return torch.log(self.mel(wav).clamp(min=MEL_FLOOR))


class MelLoss(nn.Module):
    """L1 distance between log mel spectrograms of two equal-length waveforms ``(B, T)``."""

    def __init__(self, sample_rate: int = 24_000, n_fft: int = 1024, hop_length: int = 256,
                 n_mels: int = 100) -> None:
        super().__init__()
        self.log_mel = LogMelSpectrogram(sample_rate, n_fft, hop_length, n_mels)

    def forward(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        if fake.shape != real.shape:
            raise ValueError(f"mel loss needs equal shapes, got {tuple(fake.shape)} and {tuple(real.shape)}")
        return (self.log_mel(fake) - self.log_mel(real)).abs().mean()


def hinge_discriminator_loss(real_logits: list[torch.Tensor], fake_logits: list[torch.Tensor]) -> torch.Tensor:
    """Mean over sub-discriminators of ``E[relu(1 - D(real))] + E[relu(1 + D(fake))]``."""
    if len(real_logits) != len(fake_logits) or not real_logits:
        raise ValueError(f"need matching non-empty logit lists, got {len(real_logits)} and {len(fake_logits)}")
    losses = [torch.relu(1 - r).mean() + torch.relu(1 + f).mean() for r, f in zip(real_logits, fake_logits,
                                                                                 strict=True)]
    return torch.stack(losses).mean()


def hinge_generator_loss(fake_logits: list[torch.Tensor]) -> torch.Tensor:
    """Mean over sub-discriminators of ``E[relu(1 - D(fake))]``."""
    if not fake_logits:
        raise ValueError("need at least one sub-discriminator's logits")
    return torch.stack([torch.relu(1 - f).mean() for f in fake_logits]).mean()


def feature_matching_loss(real_features: list[list[torch.Tensor]],
                          fake_features: list[list[torch.Tensor]]) -> torch.Tensor:
    """Sum over layers of mean ``|real - fake|`` (real detached), divided by the number of sub-discriminators."""
    if len(real_features) != len(fake_features) or not real_features:
        raise ValueError(f"need matching non-empty feature lists, got {len(real_features)} and "
                         f"{len(fake_features)}")
    total = sum((r.detach() - f).abs().mean()
                for real, fake in zip(real_features, fake_features, strict=True)
                for r, f in zip(real, fake, strict=True))
    return total / len(real_features)
