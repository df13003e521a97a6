"""Vocos backbone and ISTFT head (Siuzdak 2023, arXiv 2306.00814), with WavTokenizer's attention ``pos_net``.

WavTokenizer (shared/specs/audio.md, section 1, "Backbone" / "Head"): features (B, C_in, F) -> ``embed`` conv ->
``pos_net`` [ResnetBlock x2, AttnBlock, ResnetBlock x2, GroupNorm] -> AdaLayerNorm -> ConvNeXt blocks (AdaLN,
layer scale) -> LayerNorm; then a Linear predicts log-magnitude and phase of each STFT frame and an inverse STFT
with "same" padding turns F frames into exactly F * hop samples. The blocks are independent of the tokenizer
(a mel vocoder reuses them): ``pos_net`` and the AdaLN conditioning can be switched off.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


def _group_norm(channels: int) -> nn.GroupNorm:
    if channels % 32:
        raise ValueError(f"pos_net GroupNorm uses 32 groups; dim must be a multiple of 32, got {channels}")
    return nn.GroupNorm(32, channels, eps=1e-6)


class ResnetBlock(nn.Module):
    """x + conv(drop(swish(GN(conv(swish(GN(x))))))), convs k3 at constant width (no time embedding)."""

    def __init__(self, channels: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.norm1 = _group_norm(channels)
        self.conv1 = nn.Conv1d(channels, channels, 3, padding=1)
        self.norm2 = _group_norm(channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv1d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T) -> (B, C, T)."""
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return x + h


class AttnBlock(nn.Module):
    """Single-head self-attention over time with 1x1 conv projections and a residual connection."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = _group_norm(channels)
        self.q, self.k, self.v = (nn.Conv1d(channels, channels, 1) for _ in range(3))
        self.proj_out = nn.Conv1d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T) -> (B, C, T); attention scale C^-1/2."""
        h = self.norm(x)
        q, k, v = (proj(h).transpose(1, 2) for proj in (self.q, self.k, self.v))  # (B, T, C) each
        h = F.scaled_dot_product_attention(q, k, v).transpose(1, 2)
        return x + self.proj_out(h)


class AdaLayerNorm(nn.Module):
    """LayerNorm whose scale and shift are looked up from a condition id (WavTokenizer: the bandwidth id)."""

    def __init__(self, num_embeddings: int, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.dim, self.eps = dim, eps
        self.scale = nn.Embedding(num_embeddings, dim)
        self.shift = nn.Embedding(num_embeddings, dim)
        nn.init.ones_(self.scale.weight)
        nn.init.zeros_(self.shift.weight)

    def forward(self, x: torch.Tensor, cond_id: torch.Tensor) -> torch.Tensor:
        """x (B, T, C), cond_id (1,) or (B,) int64 -> (B, T, C)."""
        scale = self.scale(cond_id).reshape(-1, 1, self.dim)
        shift = self.shift(cond_id).reshape(-1, 1, self.dim)
        return F.layer_norm(x, (self.dim,), eps=self.eps) * scale + shift


class ConvNeXtBlock(nn.Module):
    """x + gamma * MLP(norm(depthwise conv k7 (x))), the MLP being Linear -> GELU -> Linear.

    Args:
        dim: channels.
        intermediate_dim: MLP hidden size.
        layer_scale_init: initial value of ``gamma`` (1 / number of blocks in Vocos).
        adanorm_num_embeddings: number of AdaLN condition ids; None = plain LayerNorm.
    """

    def __init__(self, dim: int, intermediate_dim: int, layer_scale_init: float,
                 adanorm_num_embeddings: int | None = None) -> None:
        super().__init__()
        self.dwconv = nn.Conv1d(dim, dim, 7, padding=3, groups=dim)
        self.norm = (AdaLayerNorm(adanorm_num_embeddings, dim) if adanorm_num_embeddings
                     else nn.LayerNorm(dim, eps=1e-6))
        self.pwconv1 = nn.Linear(dim, intermediate_dim)
        self.pwconv2 = nn.Linear(intermediate_dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), layer_scale_init))

    def forward(self, x: torch.Tensor, cond_id: torch.Tensor | None = None) -> torch.Tensor:
        """(B, C, T) -> (B, C, T)."""
        h = self.dwconv(x).transpose(1, 2)  # (B, T, C)
        h = self.norm(h, cond_id) if isinstance(self.norm, AdaLayerNorm) else self.norm(h)
        h = self.pwconv2(F.gelu(self.pwconv1(h)))
        return x + (self.gamma * h).transpose(1, 2)


class VocosBackbone(nn.Module):
    """Features (B, C_in, T) -> hidden states (B, T, dim).

    Args:
        input_channels: feature size (WavTokenizer: 512).
        dim: model width (768).
        intermediate_dim: ConvNeXt MLP width (2304).
        num_layers: ConvNeXt blocks (12).
        adanorm_num_embeddings: AdaLN condition ids (4); None = plain LayerNorms.
        pos_net: WavTokenizer's ResnetBlock/attention stack before the ConvNeXt blocks (True).
        dropout: dropout inside the pos_net ResnetBlocks (0.1).
    """

    def __init__(self, input_channels: int, dim: int, intermediate_dim: int, num_layers: int,
                 adanorm_num_embeddings: int | None = None, pos_net: bool = True, dropout: float = 0.1) -> None:
        super().__init__()
        self.embed = nn.Conv1d(input_channels, dim, 7, padding=3)
        self.pos_net = nn.Sequential(
            ResnetBlock(dim, dropout), ResnetBlock(dim, dropout), AttnBlock(dim),
            ResnetBlock(dim, dropout), ResnetBlock(dim, dropout), _group_norm(dim),
        ) if pos_net else None
        self.norm = AdaLayerNorm(adanorm_num_embeddings, dim) if adanorm_num_embeddings else nn.LayerNorm(dim, 1e-6)
        self.convnext = nn.ModuleList([ConvNeXtBlock(dim, intermediate_dim, 1.0 / num_layers, adanorm_num_embeddings)
                                       for _ in range(num_layers)])
        self.final_layer_norm = nn.LayerNorm(dim, eps=1e-6)
        self._init_weights([self.embed, *self.convnext])

    @staticmethod
    def _init_weights(modules: list[nn.Module]) -> None:
        """Vocos init: truncated normal (std 0.02) for convs and linears, zero biases; pos_net keeps torch's."""
        for module in modules:
            for layer in module.modules():
                if isinstance(layer, nn.Conv1d | nn.Linear):
                    nn.init.trunc_normal_(layer.weight, std=0.02)
                    nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor, cond_id: torch.Tensor | None = None) -> torch.Tensor:
        """Features (B, C_in, T), condition id (1,) or (B,) (AdaLN only) -> (B, T, dim)."""
        if isinstance(self.norm, AdaLayerNorm) and cond_id is None:
            raise ValueError("this backbone uses AdaLayerNorm: pass cond_id, a (1,) or (B,) int64 tensor")
        x = self.embed(x)
        if self.pos_net is not None:
            x = self.pos_net(x)
        h = x.transpose(1, 2)
        h = self.norm(h, cond_id) if isinstance(self.norm, AdaLayerNorm) else self.norm(h)
        x = h.transpose(1, 2)
        for block in self.convnext:
            x = block(x, cond_id)
        return self.final_layer_norm(x.transpose(1, 2))


class ISTFT(nn.Module):
    """Inverse STFT with "same" padding: spectrogram (B, n_fft/2+1, T) complex -> waveform (B, T * hop).

    irfft of each frame, Hann synthesis window, overlap-add, trim (win - hop) / 2 samples at both ends and divide
    by the overlap-added squared window (torch.istft only offers "center" padding, which changes the length).
    """

    def __init__(self, n_fft: int, hop_length: int) -> None:
        super().__init__()
        if not 0 < hop_length <= n_fft or (n_fft - hop_length) % 2:
            raise ValueError(f"need 0 < hop_length <= n_fft with n_fft - hop_length even, got {n_fft}, {hop_length}")
        self.n_fft, self.hop_length = n_fft, hop_length
        self.pad = (n_fft - hop_length) // 2
        self.register_buffer("window", torch.hann_window(n_fft))
        self._envelope: dict[tuple, torch.Tensor] = {}

    def _overlap_add(self, frames: torch.Tensor) -> torch.Tensor:
        """(B, n_fft, T) windowed frames -> (B, T * hop) after trimming the "same" padding."""
        length = (frames.shape[-1] - 1) * self.hop_length + self.n_fft
        out = F.fold(frames, output_size=(1, length), kernel_size=(1, self.n_fft), stride=(1, self.hop_length))
        return out[:, 0, 0, self.pad : length - self.pad]

    def compute_envelope(self, num_frames: int) -> torch.Tensor:
        """(T * hop,) overlap-added squared window, the normaliser of the "same"-padded overlap-add."""
        with torch.inference_mode(False), torch.no_grad():  # a normal tensor: reusable by autograd later
            envelope = self._overlap_add(self.window.square()[None, :, None].expand(1, -1, num_frames))[0]
        if not bool((envelope > 1e-11).all()):
            raise ValueError(f"window envelope vanishes for n_fft={self.n_fft}, hop={self.hop_length}")
        return envelope

    def envelope(self, num_frames: int) -> torch.Tensor:
        """:meth:`compute_envelope`, cached per (frames, window version, device, dtype)."""
        w = self.window
        key = (num_frames, w._version, w.data_ptr(), w.device, w.dtype)
        if key not in self._envelope:
            if len(self._envelope) >= 8:
                self._envelope.clear()
            self._envelope[key] = self.compute_envelope(num_frames)
        return self._envelope[key]

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        """Complex (B, n_fft/2+1, T) -> (B, T * hop)."""
        frames = torch.fft.irfft(spec, self.n_fft, dim=1, norm="backward") * self.window[None, :, None]
        return self._overlap_add(frames) / self.envelope(spec.shape[-1])


class ISTFTHead(nn.Module):
    """Hidden states (B, T, dim) -> waveform (B, T * hop) via predicted log-magnitude and phase.

    Args:
        dim: input width.
        n_fft: FFT size = window length (WavTokenizer: 1280 at 75 tokens/s, 2400 at 40).
        hop_length: samples per frame (320 / 600).
    """

    def __init__(self, dim: int, n_fft: int, hop_length: int) -> None:
        super().__init__()
        self.out = nn.Linear(dim, n_fft + 2)
        self.istft = ISTFT(n_fft, hop_length)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, dim) -> (B, T * hop)."""
        log_mag, phase = self.out(x).transpose(1, 2).chunk(2, dim=1)  # (B, n_fft/2+1, T) each
        # exp of an unbounded prediction can overflow to inf (early training, odd inputs) and poison the
        # whole overlap-added clip with inf/NaN; 100 (+40 dB over unit magnitude) is far above real speech.
        magnitude = torch.exp(log_mag).clamp(max=1e2)
        spec = torch.polar(magnitude, phase)  # magnitude * (cos + i sin)
        return self.istft(spec)


class WaveformGrid:
    """Mixin for a model whose :class:`ISTFTHead` makes its waveform (WavTokenizer, the mel vocoder): the sample
    rate and the hop (samples per frame) callers need to line frames up with samples, read from its ``config``."""

    config: Any

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    @property
    def hop_length(self) -> int:
        return self.config.hop_length
