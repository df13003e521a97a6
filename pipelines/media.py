"""Typed media values that cross the pipeline boundary (tensors and small python values, never paths)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class Audio:
    """A mono waveform: ``samples`` (T,) float32 in [-1, 1] at ``sample_rate`` Hz."""

    samples: torch.Tensor
    sample_rate: int


@dataclass
class Image:
    """An RGB image: ``pixels`` (3, H, W) float32 in [0, 1]."""

    pixels: torch.Tensor


@dataclass
class Tokens:
    """Named tensors (``codes``, ``latents``, ``mask``, ``lengths``) plus string metadata (model, rates)."""

    tensors: dict[str, torch.Tensor]
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass
class Text:
    text: str


Media = Audio | Image | Tokens | Text
