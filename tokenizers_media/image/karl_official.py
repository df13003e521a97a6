"""KARL at the published size, computed as the official code does (arXiv 2507.07995; github.com/ShivamDuggal4/karl).

A sibling of ``tokenizers_media.image.karl.KARL`` rather than a preset of it: the official model tokenizes the
latent grid of a frozen base tokenizer (MaskGIT VQGAN or KL-16 VAE), adds interpolated 2-D positional tables,
halts latent positions one by one (not as a prefix) and decodes VQGAN code logits, while ``karl-tiny`` is a
pixel-space design with prefix halting. Sharing one class would put a branch on every line; the module names
here follow the official state dict instead, so released checkpoints load strictly.

Pipeline for a batch of B images (B, 3, 256, 256) in [0, 1] (``pixel / 255``, no normalisation) at budget T:

1. base latent z = base.encode(x), (B, C, 16, 16).
2. encoder over [error-bin token | patch_embed(x) ++ z + P_enc | latent_tokens[:T]]; P_enc is the (W, 64, 64)
   table resampled (nearest) to the grid; token index = 16 * row + col.
3. p_halt = sigmoid(halting_mlp(ln_post_halt(h))); a position is *active* iff p_halt <= ``halt_threshold``
   (0.75, hard-coded officially), each position on its own.
4. f = pre_quantizer_mlp(ln_post(h)) (12-d); with the VQ: code = nearest L2-normalised codebook entry to
   normalize(f), every position quantised.
5. decoder over [mask token + P_dec | decoder_embed(f_q) + timestep_embed[:T]] where halted latents attend only
   to themselves and are seen by nobody; the image positions give VQGAN code logits (the soft code
   softmax(logits) @ codebook goes to the VQGAN decoder) or, for the VAE, the latent decoded by the VAE.

Departures from the official code: ``encode`` batches (per-image masks; the official one runs only at batch 1
and returns no tokens), returns the codes and the active mask, and the VAE base uses its posterior mean.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from tokenizers_media.image.karl_base import KLVAE, MaskGITVQGAN
from tokenizers_media.image.karl_common import (
    PAD_CODE,
    BaseKARLConfig,
    BaseKARLEncoding,
    KARLMixin,
    check_halt_threshold,
    init_tokens,
)
from tokenizers_media.modeling import PretrainedModel, register_model

BASES = ("vqgan", "vae")


@dataclass(frozen=True)
class KARLOfficialConfig(BaseKARLConfig):
    """Official KARL hyper-parameters (``karl_small`` by default): those of :class:`BaseKARLConfig` and

    Args:
        base: base tokenizer, ``"vqgan"`` (MaskGIT VQGAN, 256-d codes from 1024) or ``"vae"`` (KL-16).
        position_grid: side of the learned positional tables, resampled to the grid (64).
        base_ch, base_ch_mult: base tokenizer widths.
        base_embed_dim: base latent channels (256 VQGAN, 16 VAE).
        base_codebook_size: VQGAN codes (1024); unused by the VAE.
        base_decoder_blocks: ResnetBlocks per decoder level (2 VQGAN, 3 VAE).
        vae_scale: VAE latent scale (0.2325).

    Here the grid (image_size / patch_size) must match the base's 16x down-sampling, ``codebook_size`` 0 means
    continuous latents, and the official code hard-codes ``halt_threshold`` at 0.75.
    """

    base: str = "vqgan"
    position_grid: int = 64
    base_ch: int = 128
    base_ch_mult: tuple[int, ...] = (1, 1, 2, 2, 4)
    base_embed_dim: int = 256
    base_codebook_size: int = 1024
    base_decoder_blocks: int = 2
    vae_scale: float = 0.2325

    def __post_init__(self) -> None:
        if self.base not in BASES:
            raise ValueError(f"base must be one of {BASES}, got {self.base!r}")
        if self.image_size % self.patch_size or self.patch_size != 2 ** (len(self.base_ch_mult) - 1):
            raise ValueError(f"image_size {self.image_size} must be a multiple of patch_size {self.patch_size}, "
                             f"which must equal the base down-sampling 2^{len(self.base_ch_mult) - 1}")
        super().__post_init__()
        check_halt_threshold(self.halt_threshold)
        if self.width <= self.base_embed_dim:
            raise ValueError(f"width {self.width} must exceed base_embed_dim {self.base_embed_dim} "
                             "(image tokens are [patch features | base latent])")

    @property
    def quantize(self) -> bool:
        return self.codebook_size > 0


@dataclass
class KARLOfficialEncoding(BaseKARLEncoding):
    """What ``KARLOfficial.encode`` returns: the shared fields (``codes`` at every position, ``PAD_CODE`` where
    halted; ``latents`` what the decoder reads) and ``mask`` (B, T) bool, True = active."""

    active_field: ClassVar[str] = "mask"
    mask: torch.Tensor


@dataclass
class KARLOfficialEncoderOutput:
    """Raw encoder output: ``halt_probs`` (B, T) and ``latents`` (B, T, D), pre-quantizer."""

    halt_probs: torch.Tensor
    latents: torch.Tensor


class Block(nn.Module):
    """Pre-LN block of the official code: x + MHA(ln_1(x)), then x + c_proj(GELU(c_fc(ln_2(x))))."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.ln_1 = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(OrderedDict(c_fc=nn.Linear(width, 4 * width), gelu=nn.GELU(),
                                             c_proj=nn.Linear(4 * width, width)))

    def forward(self, x: torch.Tensor, blocked: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, L, W); ``blocked`` (B, L, L) bool, True = query i may not see key j."""
        y = self.ln_1(x)
        # nn.MultiheadAttention reads a 3-D mask batch-major: (B * heads, L, L), each image its own.
        mask = None if blocked is None else blocked.repeat_interleave(self.heads, dim=0)
        x = x + self.attn(y, y, y, attn_mask=mask, need_weights=False)[0]
        return x + self.mlp(self.ln_2(x))


class _Encoder(nn.Module):
    def __init__(self, width: int, depth: int, heads: int) -> None:
        super().__init__()
        self.transformer = nn.ModuleList(Block(width, heads) for _ in range(depth))


class _Decoder(nn.Module):
    def __init__(self, width: int, depth: int, heads: int, out_dim: int) -> None:
        super().__init__()
        self.ln_pre = nn.LayerNorm(width)
        self.transformer = nn.ModuleList(Block(width, heads) for _ in range(depth))
        self.ln_post = nn.LayerNorm(width)
        self.ffn = nn.Sequential(nn.Linear(width, 2 * width), nn.Tanh(), nn.Linear(2 * width, out_dim))


class _Codebook(nn.Module):
    """KARL's VQ table (K, D), stored raw and L2-normalised where used."""

    def __init__(self, size: int, dim: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(size, dim)

    def normalized(self) -> torch.Tensor:
        return F.normalize(self.embedding.weight, dim=-1)

    def nearest(self, latents: torch.Tensor) -> torch.Tensor:
        """(..., D) -> (...,) index of the nearest unit code to normalize(latents); first index on a tie."""
        f = F.normalize(latents.float(), dim=-1).reshape(-1, latents.shape[-1])
        e = self.normalized()
        # The official expansion ||f||^2 + ||e||^2 - 2 f.e, kept term for term: codes sit 5e-5 apart.
        dist = f.pow(2).sum(1, keepdim=True) + e.pow(2).sum(1) - 2 * f @ e.T
        return dist.argmin(dim=1).view(latents.shape[:-1])

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return F.embedding(codes, self.normalized())


@register_model
class KARLOfficial(KARLMixin, PretrainedModel):
    """Official KARL (``karl_small`` with a VQGAN or VAE base). Images (B, 3, S, S) in [0, 1], S = image_size."""

    config_class = KARLOfficialConfig
    presets = {
        "paper-small": lambda: KARLOfficialConfig(),
        "paper-small-vae": lambda: KARLOfficialConfig(base="vae", codebook_size=0, base_embed_dim=16,
                                                      base_decoder_blocks=3),
        "tiny": lambda: KARLOfficialConfig(image_size=32, patch_size=16, width=64, encoder_depth=2,
                                           decoder_depth=2, num_heads=4, latent_pool=16, max_tokens=16,
                                           position_grid=8, codebook_size=64, base_ch=32, base_ch_mult=(1, 1, 1, 1, 2),
                                           base_embed_dim=16, base_codebook_size=32),
        "tiny-vae": lambda: KARLOfficialConfig(base="vae", image_size=32, width=64, encoder_depth=2,
                                               decoder_depth=2, num_heads=4, latent_pool=16, max_tokens=16,
                                               position_grid=8, codebook_size=0, base_ch=32,
                                               base_ch_mult=(1, 1, 1, 1, 2), base_embed_dim=4, base_decoder_blocks=3),
    }

    def __init__(self, config: KARLOfficialConfig) -> None:
        super().__init__(config)
        c = config
        self.encoder_positional_embedding = init_tokens(c.width, c.position_grid, c.position_grid)
        self.decoder_positional_embedding = init_tokens(c.width, c.position_grid, c.position_grid)
        self.decoder_mask_token = init_tokens(1, 1, c.width)
        self.decoder_latent_tokens_timestep_embed = init_tokens(c.latent_pool, c.width)
        self.latent_tokens = init_tokens(c.latent_pool, c.width)
        self.rec_loss_embeddings = init_tokens(len(c.error_bins), c.width)
        self.encoder = _Encoder(c.width, c.encoder_depth, c.num_heads)
        self.encoder_ln_pre = nn.LayerNorm(c.width)
        self.encoder_ln_post_halt = nn.LayerNorm(c.width)
        self.encoder_ln_post = nn.LayerNorm(c.width)
        self.pre_quantizer_mlp = nn.Linear(c.width, c.code_dim)
        self.halting_mlp = nn.Sequential(nn.Linear(c.width, c.width // 2), nn.Tanh(), nn.Linear(c.width // 2, 1))
        out_dim = c.base_codebook_size if c.base == "vqgan" else c.base_embed_dim
        self.decoder = _Decoder(c.width, c.decoder_depth, c.num_heads, out_dim)
        self.decoder_embed = nn.Linear(c.code_dim, c.width)
        self.patch_embed = nn.Conv2d(3, c.width - c.base_embed_dim, c.patch_size, stride=c.patch_size)
        self.quantize = _Codebook(c.codebook_size, c.code_dim) if c.quantize else None
        if c.base == "vqgan":
            base: nn.Module = MaskGITVQGAN(c.base_ch, c.base_ch_mult, 2, c.base_embed_dim, c.base_codebook_size)
        else:
            base = KLVAE(c.base_ch, c.base_ch_mult, 2, c.base_decoder_blocks, c.base_embed_dim, c.vae_scale)
        self.base_tokenizer = nn.ModuleDict({c.base: base})

    @property
    def base(self) -> MaskGITVQGAN | KLVAE:
        return self.base_tokenizer[self.config.base]

    # ---- building blocks ------------------------------------------------------------------------------------

    def _positions(self, table: torch.Tensor) -> torch.Tensor:
        """(W, P, P) learned table -> (grid^2, W) by nearest resampling, token index = grid * row + col."""
        grid = self.config.grid
        return F.interpolate(table[None], size=(grid, grid)).flatten(2)[0].T

    def encode_latents(self, images: torch.Tensor, base_latent: torch.Tensor, bins: torch.Tensor,
                       num_tokens: int) -> KARLOfficialEncoderOutput:
        """Images (B, 3, S, S), base latent (B, C, g, g), bins (B,), budget T -> halting probs and latents."""
        self._check_budget(num_tokens)
        batch = images.shape[0]
        patches = self.patch_embed(images).flatten(2).transpose(1, 2)  # (B, g*g, W - C)
        image_tokens = torch.cat([patches, base_latent.flatten(2).transpose(1, 2)], dim=2)
        image_tokens = image_tokens + self._positions(self.encoder_positional_embedding)
        x = torch.cat([self.rec_loss_embeddings[bins][:, None], image_tokens,
                       self.latent_tokens[:num_tokens].expand(batch, -1, -1)], dim=1)
        x = self.encoder_ln_pre(x)
        for block in self.encoder.transformer:
            x = block(x)
        h = x[:, -num_tokens:]  # (B, T, W)
        halt = torch.sigmoid(self.halting_mlp(self.encoder_ln_post_halt(h))[..., 0])
        return KARLOfficialEncoderOutput(halt, self.pre_quantizer_mlp(self.encoder_ln_post(h)))

    def decode_to_base(self, latents: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Decoder-side latents (B, T, D) and active mask (B, T) -> the base decoder's input (B, C, g, g).

        Halted positions attend only to themselves and no position attends to them, so they change nothing.
        """
        self._check_budget(latents.shape[1])
        c = self.config
        batch, num_tokens = latents.shape[:2]
        latent_tokens = self.decoder_embed(latents) + self.decoder_latent_tokens_timestep_embed[:num_tokens]
        mask_tokens = (self.decoder_mask_token + self._positions(self.decoder_positional_embedding))
        x = torch.cat([mask_tokens.expand(batch, -1, -1), latent_tokens], dim=1)
        halted = torch.cat([mask.new_zeros(batch, c.grid**2), ~mask.bool()], dim=1)  # (B, L)
        blocked = (halted[:, :, None] | halted[:, None, :]) & ~torch.eye(x.shape[1], dtype=torch.bool,
                                                                          device=x.device)
        x = self.decoder.ln_pre(x)
        for block in self.decoder.transformer:
            x = block(x, blocked)
        out = self.decoder.ffn(self.decoder.ln_post(x[:, : c.grid**2]))  # (B, g*g, K or C)
        if c.base == "vqgan":
            out = out.softmax(dim=-1) @ self.base.codebook  # the soft VQGAN code
        return out.transpose(1, 2).reshape(batch, -1, c.grid, c.grid)

    # ---- public API -----------------------------------------------------------------------------------------

    @torch.no_grad()
    def encode(self, images: torch.Tensor, target_error: float | torch.Tensor = 0.05, max_tokens: int | None = None,
               halt_threshold: float | None = None) -> KARLOfficialEncoding:
        """Images (B, 3, S, S) in [0, 1] -> codes at every position and the per-image active mask.

        Args:
            images: the batch (RGB, ``pixel / 255``).
            target_error: desired L1 (float or (B,)), the official ``desired_reconstruction_quality``.
            max_tokens: budget T (``config.max_tokens``), the official ``input_token_budget``.
            halt_threshold: a position halts iff p_halt > threshold (``config.halt_threshold``).
        """
        self._check_images(images)
        num_tokens = self.config.max_tokens if max_tokens is None else max_tokens
        threshold = self.config.halt_threshold if halt_threshold is None else halt_threshold
        check_halt_threshold(threshold)
        bins = self.error_bin(target_error, images.shape[0])
        out = self.encode_latents(images, self.base.encode(images), bins, num_tokens)
        mask = out.halt_probs <= threshold
        if self.quantize is None:
            return KARLOfficialEncoding(None, out.latents, out.halt_probs, bins, mask=mask)
        codes = self.quantize.nearest(out.latents)
        return KARLOfficialEncoding(codes.masked_fill(~mask, PAD_CODE), self.quantize.decode(codes), out.halt_probs,
                                    bins, mask=mask)

    @torch.no_grad()
    def decode(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Codes (B, T) (or continuous latents (B, T, D)) and active mask (B, T) -> images, not clipped.

        Slots outside the mask are ignored (they may hold ``PAD_CODE``).
        """
        mask = torch.as_tensor(mask, device=tokens.device).bool()
        if mask.shape != tokens.shape[:2]:
            raise ValueError(f"mask must be (B, T) = {tuple(tokens.shape[:2])}, got {tuple(mask.shape)}")
        latents = self._token_latents(tokens, mask, self.quantize)
        return self.base.decode(self.decode_to_base(latents, mask))
