"""What the two KARL tokenizers share (arXiv 2507.07995): input checks, error-bin snapping and the round trip.

``KARL`` (``karl.py``: pixel patches, prefix halting) and ``KARLOfficial`` (``karl_official.py``: the released
layout over a frozen base tokenizer, per-position halting) keep their own modules, because their state-dict names
must differ; what they do alike lives here once, so the two cannot drift apart in their checks or messages.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Protocol

import torch
from torch import nn


class KARLSizes(Protocol):
    """The config fields the shared checks read (both ``KARLConfig`` and ``KARLOfficialConfig`` have them)."""

    @property
    def image_size(self) -> int: ...

    @property
    def latent_pool(self) -> int: ...

    @property
    def code_dim(self) -> int: ...


@dataclass
class BaseKARLEncoding:
    """What ``encode`` returns for B images at budget T, in both models; each adds how it marks active tokens.

    ``codes`` (B, T) int64, ``PAD_CODE`` in inactive slots (None for a continuous model); ``latents`` (B, T, D)
    the quantised (or continuous) latents; ``halt_probs`` (B, T) halting probabilities; ``error_bins`` (B,) the
    bin index each target snapped to.
    """

    codes: torch.Tensor | None
    latents: torch.Tensor
    halt_probs: torch.Tensor
    error_bins: torch.Tensor

    active_field: ClassVar[str]
    """The subclass's field that marks the active tokens: ``decode``'s second argument."""

    @property
    def tokens(self) -> torch.Tensor:
        """What ``decode`` reads: the codes, or the latents of a continuous model."""
        return self.latents if self.codes is None else self.codes

    @property
    def decode_args(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(tokens, the active-token field): what the model's ``decode`` takes back."""
        return self.tokens, getattr(self, self.active_field)


def init_tokens(*shape: int) -> nn.Parameter:
    """A learned token table (positions, latent tokens, mask token) drawn as N(0, 0.02^2)."""
    return nn.Parameter(torch.randn(*shape) * 0.02)


def check_halt_threshold(threshold: float) -> None:
    """A halting threshold is a probability strictly inside (0, 1): at 0 or 1 every token halts or none can."""
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"halt_threshold must be in (0, 1), got {threshold}")


def snap_to_bins(target_error: float | torch.Tensor, batch_size: int, bins: torch.Tensor) -> torch.Tensor:
    """Per-image L1 target(s) (a float or (B,)) -> (B,) index of the first of ``bins`` >= target (else the last).

    Targets are compared in float32 on ``bins``' device, as the official code compares them.
    """
    target = torch.as_tensor(target_error, dtype=torch.float32, device=bins.device)
    if target.ndim == 0:
        target = target.expand(batch_size)
    if target.shape != (batch_size,) or not torch.all(target > 0):
        raise ValueError(f"target_error must be a positive float or a ({batch_size},) tensor, got {target}")
    return torch.searchsorted(bins, target.contiguous()).clamp(max=len(bins) - 1)


class KARLMixin:
    """The round trip and the checks of a KARL tokenizer, for a ``PretrainedModel`` with a KARL config.

    ``encode`` and ``decode`` are the class's own; ``active`` is per-image lengths (B,) for ``KARL`` and a (B, T)
    bool mask for ``KARLOfficial``, and each encoding's ``decode_args`` is what its ``decode`` takes back.
    """

    config: KARLSizes

    def encode(self, images: torch.Tensor, target_error: float | torch.Tensor = 0.05, max_tokens: int | None = None,
               halt_threshold: float | None = None) -> BaseKARLEncoding:
        """Images (B, 3, S, S) in [0, 1] -> adaptive-length tokens for a per-image L1 target."""
        raise NotImplementedError

    def decode(self, tokens: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
        """Codes (B, T) (or continuous latents (B, T, D)) and the active tokens -> images (B, 3, S, S)."""
        raise NotImplementedError

    def forward(self, images: torch.Tensor, target_error: float | torch.Tensor = 0.05,
                max_tokens: int | None = None) -> torch.Tensor:
        """Round trip: images (B, 3, S, S) -> adaptive tokens -> ``decode``'s reconstructions (B, 3, S, S)."""
        return self.decode(*self.encode(images, target_error, max_tokens).decode_args)

    def _token_latents(self, tokens: torch.Tensor, active: torch.Tensor, codebook: nn.Module | None) -> torch.Tensor:
        """What ``decode`` reads: codes (B, T) looked up in ``codebook`` (slots outside the (B, T) bool ``active``
        read code 0, so padding is never an index), or, without a codebook, continuous latents (B, T, D)."""
        if codebook is None:
            if tokens.ndim != 3 or tokens.shape[-1] != self.config.code_dim:
                raise ValueError(f"a continuous KARL decodes latents (B, T, {self.config.code_dim}), "
                                 f"got {tuple(tokens.shape)}")
            return tokens.float()
        if tokens.ndim != 2 or tokens.is_floating_point():
            raise ValueError(f"KARL decodes integer codes (B, T), got {tokens.dtype} {tuple(tokens.shape)}")
        return codebook.decode(tokens.long().masked_fill(~active, 0))

    def _check_images(self, images: torch.Tensor) -> None:
        size = self.config.image_size
        if images.ndim != 4 or tuple(images.shape[1:]) != (3, size, size):
            raise ValueError(f"KARL expects images (B, 3, {size}, {size}), got {tuple(images.shape)}")

    def _check_budget(self, num_tokens: int) -> None:
        if not 1 <= num_tokens <= self.config.latent_pool:
            raise ValueError(f"token budget must be in [1, {self.config.latent_pool}], got {num_tokens}")
