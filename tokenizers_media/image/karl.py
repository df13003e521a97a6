"""KARL: single-pass adaptive image tokenization (arXiv 2507.07995; shared/specs/image_tokenizers.md, KARL).

One encoder pass over ``[target-error token | image tokens | T latent tokens]`` predicts, for every latent token,
a halting probability and a quantised latent (4096 L2-normalised codes of dim 12, or a continuous latent). The
target error is a per-image L1 on images in [0, 1], snapped *up* to the next of 19 bins, each with a learnable
embedding. Tokens whose halting probability exceeds a threshold (the official code hard-codes 0.75; here it is
a parameter) are masked out of the decoder's attention, so the number of active tokens adapts to the image.

Departures from the paper, all for this repo's CPU scale and offline setting:

- Image tokens are pixel patches (linear patch embedding + learned 2D positions); there is no frozen VQGAN/VAE
  base tokenizer, and the decoder regresses pixels directly instead of VQGAN code logits.
- Halting is made monotone (a running max over the token index) so that the active tokens are always a prefix:
  a batch of codes is then a padded ``(B, T)`` tensor plus ``lengths``. The training targets (0 for the first
  tokens, 1 for the rest) are prefix-shaped, so a trained model rarely differs; the official code masks tokens
  one by one.
- The ``tiny`` preset restarts VQ codes left unused for 200 training calls (``dead_code_steps``): without it, a
  1000-step run here used about 24 of the 4096 codes on 256 held-out images (with it: about 600).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from tokenizers_media.image.karl_common import ERROR_BINS as ERROR_BINS  # re-exported: KARL's bins
from tokenizers_media.image.karl_common import (
    PAD_CODE,
    BaseKARLConfig,
    BaseKARLEncoding,
    KARLMixin,
    check_halt_threshold,
    init_tokens,
)
from tokenizers_media.modeling import PretrainedModel, register_model
from tokenizers_media.nn.vit import Transformer, patchify, unpatchify
from tokenizers_media.nn.vq import L2NormVectorQuantizer, VQOutput


@dataclass(frozen=True)
class KARLConfig(BaseKARLConfig):
    """KARL hyper-parameters: those of :class:`BaseKARLConfig` (``patch_size`` in pixels) and

    Args:
        mlp_ratio: MLP width of the two ViTs, relative to ``width``.
        quantize: discrete codes (True) or continuous latents (False; ``codebook_size`` is then ignored).
        commitment: VQ commitment weight.
        dead_code_steps: training calls after which an unused code is restarted (0 = never; see
            ``tokenizers_media.nn.vq``).
    """

    mlp_ratio: float = 4.0
    quantize: bool = True
    commitment: float = 0.25
    dead_code_steps: int = 0

    def __post_init__(self) -> None:
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size {self.image_size} is not a multiple of patch_size {self.patch_size}")
        super().__post_init__()
        if list(self.error_bins) != sorted(self.error_bins) or not self.error_bins:
            raise ValueError(f"error_bins must be a non-empty ascending sequence, got {self.error_bins}")


@dataclass
class KARLEncoding(BaseKARLEncoding):
    """What ``KARL.encode`` returns: the shared fields (``latents`` zero and ``codes`` ``PAD_CODE`` past each
    length; ``halt_probs`` monotone) and ``lengths`` (B,), the active prefix of each image."""

    active_field: ClassVar[str] = "lengths"
    lengths: torch.Tensor


@dataclass
class KARLEncoderOutput:
    """Raw encoder output: ``halt_logits`` (B, T) (not yet monotone) and ``latents`` (B, T, D) pre-quantizer."""

    halt_logits: torch.Tensor
    latents: torch.Tensor


def active_prefix(lengths: torch.Tensor, num_tokens: int) -> torch.Tensor:
    """(B, T) bool: True on each image's first ``lengths[b]`` of ``num_tokens`` slots (its active tokens)."""
    return torch.arange(num_tokens, device=lengths.device) < lengths[:, None]


def _key_mask(leading: int, lengths: torch.Tensor, num_tokens: int) -> torch.Tensor:
    """(B, leading + T) attention key mask: the ``leading`` tokens always, then each image's active prefix."""
    active = active_prefix(lengths, num_tokens)
    return torch.cat([active.new_ones(len(lengths), leading), active], dim=1)


@register_model
class KARL(KARLMixin, PretrainedModel):
    """KARL adaptive tokenizer. Images are (B, 3, H, W) in [0, 1] with H = W = ``config.image_size``."""

    config_class = KARLConfig
    presets = {
        "paper-small": lambda: KARLConfig(),
        "tiny": lambda: KARLConfig(image_size=32, patch_size=4, width=96, encoder_depth=3, decoder_depth=3,
                                   num_heads=4, latent_pool=32, max_tokens=32, dead_code_steps=200),
    }

    def __init__(self, config: KARLConfig) -> None:
        super().__init__(config)
        c = config
        patch_dim, n_image = 3 * c.patch_size**2, c.grid**2
        # Encoder: [error token | image tokens | latent tokens].
        self.error_embed = nn.Embedding(len(c.error_bins), c.width)
        self.patch_embed = nn.Linear(patch_dim, c.width)
        self.encoder_positions = init_tokens(n_image, c.width)
        self.latent_tokens = init_tokens(c.latent_pool, c.width)
        self.encoder = Transformer(c.width, c.encoder_depth, c.num_heads, c.mlp_ratio)
        self.halting_head = nn.Sequential(nn.LayerNorm(c.width), nn.Linear(c.width, c.width // 2), nn.Tanh(),
                                          nn.Linear(c.width // 2, 1))
        self.pre_quantizer = nn.Sequential(nn.LayerNorm(c.width), nn.Linear(c.width, c.code_dim))
        self.quantizer = L2NormVectorQuantizer(c.codebook_size, c.code_dim, c.commitment,
                                               c.dead_code_steps) if c.quantize else None
        # Decoder: [mask tokens at image positions | projected latents + per-index embedding].
        self.decoder_embed = nn.Linear(c.code_dim, c.width)
        self.decoder_latent_positions = init_tokens(c.latent_pool, c.width)
        self.mask_token = init_tokens(1, 1, c.width)
        self.decoder_positions = init_tokens(n_image, c.width)
        self.decoder = Transformer(c.width, c.decoder_depth, c.num_heads, c.mlp_ratio)
        self.to_pixels = nn.Linear(c.width, patch_dim)

    # ---- building blocks (used by training) -----------------------------------------------------------------

    def encode_latents(self, images: torch.Tensor, bins: torch.Tensor, num_tokens: int,
                       lengths: torch.Tensor | None = None) -> KARLEncoderOutput:
        """Images (B, 3, H, W), bins (B,), budget T -> halting logits (B, T) and latents (B, T, D).

        ``lengths`` (B,) gives each image its own budget within T: latent slots at or past it are masked as
        keys, so an image's first ``lengths[b]`` outputs are those of encoding it with budget ``lengths[b]``.
        """
        self._check_images(images)
        self._check_budget(num_tokens)
        c = self.config
        image_tokens = self.patch_embed(patchify(images, c.patch_size)) + self.encoder_positions
        latent_tokens = self.latent_tokens[:num_tokens].expand(images.shape[0], -1, -1)
        x = torch.cat([self.error_embed(bins)[:, None], image_tokens, latent_tokens], dim=1)
        key_mask = None if lengths is None else _key_mask(x.shape[1] - num_tokens, lengths.to(x.device), num_tokens)
        latent_out = self.encoder(x, key_mask=key_mask)[:, -num_tokens:]  # (B, T, W)
        return KARLEncoderOutput(self.halting_head(latent_out)[..., 0], self.pre_quantizer(latent_out))

    def quantize(self, latents: torch.Tensor) -> VQOutput | None:
        """VQ of latents (B, T, D); None for a continuous model."""
        return None if self.quantizer is None else self.quantizer(latents)

    def decode_latents(self, latents: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Latents (B, T, D) with (B,) active prefix lengths -> unclamped pixels (B, 3, H, W).

        Latent slots at or past an image's length are masked out of attention, so their values are irrelevant.
        """
        c = self.config
        batch, num_tokens = latents.shape[:2]
        self._check_budget(num_tokens)
        latent_tokens = self.decoder_embed(latents) + self.decoder_latent_positions[:num_tokens]
        mask_tokens = (self.mask_token + self.decoder_positions).expand(batch, -1, -1)
        x = torch.cat([mask_tokens, latent_tokens], dim=1)
        keep = _key_mask(mask_tokens.shape[1], lengths.to(x.device), num_tokens)
        patches = self.to_pixels(self.decoder(x, key_mask=keep)[:, : mask_tokens.shape[1]])
        return unpatchify(patches, c.patch_size, c.image_size, c.image_size)

    @staticmethod
    def lengths_from_halting(halt_logits: torch.Tensor, threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Halting logits (B, T) -> (monotone halting probabilities (B, T), active lengths (B,)).

        A token is halted when its probability, or that of any earlier token, exceeds ``threshold``.
        """
        check_halt_threshold(threshold)
        probs = torch.sigmoid(halt_logits.float()).cummax(dim=1).values
        return probs, (probs <= threshold).sum(dim=1)

    # ---- public API -----------------------------------------------------------------------------------------

    @torch.no_grad()
    def encode(self, images: torch.Tensor, target_error: float | torch.Tensor = 0.05, max_tokens: int | None = None,
               halt_threshold: float | None = None) -> KARLEncoding:
        """Images (B, 3, H, W) in [0, 1] -> adaptive-length tokens (a padded batch with lengths).

        Args:
            images: the batch, at ``config.image_size``.
            target_error: desired per-image L1 (a float or a (B,) tensor), snapped up to the error bins.
            max_tokens: token budget T (defaults to ``config.max_tokens``; at most ``config.latent_pool``).
            halt_threshold: halting probability above which tokens are dropped (``config.halt_threshold``).
        """
        num_tokens = self.config.max_tokens if max_tokens is None else max_tokens
        threshold = self.config.halt_threshold if halt_threshold is None else halt_threshold
        bins = self.error_bin(target_error, images.shape[0])
        out = self.encode_latents(images, bins, num_tokens)
        probs, lengths = self.lengths_from_halting(out.halt_logits, threshold)
        active = active_prefix(lengths, num_tokens)
        vq = self.quantize(out.latents)
        latents = (out.latents if vq is None else vq.quantized) * active[..., None]
        codes = None if vq is None else vq.codes.masked_fill(~active, PAD_CODE)
        return KARLEncoding(codes, latents, probs, bins, lengths=lengths)

    @torch.no_grad()
    def decode(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Codes (B, T) (or continuous latents (B, T, D)) and lengths (B,) -> images (B, 3, H, W) in [0, 1]."""
        lengths = torch.as_tensor(lengths, device=tokens.device)
        if lengths.shape != tokens.shape[:1] or lengths.min() < 0 or lengths.max() > tokens.shape[1]:
            raise ValueError(f"lengths must be (B,) = ({tokens.shape[0]},) values in [0, {tokens.shape[1]}], "
                             f"got {lengths.tolist()}")
        latents = self._token_latents(tokens, active_prefix(lengths, tokens.shape[1]), self.quantizer)
        return self.decode_latents(latents, lengths).clamp(0.0, 1.0)
