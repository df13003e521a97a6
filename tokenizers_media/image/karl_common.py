"""What the two KARL tokenizers share (arXiv 2507.07995): the common config, input checks, error bins, the
encoding and the round trip.

``KARL`` (``karl.py``: pixel patches, prefix halting) and ``KARLOfficial`` (``karl_official.py``: the released
layout over a frozen base tokenizer, per-position halting) keep their own modules, because their state-dict names
must differ; what they do alike lives here once, so the two cannot drift apart in their checks or messages.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from tokenizers_media.modeling import ModelConfig

ERROR_BINS: tuple[float, ...] = (0.005, 0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07, 0.09, 0.1, 0.12, 0.14, 0.16,
                                 0.18, 0.2, 0.24, 0.28, 0.32, 0.38)
"""The 19 per-image L1 targets of KARL (spec, "One-pass token count"); a target snaps up to the next bin."""

PAD_CODE = -1
"""Value of the code slots of inactive (halted or padding) tokens in a batch of codes."""


@dataclass(frozen=True)
class BaseKARLConfig(ModelConfig):
    """The hyper-parameters both KARL models have; the defaults are ``karl_small``'s.

    Args:
        image_size: input side in pixels (square images).
        patch_size: patch side; (image_size / patch_size)^2 image tokens.
        width, encoder_depth, decoder_depth, num_heads: the two transformers (1024, 8, 8, 8 in karl_small).
        latent_pool: learnable latent tokens (and decoder per-index embeddings); a budget may not exceed it.
        max_tokens: default token budget T of ``encode``.
        code_dim: latent size per token (12 in KARL).
        codebook_size: VQ codes (4096).
        halt_threshold: default halting threshold of ``encode``; a token halts when its probability exceeds it.
        error_bins: the target-error bins, ascending; a target snaps up to the next.
    """

    image_size: int = 256
    patch_size: int = 16
    width: int = 1024
    encoder_depth: int = 8
    decoder_depth: int = 8
    num_heads: int = 8
    latent_pool: int = 512
    max_tokens: int = 256
    code_dim: int = 12
    codebook_size: int = 4096
    halt_threshold: float = 0.75
    error_bins: tuple[float, ...] = ERROR_BINS

    def __post_init__(self) -> None:
        if not 1 <= self.max_tokens <= self.latent_pool:
            raise ValueError(f"max_tokens {self.max_tokens} must be in [1, latent_pool={self.latent_pool}]")

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size


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


class KARLMixin(nn.Module):
    """The round trip and the checks of a KARL tokenizer, for a ``PretrainedModel`` with a KARL config.

    ``encode`` and ``decode`` are the class's own; ``active`` is per-image lengths (B,) for ``KARL`` and a (B, T)
    bool mask for ``KARLOfficial``, and each encoding's ``decode_args`` is what its ``decode`` takes back.
    """

    config: BaseKARLConfig

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

    def error_bin(self, target_error: float | torch.Tensor, batch_size: int) -> torch.Tensor:
        """Per-image L1 target(s) (a float or (B,)) -> (B,) index of the first bin >= target (else the last bin).

        Compared in float32 on the CPU as the official code compares them; the bins are no buffer, because
        ``convert karl`` builds the model on the meta device and assigns only the state dict.
        """
        target = torch.as_tensor(target_error, dtype=torch.float32).cpu()
        if target.ndim == 0:
            target = target.expand(batch_size)
        if target.shape != (batch_size,) or not torch.all(target > 0):
            raise ValueError(f"target_error must be a positive float or a ({batch_size},) tensor, got {target}")
        bins = torch.tensor(self.config.error_bins, dtype=torch.float32)
        index = torch.searchsorted(bins, target.contiguous()).clamp(max=len(bins) - 1)
        return index.to(next(self.parameters()).device)

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
