"""Synthetic music-like audio: harmonic notes, chords, melodies and sweeps, drawn from a seeded generator.

Mixed into the audio tokenizers' training crops so the codec also sees sustained pitched sounds (the paper
trains on speech, music and general audio; here only synthetic stand-ins exist).
"""

from __future__ import annotations

import math

import torch

SAMPLE_RATE = 24_000
KINDS: tuple[str, ...] = ("note", "chord", "melody", "sweep")


def _uniform(gen: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=gen))


def _harmonic(freq: torch.Tensor, sample_rate: int, gen: torch.Generator) -> torch.Tensor:
    """A harmonic tone following the per-sample frequency track ``freq`` ``(T,)``; partials above Nyquist dropped."""
    phase = 2 * math.pi * torch.cumsum(freq / sample_rate, dim=0)
    n_partials = int(torch.randint(1, 7, (), generator=gen))
    decay = _uniform(gen, 0.3, 0.9)
    out = torch.zeros_like(freq)
    for k in range(1, n_partials + 1):
        alive = (freq * k < sample_rate / 2).float()
        out += alive * decay ** (k - 1) * torch.sin(k * phase)
    return out


def _envelope(length: int, sample_rate: int, gen: torch.Generator) -> torch.Tensor:
    """Attack / exponential decay envelope ``(T,)``."""
    t = torch.arange(length) / sample_rate
    attack = _uniform(gen, 0.005, 0.08)
    release = _uniform(gen, 0.2, 2.0)
    return torch.clamp(t / attack, max=1.0) * torch.exp(-t / release)


def _note_freq(gen: torch.Generator) -> float:
    midi = int(torch.randint(40, 90, (), generator=gen))
    return 440.0 * 2 ** ((midi - 69) / 12)


def synth_tone(num_samples: int, gen: torch.Generator, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """One random clip ``(num_samples,)`` of a random kind in ``KINDS``, peak-normalised to 1."""
    kind = KINDS[int(torch.randint(len(KINDS), (), generator=gen))]
    ones = torch.ones(num_samples)
    if kind == "note":
        out = _harmonic(ones * _note_freq(gen), sample_rate, gen) * _envelope(num_samples, sample_rate, gen)
    elif kind == "chord":
        root = _note_freq(gen)
        out = sum(_harmonic(ones * root * 2 ** (step / 12), sample_rate, gen) for step in (0, 4, 7))
        out = out * _envelope(num_samples, sample_rate, gen)
    elif kind == "melody":
        n_notes = int(torch.randint(2, 7, (), generator=gen))
        bounds = torch.linspace(0, num_samples, n_notes + 1).long()
        out = torch.zeros(num_samples)
        for start, stop in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
            out[start:stop] = (_harmonic(torch.ones(stop - start) * _note_freq(gen), sample_rate, gen)
                               * _envelope(stop - start, sample_rate, gen))
    else:  # sweep: exponential chirp between two frequencies
        f0, f1 = _uniform(gen, 60, 2000), _uniform(gen, 60, 6000)
        freq = f0 * (f1 / f0) ** torch.linspace(0, 1, num_samples)
        out = _harmonic(freq, sample_rate, gen)
    return out / out.abs().max().clamp(min=1e-8)
