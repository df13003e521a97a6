"""Diagonal Gaussian latents with a KL penalty (the "KL" tokenizers: VAE, TexTok's continuous tokens).

Kingma & Welling, "Auto-Encoding Variational Bayes" (arXiv 1312.6114), appendix B: KL of a diagonal
Gaussian from the standard normal. The encoder predicts ``2 * d`` numbers per token (mean, log-variance).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class GaussianLatent:
    """``sample`` (…, d) drawn with the reparameterisation trick (or the mean when deterministic) and
    ``kl`` (scalar): mean over batch and tokens, summed over the d channels."""

    sample: torch.Tensor
    mean: torch.Tensor
    kl: torch.Tensor


class DiagonalGaussian(torch.nn.Module):
    """(…, 2d) -> GaussianLatent. Log-variance is clamped to [-30, 20] so exp() cannot overflow."""

    def forward(self, moments: torch.Tensor, sample: bool = True,
                generator: torch.Generator | None = None) -> GaussianLatent:
        mean, logvar = moments.float().chunk(2, dim=-1)
        logvar = logvar.clamp(-30.0, 20.0)
        if sample:
            noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
            z = mean + torch.exp(0.5 * logvar) * noise
        else:
            z = mean
        kl = 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).sum(-1).mean()
        return GaussianLatent(sample=z, mean=mean, kl=kl)
