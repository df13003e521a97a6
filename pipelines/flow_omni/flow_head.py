"""The per-position flow-matching head: a small MLP vector field that turns noise into one frame group.

Flow-Omni conditions "a small MLP" on the output of a transformer over the LLM hidden states and trains it with
conditional flow matching (spec flow_omni.md §1). Details follow FELLE / MAR-style heads (§2, §3): residual MLP
blocks whose LayerNorms are modulated (adaLN) by the condition plus a sinusoidal time embedding, an OT path with
sigma_min, several time draws per frame (cheap: only the head runs), Euler integration from noise (t = 0) to data
(t = 1).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tokenizers_media.nn.transformer import TimestepEmbedder, modulate

TIME_SCALE = 1000.0
"""t in [0, 1] is embedded as t * 1000 so the sinusoids span the usual diffusion-step frequencies."""


class ResidualBlock(nn.Module):
    """x + gate * MLP(adaLN(x)), with the gate/shift/scale from the condition (zero-initialised: identity)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width))
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(width, 3 * width))
        nn.init.zeros_(self.ada[1].weight)
        nn.init.zeros_(self.ada[1].bias)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale, gate = self.ada(c).chunk(3, dim=-1)
        return x + gate * self.mlp(modulate(self.norm(x), shift, scale))


class FlowHead(nn.Module):
    """Velocity field ``v(x_t, t | cond)`` over one frame group of ``dim`` values.

    Args:
        dim: values per frame group (frames per step x mel bins).
        cond_dim: width of the conditioning vector (the output module's hidden size).
        width: MLP width.
        blocks: residual blocks.
        sigma_min: the OT path's final noise level.
    """

    def __init__(self, dim: int, cond_dim: int, width: int, blocks: int, sigma_min: float = 1e-4) -> None:
        super().__init__()
        self.dim, self.sigma_min = dim, sigma_min
        self.input = nn.Linear(dim, width)
        self.time = TimestepEmbedder(width)
        self.cond = nn.Linear(cond_dim, width)
        self.blocks = nn.ModuleList([ResidualBlock(width) for _ in range(blocks)])
        self.final_norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.final_ada = nn.Sequential(nn.SiLU(), nn.Linear(width, 2 * width))
        self.output = nn.Linear(width, dim)
        for layer in (self.final_ada[1], self.output):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """``x_t`` (N, dim), ``t`` (N,), ``cond`` (N, cond_dim) -> velocity (N, dim)."""
        c = self.cond(cond) + self.time(t * TIME_SCALE)
        h = self.input(x_t)
        for block in self.blocks:
            h = block(h, c)
        shift, scale = self.final_ada(c).chunk(2, dim=-1)
        return self.output(modulate(self.final_norm(h), shift, scale))

    def loss(self, x1: torch.Tensor, cond: torch.Tensor, draws: int = 4) -> torch.Tensor:
        """OT-CFM loss of data ``x1`` (N, dim) under ``cond`` (N, cond_dim), ``draws`` times per row."""
        x1, cond = x1.repeat(draws, 1), cond.repeat(draws, 1)
        x0 = torch.randn_like(x1)
        t = torch.rand(x1.shape[0], device=x1.device)
        x_t = (1 - (1 - self.sigma_min) * t[:, None]) * x0 + t[:, None] * x1
        target = x1 - (1 - self.sigma_min) * x0
        return F.mse_loss(self(x_t, t, cond), target)

    @torch.no_grad()
    def sample(self, cond: torch.Tensor, steps: int = 10, temperature: float = 1.0,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """Euler integration of the ODE from ``temperature``-scaled noise (t = 0) to a frame group (t = 1)."""
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        x = torch.randn(cond.shape[0], self.dim, generator=generator, device=cond.device, dtype=cond.dtype)
        x = x * temperature
        dt = 1.0 / steps
        for i in range(steps):
            t = torch.full((cond.shape[0],), i * dt, device=cond.device, dtype=cond.dtype)
            x = x + dt * self(x, t, cond)
        return x
