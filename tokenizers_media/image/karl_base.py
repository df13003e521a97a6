"""The frozen base tokenizers of official KARL (arXiv 2507.07995): a MaskGIT VQGAN and an LDM KL-16 VAE.

KARL tokenizes the base tokenizer's 16x16 latent grid and decodes its own output back through the base decoder.
Module names follow the official state dicts (``karl_small_*_state_dict.json``), so a released checkpoint loads
strictly. The two convolutional stacks share one ``ResnetBlock`` that differs only where the two codebases
differ (``taming`` flag):

- MaskGIT VQGAN (``taming=True``): convolutions without biases, 2x2 average pooling to down-sample, no attention,
  and a 1x1 shortcut (out -> out) applied to the *residual branch* when the channel count changes; no
  ``quant_conv`` / ``post_quant_conv``.
- LDM AutoencoderKL (``taming=False``): biases everywhere, strided-conv down-sampling, attention at the lowest
  resolution and in the middle, the usual shortcut on the input.

Images are (B, 3, H, W) in [0, 1] as the official code feeds them; grids are (B, C, H/16, W/16).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(32, channels, eps=1e-6, affine=True)


class ResnetBlock(nn.Module):
    """h = conv2(swish(norm2(conv1(swish(norm1(x)))))); out = shortcut + h.

    Args:
        in_channels, out_channels: channel counts.
        taming: MaskGIT form (no conv biases; the shortcut maps ``h`` out -> out) instead of LDM (biases; the
            shortcut maps ``x`` in -> out).
    """

    def __init__(self, in_channels: int, out_channels: int, taming: bool) -> None:
        super().__init__()
        bias = not taming
        self.taming = taming
        self.norm1 = _norm(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=bias)
        self.norm2 = _norm(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=bias)
        if in_channels != out_channels:
            self.nin_shortcut = nn.Conv2d(out_channels if taming else in_channels, out_channels, 1, bias=bias)
        else:
            self.nin_shortcut = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv2(F.silu(self.norm2(self.conv1(F.silu(self.norm1(x))))))
        if self.nin_shortcut is not None:
            # MaskGIT applies the shortcut to the residual branch, not to the input (a fact of its code).
            x = self.nin_shortcut(h if self.taming else x)
        return x + h


class AttnBlock(nn.Module):
    """LDM single-head spatial self-attention: x + proj_out(softmax(q^T k / sqrt(C)) v)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = _norm(channels)
        self.q, self.k, self.v, self.proj_out = (nn.Conv2d(channels, channels, 1) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        y = self.norm(x)
        q, k, v = (conv(y).flatten(2).transpose(1, 2) for conv in (self.q, self.k, self.v))  # (B, HW, C)
        out = F.scaled_dot_product_attention(q, k, v)  # scale 1/sqrt(C), one head
        return x + self.proj_out(out.transpose(1, 2).reshape(b, c, h, w))


class _Resample(nn.Module):
    """A 3x3 conv after nearest x2 up-sampling (``up``) or after (0, 1, 0, 1) padding with stride 2 (down)."""

    def __init__(self, channels: int, up: bool) -> None:
        super().__init__()
        self.up = up
        self.conv = nn.Conv2d(channels, channels, 3, stride=1 if up else 2, padding=1 if up else 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.up:
            return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class _Level(nn.Module):
    """One resolution: ``block`` ResnetBlocks (each followed by an ``attn`` block where asked) and a resampler."""

    def __init__(self, channels: list[int], taming: bool, attention: bool, resample: _Resample | None) -> None:
        super().__init__()
        self.block = nn.ModuleList(ResnetBlock(i, o, taming) for i, o in zip(channels, channels[1:], strict=False))
        self.attn = nn.ModuleList(AttnBlock(o) for o in channels[1:]) if attention else nn.ModuleList()
        self.resample_name = None if resample is None else ("upsample" if resample.up else "downsample")
        if resample is not None:
            self.add_module(self.resample_name, resample)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, block in enumerate(self.block):
            x = block(x)
            if len(self.attn):
                x = self.attn[i](x)
        return x

    def resample(self, x: torch.Tensor) -> torch.Tensor:
        """The level's up- or down-sampler (identity on a level without one)."""
        return x if self.resample_name is None else getattr(self, self.resample_name)(x)


class _Mid(nn.Module):
    def __init__(self, channels: int, taming: bool) -> None:
        super().__init__()
        self.block_1 = ResnetBlock(channels, channels, taming)
        self.attn_1 = None if taming else AttnBlock(channels)
        self.block_2 = ResnetBlock(channels, channels, taming)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block_1(x)
        return self.block_2(x if self.attn_1 is None else self.attn_1(x))


class ConvEncoder(nn.Module):
    """Image (B, 3, H, W) -> grid (B, out_channels, H / 2^(L-1), W / 2^(L-1)); L = len(ch_mult).

    Args:
        ch, ch_mult: base width and per-level multipliers ((1, 1, 2, 2, 4) in KARL).
        num_res_blocks: ResnetBlocks per level.
        out_channels: channels of ``conv_out``.
        taming: MaskGIT form (average pooling, no attention, 1x1 ``conv_out``) instead of LDM.
    """

    def __init__(self, ch: int, ch_mult: tuple[int, ...], num_res_blocks: int, out_channels: int,
                 taming: bool) -> None:
        super().__init__()
        self.taming = taming
        widths = [ch * m for m in ch_mult]
        self.conv_in = nn.Conv2d(3, ch, 3, padding=1, bias=not taming)
        levels, channels = [], ch
        for i, width in enumerate(widths):
            last = i == len(widths) - 1
            resample = None if last or taming else _Resample(width, up=False)
            levels.append(_Level([channels] + [width] * num_res_blocks, taming, not taming and last, resample))
            channels = width
        self.down = nn.ModuleList(levels)
        self.mid = _Mid(channels, taming)
        self.norm_out = _norm(channels)
        self.conv_out = nn.Conv2d(channels, out_channels, 1 if taming else 3, padding=0 if taming else 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_in(x)
        for i, level in enumerate(self.down):
            x = level(x)
            if i < len(self.down) - 1:
                x = F.avg_pool2d(x, 2) if self.taming else level.resample(x)
        return self.conv_out(F.silu(self.norm_out(self.mid(x))))


class ConvDecoder(nn.Module):
    """Grid (B, in_channels, h, w) -> image (B, 3, h * 2^(L-1), w * 2^(L-1)), not clipped.

    Levels run from the lowest resolution (index L-1) up to 0; each but level 0 ends in nearest x2 + conv.
    """

    def __init__(self, ch: int, ch_mult: tuple[int, ...], num_res_blocks: int, in_channels: int,
                 taming: bool) -> None:
        super().__init__()
        widths = [ch * m for m in ch_mult]
        channels = widths[-1]
        self.conv_in = nn.Conv2d(in_channels, channels, 3, padding=1)
        self.mid = _Mid(channels, taming)
        levels: list[_Level] = [None] * len(widths)  # type: ignore[list-item]
        for i in reversed(range(len(widths))):
            resample = _Resample(widths[i], up=True) if i > 0 else None
            levels[i] = _Level([channels] + [widths[i]] * num_res_blocks, taming, False, resample)
            channels = widths[i]
        self.up = nn.ModuleList(levels)
        self.norm_out = _norm(channels)
        self.conv_out = nn.Conv2d(channels, 3, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.mid(self.conv_in(z))
        for level in reversed(self.up):
            x = level(x)
            x = level.resample(x)
        return self.conv_out(F.silu(self.norm_out(x)))


class _Codebook(nn.Module):
    def __init__(self, size: int, dim: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(size, dim)


class MaskGITVQGAN(nn.Module):
    """The VQGAN base: ``encode`` gives the latent *before* its quantizer (what KARL reads); ``codebook`` is the
    (K, C) table KARL's decoder mixes with its softmax; ``decode`` maps a (soft) code grid to pixels."""

    def __init__(self, ch: int = 128, ch_mult: tuple[int, ...] = (1, 1, 2, 2, 4), num_res_blocks: int = 2,
                 embed_dim: int = 256, codebook_size: int = 1024) -> None:
        super().__init__()
        self.encoder = ConvEncoder(ch, ch_mult, num_res_blocks, embed_dim, taming=True)
        self.decoder = ConvDecoder(ch, ch_mult, num_res_blocks, embed_dim, taming=True)
        self.quantize = _Codebook(codebook_size, embed_dim)

    @property
    def codebook(self) -> torch.Tensor:
        return self.quantize.embedding.weight

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return self.encoder(images)

    def decode(self, grid: torch.Tensor) -> torch.Tensor:
        return self.decoder(grid)


class KLVAE(nn.Module):
    """The KL-16 VAE base. ``encode`` returns the posterior mean times ``scale``.

    The official code samples the posterior (mean + std * noise) even at inference; the mean is used here so
    that tokens are deterministic. It also decodes KARL's output without dividing by ``scale``; that is kept.
    """

    def __init__(self, ch: int = 128, ch_mult: tuple[int, ...] = (1, 1, 2, 2, 4), encoder_blocks: int = 2,
                 decoder_blocks: int = 3, embed_dim: int = 16, scale: float = 0.2325) -> None:
        super().__init__()
        self.scale = scale
        self.encoder = ConvEncoder(ch, ch_mult, encoder_blocks, 2 * embed_dim, taming=False)
        self.decoder = ConvDecoder(ch, ch_mult, decoder_blocks, embed_dim, taming=False)
        self.quant_conv = nn.Conv2d(2 * embed_dim, 2 * embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(embed_dim, embed_dim, 1)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        mean, _logvar = self.quant_conv(self.encoder(images)).chunk(2, dim=1)
        return mean * self.scale

    def decode(self, grid: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.post_quant_conv(grid))
