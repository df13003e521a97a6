"""Euclidean codebook learned by exponential moving averages, as in EnCodec / WavTokenizer.

shared/specs/audio.md, section 1 ("Quantizer"): one codebook of ``codebook_size`` x ``dim`` stored as buffers
(``inited``, ``cluster_size``, ``embed``, ``embed_avg``), nearest neighbour by Euclidean distance, EMA updates
(decay 0.99, Laplace smoothing eps 1e-5), k-means initialisation (200 iterations) on the first *training* batch,
replacement of codes whose EMA usage falls under a threshold (2) by random batch vectors, straight-through
gradients and a commitment loss MSE(sg(q), x) (weight 1).

Unlike the official code, nothing is ever initialised outside training: encoding with an uninitialised codebook
raises (the official first forward runs k-means on the input even in eval mode).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from tokenizers_media.nn.vq import nearest_neighbours, sample_vectors


def kmeans(samples: torch.Tensor, num_clusters: int, num_iters: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's k-means from random samples: (N, D) -> means (K, D), assignment counts (K,) of the last step.

    An empty cluster keeps its previous mean.
    """
    means = sample_vectors(samples, num_clusters)
    bins = torch.zeros(num_clusters, device=samples.device)
    for _ in range(num_iters):
        buckets = nearest_neighbours(samples, means)[:, 0]  # (N,)
        bins = torch.bincount(buckets, minlength=num_clusters).to(samples.dtype)
        sums = torch.zeros_like(means).index_add_(0, buckets, samples)
        empty = bins == 0
        means = torch.where(empty[:, None], means, sums / bins.clamp(min=1)[:, None])
    return means, bins


class EuclideanCodebook(nn.Module):
    """``codebook_size`` vectors of size ``dim``, learned by EMA (no gradients reach the codebook).

    Args:
        dim: vector size (WavTokenizer: 512).
        codebook_size: number of codes (4096).
        kmeans_iters: k-means iterations of the first training batch (200).
        decay: EMA decay (0.99).
        epsilon: Laplace smoothing of the cluster sizes (1e-5).
        threshold_ema_dead_code: codes whose EMA cluster size falls below it are replaced (2; 0 = never).
    """

    def __init__(self, dim: int, codebook_size: int, kmeans_iters: int = 200, decay: float = 0.99,
                 epsilon: float = 1e-5, threshold_ema_dead_code: float = 2.0) -> None:
        super().__init__()
        if dim < 1 or codebook_size < 1 or kmeans_iters < 1:
            raise ValueError(f"dim, codebook_size and kmeans_iters must be positive, got {dim}, {codebook_size}, "
                             f"{kmeans_iters}")
        if not 0.0 < decay < 1.0:
            raise ValueError(f"decay must be in (0, 1), got {decay}")
        self.dim, self.codebook_size, self.kmeans_iters = dim, codebook_size, kmeans_iters
        self.decay, self.epsilon, self.threshold_ema_dead_code = decay, epsilon, threshold_ema_dead_code
        self.register_buffer("inited", torch.zeros(1))
        self.register_buffer("cluster_size", torch.zeros(codebook_size))
        self.register_buffer("embed", torch.zeros(codebook_size, dim))
        self.register_buffer("embed_avg", torch.zeros(codebook_size, dim))

    @property
    def is_initialized(self) -> bool:
        return bool(self.inited.item())

    def _check_initialized(self) -> None:
        if not self.is_initialized:
            raise RuntimeError("the codebook is not initialised: it is set by k-means on the first training batch "
                               "(call the model in train() mode) or by loading trained weights")

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Vectors (..., D) -> codes (...) int64 of the nearest codebook entries (in fp32)."""
        self._check_initialized()
        return nearest_neighbours(x.detach().float(), self.embed)[..., 0]

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes (...) -> vectors (..., D)."""
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= self.codebook_size):
            raise ValueError(f"codes must lie in [0, {self.codebook_size}), got range "
                             f"[{int(codes.min())}, {int(codes.max())}]")
        return F.embedding(codes, self.embed)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Vectors (..., D) -> (code vectors (..., D), codes (...)).

        In training mode this also initialises the codebook (first call), replaces dead codes and applies the
        EMA update; the returned vectors are those of the codebook *before* this batch's update.
        """
        flat = x.detach().reshape(-1, self.dim).float()  # (N, D)
        if self.training:
            self.init_embed_(flat)
        codes = self.encode(flat)
        quantized = self.decode(codes)
        if self.training:
            self.expire_codes_(flat)
            self.ema_update_(flat, codes)
        return quantized.reshape(x.shape).to(x.dtype), codes.reshape(x.shape[:-1])

    @torch.no_grad()
    def init_embed_(self, flat: torch.Tensor) -> None:
        """k-means initialisation from the first training batch (N, D); a no-op once initialised."""
        if self.is_initialized:
            return
        means, bins = kmeans(flat, self.codebook_size, self.kmeans_iters)
        self.embed.copy_(means)
        self.embed_avg.copy_(means)
        self.cluster_size.copy_(bins)
        self.inited.fill_(1.0)

    @torch.no_grad()
    def expire_codes_(self, flat: torch.Tensor) -> None:
        """Replace codes whose EMA cluster size is under the threshold by random vectors of the batch (N, D).

        The official code writes only ``embed``, which its EMA step overwrites right after (so replacement has
        no effect there); we also reset the EMA statistics of a replaced code so the replacement sticks.
        """
        if self.threshold_ema_dead_code <= 0:
            return
        expired = self.cluster_size < self.threshold_ema_dead_code
        if not bool(expired.any()):
            return
        fresh = sample_vectors(flat, self.codebook_size)
        self.embed.copy_(torch.where(expired[:, None], fresh, self.embed))
        self.cluster_size.masked_fill_(expired, self.threshold_ema_dead_code)
        self.embed_avg.copy_(torch.where(expired[:, None], fresh * self.threshold_ema_dead_code, self.embed_avg))

    @torch.no_grad()
    def ema_update_(self, flat: torch.Tensor, codes: torch.Tensor) -> None:
        """EMA of the code counts and sums over a batch (N, D) with its codes (N,); embed = sum / count."""
        counts = torch.bincount(codes, minlength=self.codebook_size).to(flat.dtype)
        sums = torch.zeros_like(self.embed_avg).index_add_(0, codes, flat)
        self.cluster_size.lerp_(counts, 1.0 - self.decay)
        self.embed_avg.lerp_(sums, 1.0 - self.decay)
        total = self.cluster_size.sum()
        smoothed = (self.cluster_size + self.epsilon) / (total + self.codebook_size * self.epsilon) * total
        self.embed.copy_(self.embed_avg / smoothed[:, None])


@dataclass
class QuantizerOutput:
    """``quantized`` (B, D, T) straight-through code vectors, ``codes`` (B, T) int64, ``commit_loss`` scalar."""

    quantized: torch.Tensor
    codes: torch.Tensor
    commit_loss: torch.Tensor


class EMAVectorQuantizer(nn.Module):
    """Vector quantizer over channels of (B, D, T) latents, holding a :class:`EuclideanCodebook` as ``_codebook``.

    Args:
        dim, codebook_size, kmeans_iters, decay, epsilon, threshold_ema_dead_code: see EuclideanCodebook.
        commitment_weight: weight of MSE(sg(q), x) in ``commit_loss`` (1.0).
    """

    def __init__(self, dim: int, codebook_size: int, kmeans_iters: int = 200, decay: float = 0.99,
                 epsilon: float = 1e-5, threshold_ema_dead_code: float = 2.0, commitment_weight: float = 1.0) -> None:
        super().__init__()
        self._codebook = EuclideanCodebook(dim, codebook_size, kmeans_iters, decay, epsilon, threshold_ema_dead_code)
        self.commitment_weight = commitment_weight

    @property
    def codebook(self) -> EuclideanCodebook:
        return self._codebook

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Latents (B, D, T) -> codes (B, T)."""
        return self._codebook.encode(x.transpose(1, 2))

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes (B, T) -> code vectors (B, D, T)."""
        return self._codebook.decode(codes).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> QuantizerOutput:
        """Latents (B, D, T) -> quantized latents, codes and commitment loss (codebook updated in training)."""
        latents = x.transpose(1, 2)  # (B, T, D)
        quantized, codes = self._codebook(latents)
        commit_loss = self.commitment_weight * F.mse_loss(quantized.detach(), latents)
        quantized = latents + (quantized - latents).detach()  # straight-through estimator
        return QuantizerOutput(quantized.transpose(1, 2), codes, commit_loss)
