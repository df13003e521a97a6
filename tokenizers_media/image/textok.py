"""TexTok: text-conditioned 1D image tokenizer ("Language-Guided Image Tokenization for Generation",
arXiv 2412.05796, CVPR'25; facts in shared/specs/image_tokenizers.md, section 1).

Encoder: ViT over ``[image patches | N learnable latent tokens | Linear(text tokens)]``; only the N latent
outputs are kept and a linear layer maps them to d = 8 channels per token (a diagonal Gaussian, KL-regularised;
or an L2-normalised VQ, the ``vq`` bottleneck, for robust latent perturbation). Decoder: ViT over
``[learnable patch queries | Linear(latents) | Linear(same text tokens)]``; the patch outputs go through a
linear layer back to pixels. The caption is required at both ends: the text carries the semantics so the
tokens can spend their capacity on detail.

The text encoder is pluggable (``tokenizers_media/text/encoders.py``): the frozen pretrained MiniLM by default
(TexTok used a frozen T5; its weights come from the installed package and are not saved with this model) or
a small learned word encoder. Images are ``(B, 3, H, W)`` in [0, 1]; latents ``(B, N, d)``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import nn

from tokenizers_media.modeling import ModelConfig, PretrainedModel, register_model
from tokenizers_media.nn.gaussian import DiagonalGaussian
from tokenizers_media.nn.vit import Transformer, patchify, unpatchify
from tokenizers_media.nn.vq import L2NormVectorQuantizer
from tokenizers_media.text.encoders import TEXT_ENCODERS, TextEmbedding, TextEncoder, build_text_encoder

TOKEN_COUNTS = (32, 64, 128, 256)
BOTTLENECKS = ("kl", "vq")

Captions = list[str] | TextEmbedding | None


@dataclass(frozen=True)
class TexTokConfig(ModelConfig):
    image_size: int = 256
    patch_size: int = 8
    num_latent_tokens: int = 128
    """N, one of TOKEN_COUNTS."""
    latent_dim: int = 8
    bottleneck: str = "kl"
    """``kl``: continuous diagonal-Gaussian tokens (the paper); ``vq``: L2-normalised codebook tokens."""
    codebook_size: int = 4096
    """Only for the ``vq`` bottleneck."""
    dead_code_steps: int = 0
    """``vq`` only: restart codes unused for this many training calls (0 = never; ``tokenizers_media.nn.vq``)."""
    encoder_width: int = 768
    encoder_depth: int = 12
    encoder_heads: int = 12
    decoder_width: int = 768
    decoder_depth: int = 12
    decoder_heads: int = 12
    mlp_ratio: float = 4.0
    text_conditioning: bool = True
    """False builds the paper's no-text ablation baseline (captions are then ignored)."""
    text_encoder: str = "minilm"
    text_dim: int = 384
    """Width of the text encoder's tokens (384 for MiniLM; any for ``learned``)."""
    max_text_tokens: int = 128
    caption_style: str = "coarse"
    """The shapes-world caption style the model was trained on (``coarse`` or ``exact``); evaluation uses it."""

    def __post_init__(self) -> None:
        if self.num_latent_tokens not in TOKEN_COUNTS:
            raise ValueError(f"num_latent_tokens {self.num_latent_tokens} is not one of {TOKEN_COUNTS}")
        if self.bottleneck not in BOTTLENECKS:
            raise ValueError(f"bottleneck {self.bottleneck!r} is not one of {BOTTLENECKS}")
        if self.text_encoder not in TEXT_ENCODERS:
            raise ValueError(f"text_encoder {self.text_encoder!r} is not one of {TEXT_ENCODERS}")
        if self.caption_style not in ("coarse", "exact"):
            raise ValueError(f"caption_style {self.caption_style!r} is not 'coarse' or 'exact'")
        if self.text_encoder == "minilm" and self.text_dim != 384:
            raise ValueError(f"the minilm text encoder gives 384-wide tokens, but text_dim is {self.text_dim}")
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size {self.image_size} is not a multiple of patch_size {self.patch_size}")

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2


def _paper_b() -> TexTokConfig:
    """ViT-B encoder and decoder (12 x 768, 12 heads), patch 8 at 256 px."""
    return TexTokConfig()


def _tiny() -> TexTokConfig:
    """CPU-trainable on 32 px shapes world: 2 + 2 blocks of width 96, patch 4 (64 patches), ~0.6 M params."""
    return TexTokConfig(image_size=32, patch_size=4, num_latent_tokens=32, encoder_width=96, encoder_depth=2,
                        encoder_heads=4, decoder_width=96, decoder_depth=2, decoder_heads=4, dead_code_steps=200)


def _tiny_64() -> TexTokConfig:
    """``tiny`` at 64 px with patch 8 (the same 64 patches): 4x the pixels per latent number (48 instead of 12),
    nearer the paper's compression (768 at 256 px), where the caption has more to add."""
    return dataclasses.replace(_tiny(), image_size=64, patch_size=8)


@dataclass
class TexTokEncoding:
    latents: torch.Tensor
    """(B, N, d): the Gaussian mean (or a sample when asked), or the straight-through VQ code vectors."""
    codes: torch.Tensor | None
    """(B, N) int64 for the ``vq`` bottleneck, else None."""
    loss: torch.Tensor
    """Regulariser: the KL (``kl``) or codebook + commitment loss (``vq``)."""


@dataclass
class TexTokOutput:
    reconstruction: torch.Tensor
    """(B, 3, H, W), not clamped (the training loss sees the raw prediction)."""
    encoding: TexTokEncoding


@register_model
class TexTok(PretrainedModel):
    config_class = TexTokConfig
    presets = {"paper-B": _paper_b, "tiny": _tiny, "tiny-64": _tiny_64}

    def __init__(self, config: TexTokConfig) -> None:
        super().__init__(config)
        c = config
        pixels_per_patch = 3 * c.patch_size**2
        # Encoder: patches + N learnable latent tokens (+ projected text).
        self.patch_embed = nn.Linear(pixels_per_patch, c.encoder_width)
        self.encoder_pos = nn.Parameter(torch.randn(c.num_patches, c.encoder_width) * 0.02)
        self.latent_tokens = nn.Parameter(torch.randn(c.num_latent_tokens, c.encoder_width) * 0.02)
        self.encoder = Transformer(c.encoder_width, c.encoder_depth, c.encoder_heads, c.mlp_ratio)
        moments = 2 * c.latent_dim if c.bottleneck == "kl" else c.latent_dim
        self.to_latent = nn.Linear(c.encoder_width, moments)
        if c.bottleneck == "kl":
            self.gaussian = DiagonalGaussian()
        else:
            self.quantizer = L2NormVectorQuantizer(c.codebook_size, c.latent_dim, dead_code_steps=c.dead_code_steps)
        # Decoder: learnable patch queries + projected latents (+ projected text).
        self.patch_queries = nn.Parameter(torch.randn(1, c.decoder_width) * 0.02)
        self.decoder_pos = nn.Parameter(torch.randn(c.num_patches, c.decoder_width) * 0.02)
        self.latent_embed = nn.Linear(c.latent_dim, c.decoder_width)
        self.decoder_latent_pos = nn.Parameter(torch.randn(c.num_latent_tokens, c.decoder_width) * 0.02)
        self.decoder = Transformer(c.decoder_width, c.decoder_depth, c.decoder_heads, c.mlp_ratio)
        self.to_pixels = nn.Linear(c.decoder_width, pixels_per_patch)
        if c.text_conditioning:
            self.encoder_text = nn.Linear(c.text_dim, c.encoder_width)
            self.decoder_text = nn.Linear(c.text_dim, c.decoder_width)
            if c.text_encoder == "learned":
                self.learned_text = build_text_encoder("learned", c.text_dim, c.max_text_tokens)
        # Frozen pretrained text encoders are built on first use and kept out of the state dict.
        self._frozen_text: list[TextEncoder] = []

    # ---- text -------------------------------------------------------------------------------------------

    def text_encoder(self) -> TextEncoder:
        if self.config.text_encoder == "learned":
            return self.learned_text
        if not self._frozen_text:
            encoder = build_text_encoder(self.config.text_encoder, self.config.text_dim, self.config.max_text_tokens)
            self._frozen_text.append(encoder.to(self.patch_embed.weight.device))
        return self._frozen_text[0]

    def embed_text(self, captions: list[str]) -> TextEmbedding:
        """Captions -> per-token text embeddings (ValueError for empty or too-long captions)."""
        return self.text_encoder()(list(captions))

    def _text(self, captions: Captions, batch: int) -> TextEmbedding | None:
        if not self.config.text_conditioning:
            return None
        if captions is None:
            raise ValueError("TexTok needs a caption per image at encode and decode; got none")
        text = captions if isinstance(captions, TextEmbedding) else self.embed_text(captions)
        if text.tokens.shape[0] != batch:
            raise ValueError(f"got {text.tokens.shape[0]} captions for {batch} images")
        return text

    # ---- encode / decode --------------------------------------------------------------------------------

    def encode(self, images: torch.Tensor, captions: Captions = None, sample: bool = False,
               generator: torch.Generator | None = None) -> TexTokEncoding:
        """images (B, 3, S, S) in [0, 1] + captions -> N tokens of d channels."""
        c = self.config
        if images.ndim != 4 or images.shape[1:] != (3, c.image_size, c.image_size):
            raise ValueError(f"expected images (B, 3, {c.image_size}, {c.image_size}), got {tuple(images.shape)}")
        b = images.shape[0]
        text = self._text(captions, b)
        patches = self.patch_embed(patchify(images * 2 - 1, c.patch_size)) + self.encoder_pos  # (B, P, W)
        parts = [patches, self.latent_tokens.expand(b, -1, -1)]
        x, mask = self._with_text(parts, text, self.encoder_text if text is not None else None)
        hidden = self.encoder(x, mask)[:, c.num_patches : c.num_patches + c.num_latent_tokens]  # (B, N, W)
        moments = self.to_latent(hidden)
        if c.bottleneck == "kl":
            g = self.gaussian(moments, sample=sample, generator=generator)
            return TexTokEncoding(g.sample, None, g.kl)
        vq = self.quantizer(moments)
        return TexTokEncoding(vq.quantized, vq.codes, vq.loss)

    def decode(self, latents: torch.Tensor, captions: Captions = None, clamp: bool = True) -> torch.Tensor:
        """latents (B, N, d) + captions -> images (B, 3, S, S), clamped to [0, 1] unless ``clamp=False``."""
        c = self.config
        if latents.ndim != 3 or latents.shape[1:] != (c.num_latent_tokens, c.latent_dim):
            raise ValueError(f"expected latents (B, {c.num_latent_tokens}, {c.latent_dim}), "
                             f"got {tuple(latents.shape)}")
        b = latents.shape[0]
        text = self._text(captions, b)
        queries = (self.patch_queries + self.decoder_pos).expand(b, -1, -1)  # (B, P, W)
        tokens = self.latent_embed(latents.to(self.latent_embed.weight.dtype)) + self.decoder_latent_pos
        x, mask = self._with_text([queries, tokens], text, self.decoder_text if text is not None else None)
        hidden = self.decoder(x, mask)[:, : c.num_patches]
        images = (unpatchify(self.to_pixels(hidden), c.patch_size, c.image_size, c.image_size) + 1) / 2
        return images.clamp(0.0, 1.0) if clamp else images

    def decode_codes(self, codes: torch.Tensor, captions: Captions = None, clamp: bool = True) -> torch.Tensor:
        """``vq`` bottleneck only: codes (B, N) -> images."""
        if self.config.bottleneck != "vq":
            raise ValueError("decode_codes needs the vq bottleneck; this TexTok has continuous (kl) tokens")
        return self.decode(self.quantizer.decode(codes), captions, clamp)

    def forward(self, images: torch.Tensor, captions: Captions = None, sample: bool = True,
                generator: torch.Generator | None = None) -> TexTokOutput:
        """Round trip for training: a sampled (``kl``) or straight-through (``vq``) encoding, raw decoding."""
        text = self._text(captions, images.shape[0])
        encoding = self.encode(images, text, sample=sample, generator=generator)
        return TexTokOutput(self.decode(encoding.latents, text, clamp=False), encoding)

    @staticmethod
    def _with_text(parts: list[torch.Tensor], text: TextEmbedding | None, project: nn.Module | None
                   ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Append projected text tokens; the key mask hides text padding (None when there is no text)."""
        if text is None or project is None:
            return torch.cat(parts, dim=1), None
        x = torch.cat([*parts, project(text.tokens.to(parts[0].dtype))], dim=1)
        keep = torch.ones(x.shape[0], x.shape[1] - text.mask.shape[1], dtype=torch.bool, device=x.device)
        return x, torch.cat([keep, text.mask.to(x.device)], dim=1)
