"""GAN discriminators for neural audio codecs and vocoders (WavTokenizer, Vocos-style heads, mel vocoders).

- :class:`MultiPeriodDiscriminator` -- HiFi-GAN (Kong et al. 2020, arXiv 2010.05646, §2.2): the waveform is
  folded into ``(T / p, p)`` for each period ``p`` and judged by a stack of 2-D convolutions over time only.
- :class:`MultiResolutionDiscriminator` -- UnivNet (Jang et al. 2021, arXiv 2106.07889, §2.2) as used by Vocos:
  2-D convolutions over linear magnitude spectrograms at several STFT resolutions.

Both return ``(logits, features)``: one logit map per sub-discriminator and, per sub-discriminator, the list of
its intermediate activations (for the feature-matching loss). ``width`` scales every channel count so a tiny
preset trains on a CPU; the official models use ``width=32`` (MPD, up to 1024 channels) and ``width=64`` (MRD).
The official versions also add a bandwidth-conditional embedding term; WavTokenizer always uses bandwidth 0, so
it is a constant offset and is left out here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

LEAKY_SLOPE = 0.1

DiscriminatorOutput = tuple[list[torch.Tensor], list[list[torch.Tensor]]]
"""(logits per sub-discriminator, intermediate features per sub-discriminator)."""


class PeriodDiscriminator(nn.Module):
    """One HiFi-GAN period discriminator. Input ``(B, T)``; logits ``(B, 1, T', p)``."""

    def __init__(self, period: int, width: int = 32, kernel_size: int = 5, stride: int = 3) -> None:
        super().__init__()
        self.period = period
        chans = [1, width, 4 * width, 16 * width, 32 * width, 32 * width]
        pad = (kernel_size // 2, 0)
        self.convs = nn.ModuleList(
            weight_norm(nn.Conv2d(c_in, c_out, (kernel_size, 1), (stride if i < 4 else 1, 1), padding=pad))
            for i, (c_in, c_out) in enumerate(zip(chans[:-1], chans[1:], strict=True))
        )
        self.post = weight_norm(nn.Conv2d(chans[-1], 1, (3, 1), padding=(1, 0)))

    def forward(self, wav: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        x = wav.unsqueeze(1)  # (B, 1, T)
        remainder = x.shape[-1] % self.period
        if remainder:
            x = F.pad(x, (0, self.period - remainder), mode="reflect")
        x = x.view(x.shape[0], 1, -1, self.period)  # (B, 1, T / p, p)
        features = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), LEAKY_SLOPE)
            features.append(x)
        x = self.post(x)
        features.append(x)
        return x, features


class MultiPeriodDiscriminator(nn.Module):
    """HiFi-GAN multi-period discriminator over ``periods`` (default 2, 3, 5, 7, 11)."""

    def __init__(self, periods: tuple[int, ...] = (2, 3, 5, 7, 11), width: int = 32) -> None:
        super().__init__()
        self.discriminators = nn.ModuleList(PeriodDiscriminator(p, width) for p in periods)

    def forward(self, wav: torch.Tensor) -> DiscriminatorOutput:
        """``wav`` ``(B, T)`` -> ``(logits, features)``, one entry per period."""
        outputs = [d(wav) for d in self.discriminators]
        return [o[0] for o in outputs], [o[1] for o in outputs]


class ResolutionDiscriminator(nn.Module):
    """One UnivNet resolution discriminator on a linear magnitude spectrogram ``(B, 1, F, frames)``."""

    def __init__(self, n_fft: int, hop_length: int, win_length: int, width: int = 64) -> None:
        super().__init__()
        self.n_fft, self.hop_length, self.win_length = n_fft, hop_length, win_length
        self.register_buffer("window", torch.hann_window(win_length), persistent=False)
        # Kernels (frequency, time); strided along frequency only, as in UnivNet.
        specs = [((9, 3), (1, 1), (4, 1)), ((9, 3), (2, 1), (4, 1)), ((9, 3), (2, 1), (4, 1)),
                 ((9, 3), (2, 1), (4, 1)), ((3, 3), (1, 1), (1, 1))]
        self.convs = nn.ModuleList(
            weight_norm(nn.Conv2d(1 if i == 0 else width, width, k, s, padding=p))
            for i, (k, s, p) in enumerate(specs)
        )
        self.post = weight_norm(nn.Conv2d(width, 1, (3, 3), padding=(1, 1)))

    def spectrogram(self, wav: torch.Tensor) -> torch.Tensor:
        """``(B, T)`` -> magnitude ``(B, 1, n_fft // 2 + 1, frames)``."""
        spec = torch.stft(wav, self.n_fft, self.hop_length, self.win_length, self.window, center=True,
                          return_complex=True)
        return spec.abs().unsqueeze(1)

    def forward(self, wav: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        x = self.spectrogram(wav)
        features = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), LEAKY_SLOPE)
            features.append(x)
        x = self.post(x)
        features.append(x)
        return x, features


class MultiResolutionDiscriminator(nn.Module):
    """Vocos / UnivNet multi-resolution discriminator; ``resolutions`` are ``(n_fft, hop, win)`` triples."""

    def __init__(self, resolutions: tuple[tuple[int, int, int], ...] = ((1024, 256, 1024), (2048, 512, 2048),
                                                                         (512, 128, 512)),
                 width: int = 64) -> None:
        super().__init__()
        self.discriminators = nn.ModuleList(ResolutionDiscriminator(*r, width=width) for r in resolutions)

    def forward(self, wav: torch.Tensor) -> DiscriminatorOutput:
        """``wav`` ``(B, T)`` -> ``(logits, features)``, one entry per resolution."""
        outputs = [d(wav) for d in self.discriminators]
        return [o[0] for o in outputs], [o[1] for o in outputs]
