"""Vector quantizer with L2-normalised codes, and robust latent perturbation on top of it.

The quantizer follows KARL / LlamaGen / RobustTok (shared/specs/image_tokenizers.md, section 1): latents and
codes are both projected onto the unit sphere, the nearest code (by cosine, i.e. L2 on normalised vectors) is
chosen, and gradients pass straight through. Loss = ||sg(z) - q||^2 + commitment * ||z - sg(q)||^2.

Robust latent perturbation ("Robust Latent Matters: Boosting Image Generation with Sampling Error"; spec
section 1, RobustTok) simulates a generator's sampling errors: for the first floor(beta * B) samples of a batch,
each token is replaced with probability alpha by one of its delta nearest codes, drawn uniformly from [0, delta)
where index 0 is the token's own code. It is applied *after* the VQ/commit losses, so only reconstruction losses
see perturbed codes.

Optionally (``dead_code_steps``; our addition, not in the KARL / RobustTok papers), a code that no latent picked
during that many training calls is moved onto a random latent of the current batch, as EnCodec-style codebooks
do: a short run otherwise settles on a few dozen of its 4096 codes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class VQOutput:
    """Result of quantizing latents ``(B, N, D)``.

    ``quantized`` (B, N, D) straight-through normalised codes; ``codes`` (B, N) int64; ``codebook_loss`` and
    ``commit_loss`` scalars (``commit_loss`` already multiplied by the commitment weight); ``loss`` their sum.
    """

    quantized: torch.Tensor
    codes: torch.Tensor
    codebook_loss: torch.Tensor
    commit_loss: torch.Tensor

    @property
    def loss(self) -> torch.Tensor:
        return self.codebook_loss + self.commit_loss


def sample_vectors(samples: torch.Tensor, num: int) -> torch.Tensor:
    """``num`` rows of ``samples`` (N, D): without replacement when N >= num, else with replacement."""
    count = samples.shape[0]
    if count >= num:
        index = torch.randperm(count, device=samples.device)[:num]
    else:
        index = torch.randint(0, count, (num,), device=samples.device)
    return samples[index]


def nearest_neighbours(queries: torch.Tensor, codebook: torch.Tensor, k: int = 1) -> torch.Tensor:
    """Indices ``(..., k)`` of the ``k`` codebook rows nearest (Euclidean) to each query, nearest first.

    ``queries`` (..., D), ``codebook`` (K, D). Uses ||q||^2 - 2 q.c + ||c||^2 so no (..., K, D) tensor is built.
    """
    if not 1 <= k <= codebook.shape[0]:
        raise ValueError(f"k must be in [1, {codebook.shape[0]}] (codebook size), got {k}")
    flat = queries.reshape(-1, queries.shape[-1]).float()
    book = codebook.float()
    distances = flat.pow(2).sum(-1, keepdim=True) - 2 * flat @ book.t() + book.pow(2).sum(-1)  # (M, K)
    if k == 1:
        indices = distances.argmin(-1, keepdim=True)
    else:
        indices = distances.topk(k, dim=-1, largest=False).indices
    return indices.reshape(*queries.shape[:-1], k)


class L2NormVectorQuantizer(nn.Module):
    """A learned codebook of ``num_codes`` unit vectors of size ``dim``.

    Args:
        num_codes: codebook size (KARL / RobustTok: 4096).
        dim: code dimension (KARL: 12).
        commitment: weight of the commitment term (0.25 in both papers).
        dead_code_steps: restart a code unused for this many training calls (0 = never).
    """

    def __init__(self, num_codes: int, dim: int, commitment: float = 0.25, dead_code_steps: int = 0) -> None:
        super().__init__()
        if num_codes < 1 or dim < 1 or dead_code_steps < 0:
            raise ValueError(f"num_codes and dim must be positive and dead_code_steps >= 0, got {num_codes}, {dim}, "
                             f"{dead_code_steps}")
        self.num_codes, self.dim, self.commitment = num_codes, dim, commitment
        self.dead_code_steps = dead_code_steps
        self.embedding = nn.Embedding(num_codes, dim)
        nn.init.uniform_(self.embedding.weight, -1.0 / num_codes, 1.0 / num_codes)
        # Training-only bookkeeping, kept out of checkpoints (a resumed run starts counting again).
        self.register_buffer("idle_calls", torch.zeros(num_codes, dtype=torch.long), persistent=False)

    def normalized_codebook(self) -> torch.Tensor:
        """(K, D) unit-norm codes, in fp32 (quantization is done in fp32 whatever the model dtype)."""
        return F.normalize(self.embedding.weight.float(), dim=-1)

    def encode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents (B, N, D) -> codes (B, N) int64."""
        return nearest_neighbours(F.normalize(latents.float(), dim=-1), self.normalized_codebook())[..., 0]

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes (B, N) -> unit-norm code vectors (B, N, D)."""
        if codes.numel() and (codes.min() < 0 or codes.max() >= self.num_codes):
            raise ValueError(f"codes must lie in [0, {self.num_codes}), got range "
                             f"[{int(codes.min())}, {int(codes.max())}]")
        return F.embedding(codes, self.normalized_codebook())

    def forward(self, latents: torch.Tensor) -> VQOutput:
        """Quantize latents (B, N, D); the output is straight-through w.r.t. ``latents``."""
        z = F.normalize(latents.float(), dim=-1)
        codes = nearest_neighbours(z.detach(), self.normalized_codebook())[..., 0]
        q = self.decode(codes)
        codebook_loss = F.mse_loss(q, z.detach())
        commit_loss = self.commitment * F.mse_loss(z, q.detach())
        quantized = z + (q - z).detach()
        if self.training and self.dead_code_steps:
            self.restart_dead_codes_(z.detach().reshape(-1, self.dim), codes)
        return VQOutput(quantized.to(latents.dtype), codes, codebook_loss, commit_loss)

    @torch.no_grad()
    def restart_dead_codes_(self, latents: torch.Tensor, codes: torch.Tensor) -> None:
        """Count a training call; codes idle for ``dead_code_steps`` calls move onto random rows of the batch's
        unit latents (M, D), rescaled to the codebook's mean norm so every code learns at one rate."""
        used = torch.zeros(self.num_codes, dtype=torch.bool, device=codes.device)
        used[codes.reshape(-1)] = True
        self.idle_calls.add_(1).masked_fill_(used, 0)
        dead = self.idle_calls >= self.dead_code_steps
        count = int(dead.sum())
        if count:
            # Written through ``.data``: graphs of this step that are not yet backpropagated hold the codebook, but
            # a dead code was picked by none of them (idle for every call), so its rows carry no gradient there.
            book = self.embedding.weight.data
            book[dead] = sample_vectors(latents, count).to(book) * book.norm(dim=-1).mean()
            self.idle_calls[dead] = 0

    def perturb(self, codes: torch.Tensor, alpha: float, beta: float, delta: int,
                generator: torch.Generator | None = None, latents: torch.Tensor | None = None) -> torch.Tensor:
        """Robust latent perturbation of codes (B, N) -> perturbed codes (B, N).

        Args:
            codes: (B, N) codes chosen by this quantizer.
            alpha: probability that a token is replaced, in [0, 1].
            beta: fraction of the batch perturbed: the first floor(beta * B) samples, in [0, 1].
            delta: size of the neighbourhood; the replacement index is uniform in [0, delta), index 0 = own code.
            generator: torch RNG for reproducible draws (pscore passes a seeded one).
            latents: optional (B, N, D) pre-quantization latents. Given (training), the neighbours are ranked by
                distance to the latent, as RobustTok does; otherwise by distance to the code itself. Either way
                neighbour 0 is the token's own code.
        """
        if not 0.0 <= alpha <= 1.0 or not 0.0 <= beta <= 1.0:
            raise ValueError(f"alpha and beta must be in [0, 1], got alpha={alpha}, beta={beta}")
        if not 1 <= delta <= self.num_codes:
            raise ValueError(f"delta must be in [1, {self.num_codes}], got {delta}")
        n_perturbed = math.floor(beta * codes.shape[0])
        if n_perturbed == 0 or alpha == 0.0 or delta == 1:
            return codes.clone()
        head = codes[:n_perturbed]
        book = self.normalized_codebook()
        if latents is None:
            neighbours = nearest_neighbours(book[head], book, delta)  # (b, N, delta)
        else:
            neighbours = nearest_neighbours(F.normalize(latents[:n_perturbed].float(), dim=-1), book, delta)
        # Neighbour 0 must be the token's own code; float ties can swap equidistant codes, so pin it.
        neighbours[..., 0] = head
        device = codes.device
        replace = torch.rand(head.shape, generator=generator, device=device) < alpha
        pick = torch.randint(0, delta, (*head.shape, 1), generator=generator, device=device)
        chosen = neighbours.gather(-1, pick)[..., 0]
        perturbed = codes.clone()
        perturbed[:n_perturbed] = torch.where(replace, chosen, head)
        return perturbed


@dataclass(frozen=True)
class PerturbationSchedule:
    """RobustTok's strength schedule r, in optimiser steps instead of epochs.

    r = 1 until ``hold_steps``, then linear down to ``final_ratio`` at ``ramp_end_steps``, then held. The
    effective perturbation at a step is (alpha * r, beta, floor(delta * r)). The paper's 40 / 120 of 200 epochs
    map to ``for_total_steps`` = 20% / 60% of the run.
    """

    alpha: float = 1.0
    beta: float = 0.1
    delta: int = 100
    hold_steps: int = 0
    ramp_end_steps: int = 0
    final_ratio: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 <= self.alpha <= 1.0 or not 0.0 <= self.beta <= 1.0 or self.delta < 1:
            raise ValueError(f"need alpha, beta in [0, 1] and delta >= 1, got {self}")
        if not 0 <= self.hold_steps <= self.ramp_end_steps:
            raise ValueError(f"need 0 <= hold_steps <= ramp_end_steps, got {self.hold_steps}, "
                             f"{self.ramp_end_steps}")

    @classmethod
    def for_total_steps(cls, total_steps: int, alpha: float = 1.0, beta: float = 0.1,
                        delta: int = 100) -> PerturbationSchedule:
        return cls(alpha, beta, delta, hold_steps=round(0.2 * total_steps), ramp_end_steps=round(0.6 * total_steps))

    def ratio(self, step: int) -> float:
        if step <= self.hold_steps:
            return 1.0
        if step >= self.ramp_end_steps:
            return self.final_ratio
        progress = (step - self.hold_steps) / (self.ramp_end_steps - self.hold_steps)
        return 1.0 - progress * (1.0 - self.final_ratio)

    def at(self, step: int) -> tuple[float, float, int]:
        """(alpha, beta, delta) in effect at ``step``; delta never drops below 1 (the identity)."""
        r = self.ratio(step)
        return self.alpha * r, self.beta, max(1, math.floor(self.delta * r))
