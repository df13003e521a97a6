"""Transformer blocks with adaptive LayerNorm (adaLN) conditioning, RoPE attention and SwiGLU MLPs.

The blocks follow the modern "LLaMA-style" recipe used by xAR (arXiv 2502.20388, Sec. 4): RMSNorm
(arXiv 1910.07467), SwiGLU feed-forward (arXiv 2002.05202), rotary attention, and DiT-style adaLN
modulation (arXiv 2212.09748, Sec. 3.2) where a condition vector produces per-block shift / scale / gate.
Conditions may differ between groups of tokens (one time step per xAR entity), so modulation is gathered
per token through an ``index`` ``(n,)`` that maps each token to its condition row.

Attention kernels are strategies: ``"sdpa"`` (torch fused, default) and ``"math"`` (an explicit fp32
softmax reference used to check and benchmark the fused path).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from tokenizers_media.nn.rope import RoPE2D


def sdpa_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Fused attention. ``q`` ``(B, H, n, d)``, ``k``/``v`` ``(B, H, m, d)``, additive ``mask`` ``(.., n, m)``."""
    return F.scaled_dot_product_attention(q, k, v, attn_mask=None if mask is None else mask.to(q.dtype))


def math_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Reference attention computed explicitly in fp32 (same contract as ``sdpa_attention``)."""
    scores = q.float() @ k.float().transpose(-1, -2) / math.sqrt(q.shape[-1])  # (B, H, n, m)
    if mask is not None:
        scores = scores + mask.float()
    return (scores.softmax(dim=-1) @ v.float()).to(q.dtype)


ATTENTION_BACKENDS: dict[str, Callable[..., torch.Tensor]] = {"sdpa": sdpa_attention, "math": math_attention}


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding ``(...,) -> (..., dim)``: cosines then sines (DiT's ``TimestepEmbedder``)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[..., None] * freqs
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class TimestepEmbedder(nn.Module):
    """Scalar time -> ``(dim,)`` vector: sinusoids of ``frequency_dim`` then Linear-SiLU-Linear (``mlp``)."""

    def __init__(self, dim: int, frequency_dim: int = 256) -> None:
        super().__init__()
        self.frequency_dim = frequency_dim
        self.mlp = nn.Sequential(nn.Linear(frequency_dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        """``t`` ``(...,)`` (any scale; xAR feeds integer steps 0..999) -> ``(..., dim)``."""
        return self.mlp(timestep_embedding(t, self.frequency_dim))


GATE_ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {"silu": F.silu, "gelu": F.gelu}


class SwiGLU(nn.Module):
    """``fc2(act(fc1_g(x)) * fc1_x(x))``: gated feed-forward (arXiv 2002.05202).

    ``activation="silu"`` is SwiGLU proper; ``"gelu"`` (exact erf GELU, i.e. GEGLU) is what the official xAR
    checkpoints use inside their ``SwiGLU`` module (verified against the xAR-B golden vectors).
    """

    def __init__(self, dim: int, hidden_dim: int, activation: str = "silu") -> None:
        super().__init__()
        if activation not in GATE_ACTIVATIONS:
            raise ValueError(f"unknown gate activation {activation!r}; allowed: {sorted(GATE_ACTIVATIONS)}")
        self.activation = GATE_ACTIVATIONS[activation]
        self.fc1_g = nn.Linear(dim, hidden_dim)
        self.fc1_x = nn.Linear(dim, hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.activation(self.fc1_g(x)) * self.fc1_x(x))


@dataclass
class KVCache:
    """Keys and values ``(B, H, m, d)`` of the tokens already committed to one attention layer."""

    key: torch.Tensor | None = None
    value: torch.Tensor | None = None

    @property
    def length(self) -> int:
        return 0 if self.key is None else self.key.shape[-2]

    def extend(self, key: torch.Tensor, value: torch.Tensor, store: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Cached + new keys/values; ``store`` keeps the new ones for later calls."""
        if self.key is not None:
            key, value = torch.cat([self.key, key], dim=-2), torch.cat([self.value, value], dim=-2)
        if store:
            self.key, self.value = key, value
        return key, value


class RoPEAttention(nn.Module):
    """Multi-head self-attention with a fused ``qkv`` projection and 2-D RoPE on queries and keys.

    Args:
        dim: model width.
        num_heads: heads; ``dim // num_heads`` must be divisible by 4 (two RoPE axes of channel pairs).
        positions: ``(N, 2)`` token positions of the full sequence (for the ``rope`` tables).
        rope_theta: RoPE base.
        backend: ``"sdpa"`` or ``"math"`` (see ``ATTENTION_BACKENDS``).
    """

    def __init__(
        self, dim: int, num_heads: int, positions: torch.Tensor, rope_theta: float = 10000.0, backend: str = "sdpa"
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"width {dim} is not divisible by num_heads {num_heads}")
        if backend not in ATTENTION_BACKENDS:
            raise ValueError(f"unknown attention backend {backend!r}; allowed: {sorted(ATTENTION_BACKENDS)}")
        self.num_heads = num_heads
        self.backend = backend
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.rope = RoPE2D(dim // num_heads, positions, rope_theta)

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None = None,
        start: int = 0,
        cache: KVCache | None = None,
        store: bool = False,
    ) -> torch.Tensor:
        """``x`` ``(B, n, D)`` = tokens ``start .. start + n``; attends to ``cache`` (if any) and itself."""
        q, k, v = self.qkv(x).unflatten(-1, (3, self.num_heads, -1)).permute(2, 0, 3, 1, 4)  # 3 x (B, H, n, d)
        q, k = self.rope(q, start), self.rope(k, start)
        if cache is not None:
            k, v = cache.extend(k, v, store)
        out = ATTENTION_BACKENDS[self.backend](q, k, v, mask)  # (B, H, n, d)
        return self.proj(out.transpose(1, 2).flatten(2))


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale) + shift


class AdaLNBlock(nn.Module):
    """Pre-norm transformer block gated by adaLN (norms carry no weights; ``ada_lin`` supplies them).

    ``ada_lin`` = SiLU + Linear(dim, 6 * dim) giving, in order: gate_attn, gate_mlp, scale_attn, scale_mlp,
    shift_attn, shift_mlp.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_hidden_dim: int,
        positions: torch.Tensor,
        rope_theta: float = 10000.0,
        norm_eps: float = 1e-6,
        mlp_activation: str = "silu",
        backend: str = "sdpa",
    ) -> None:
        super().__init__()
        self.norm1 = nn.RMSNorm(dim, eps=norm_eps, elementwise_affine=False)
        self.attn = RoPEAttention(dim, num_heads, positions, rope_theta, backend)
        self.norm2 = nn.RMSNorm(dim, eps=norm_eps, elementwise_affine=False)
        self.mlp = SwiGLU(dim, mlp_hidden_dim, mlp_activation)
        self.ada_lin = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))

    def forward(
        self,
        x: torch.Tensor,
        condition: torch.Tensor,
        index: torch.Tensor,
        mask: torch.Tensor | None = None,
        start: int = 0,
        cache: KVCache | None = None,
        store: bool = False,
    ) -> torch.Tensor:
        """``x`` ``(B, n, D)``; ``condition`` ``(B, E, D)``; ``index`` ``(n,)`` token -> condition row."""
        modulation = self.ada_lin(condition)[:, index]  # (B, n, 6D)
        gate1, gate2, scale1, scale2, shift1, shift2 = modulation.chunk(6, dim=-1)
        h = modulate(self.norm1(x), shift1, scale1)
        x = x + gate1 * self.attn(h, mask, start, cache, store)
        return x + gate2 * self.mlp(modulate(self.norm2(x), shift2, scale2))
