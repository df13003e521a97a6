"""WavTokenizer (Ji et al. 2024, arXiv 2408.16532): 24 kHz speech <-> one stream of 4096-way codes.

Architecture of the official implementation (shared/specs/audio.md, section 1): a SEANet encoder (weight norm,
reversed ratios, LSTM skip) -> one EMA codebook (4096 x 512, Euclidean) -> Vocos backbone with the attention
``pos_net`` and AdaLN on bandwidth id 0 -> ISTFT head with "same" padding. Two published variants: 75 tokens/s
(hop 320, n_fft 1280) and 40 tokens/s (hop 600, n_fft 2400). Module names reproduce the official state-dict keys
(``feature_extractor.encodec.encoder.model.0.conv.conv.weight_g``, ...) except the EnCodec decoder, which the
official model builds but never uses and which is not built here.

Example::

    model = WavTokenizer.from_preset("tiny")
    codes = model.encode(torch.randn(2, 24000))   # (2, 1, 75)
    audio = model.decode(codes)                   # (2, 24000)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from tokenizers_media.modeling import ModelConfig, PretrainedModel, register_model
from tokenizers_media.nn.conv import ceil_div
from tokenizers_media.nn.ema_codebook import EMAVectorQuantizer
from tokenizers_media.nn.seanet import SEANetEncoder
from tokenizers_media.nn.vocos import ISTFTHead, VocosBackbone, WaveformGrid

PAD_CODE = -1
"""Fills the frames past a clip's end in a padded batch: never a valid code, so ``decode`` rejects it."""


@dataclass(frozen=True)
class WavTokenizerConfig(ModelConfig):
    """Hyper-parameters; defaults are the official 75 tokens/s configuration.

    Args:
        sample_rate: audio sample rate (24000).
        encoder_n_filters: SEANet channels after the first conv, doubled per stage (32).
        encoder_ratios: SEANet ratios in EnCodec order (applied reversed); their product is the hop.
        encoder_lstm_layers: LSTM layers in the encoder (2).
        latent_dim: encoder output and code vector size (512).
        codebook_size: number of codes (4096).
        kmeans_iters, ema_decay, ema_epsilon, dead_code_threshold, commitment_weight: codebook training
            (200, 0.99, 1e-5, 2, 1.0).
        backbone_dim, backbone_intermediate_dim, backbone_layers: Vocos width, MLP width, ConvNeXt blocks
            (768, 2304, 12).
        adanorm_num_embeddings: AdaLN condition ids (4, one per official "bandwidth"; inference uses id 0).
        pos_net_dropout: dropout in the pos_net ResnetBlocks (0.1).
        n_fft: ISTFT size (1280 / 2400).
        hop_length: samples per token; must equal the product of ``encoder_ratios`` (320 / 600).
    """

    sample_rate: int = 24000
    encoder_n_filters: int = 32
    encoder_ratios: tuple[int, ...] = (8, 5, 4, 2)
    encoder_lstm_layers: int = 2
    latent_dim: int = 512
    codebook_size: int = 4096
    kmeans_iters: int = 200
    ema_decay: float = 0.99
    ema_epsilon: float = 1e-5
    dead_code_threshold: float = 2.0
    commitment_weight: float = 1.0
    backbone_dim: int = 768
    backbone_intermediate_dim: int = 2304
    backbone_layers: int = 12
    adanorm_num_embeddings: int = 4
    pos_net_dropout: float = 0.1
    n_fft: int = 1280
    hop_length: int = 320

    def __post_init__(self) -> None:
        if math.prod(self.encoder_ratios) != self.hop_length:
            raise ValueError(f"hop_length {self.hop_length} must equal the product of encoder_ratios "
                             f"{self.encoder_ratios} ({math.prod(self.encoder_ratios)})")
        if self.n_fft < self.hop_length:
            raise ValueError(f"n_fft ({self.n_fft}) must be >= hop_length ({self.hop_length})")
        if self.adanorm_num_embeddings < 1:
            raise ValueError(f"adanorm_num_embeddings must be >= 1, got {self.adanorm_num_embeddings}")


@dataclass
class EncodeOutput:
    """``codes`` (B, 1, F) int64, PAD_CODE past each clip's end; ``num_frames`` (B,) = ceil(length / hop)."""

    codes: torch.Tensor
    num_frames: torch.Tensor


@dataclass
class WavTokenizerOutput:
    """Training round trip: ``audio`` (B, F * hop), ``codes`` (B, 1, F), ``commit_loss`` scalar,
    ``features`` (B, D, F) straight-through quantized features, ``latents`` (B, D, F) encoder output."""

    audio: torch.Tensor
    codes: torch.Tensor
    commit_loss: torch.Tensor
    features: torch.Tensor
    latents: torch.Tensor


class EncodecFeatures(nn.Module):
    """Encoder + quantizer, nested as the official ``feature_extractor.encodec.{encoder,quantizer.vq.layers.0}``."""

    def __init__(self, config: WavTokenizerConfig) -> None:
        super().__init__()
        self.encodec = nn.Module()  # containers below only reproduce the official key prefixes
        self.encodec.encoder = SEANetEncoder(dimension=config.latent_dim, n_filters=config.encoder_n_filters,
                                             ratios=config.encoder_ratios, lstm_layers=config.encoder_lstm_layers)
        self.encodec.quantizer = nn.Module()
        self.encodec.quantizer.vq = nn.Module()
        self.encodec.quantizer.vq.layers = nn.ModuleList([EMAVectorQuantizer(
            config.latent_dim, config.codebook_size, config.kmeans_iters, config.ema_decay, config.ema_epsilon,
            config.dead_code_threshold, config.commitment_weight)])

    @property
    def encoder(self) -> SEANetEncoder:
        return self.encodec.encoder

    @property
    def quantizer(self) -> EMAVectorQuantizer:
        return self.encodec.quantizer.vq.layers[0]


@register_model
class WavTokenizer(WaveformGrid, PretrainedModel):
    """Audio (B, T) at 24 kHz <-> codes (B, 1, ceil(T / hop)); see the module docstring."""

    config_class = WavTokenizerConfig
    presets = {
        "paper-75": lambda: WavTokenizerConfig(),
        "paper-40": lambda: WavTokenizerConfig(encoder_ratios=(6, 5, 5, 4), n_fft=2400, hop_length=600),
        # Trains on a 2-core CPU and saves to < 10 MB (codebook buffers included): 4096 codes of size 64.
        "tiny": lambda: WavTokenizerConfig(encoder_n_filters=8, latent_dim=64, backbone_dim=128,
                                           backbone_intermediate_dim=384, backbone_layers=4),
    }

    def __init__(self, config: WavTokenizerConfig) -> None:
        super().__init__(config)
        self.config: WavTokenizerConfig = config
        self.feature_extractor = EncodecFeatures(config)
        self.backbone = VocosBackbone(config.latent_dim, config.backbone_dim, config.backbone_intermediate_dim,
                                      config.backbone_layers, config.adanorm_num_embeddings,
                                      dropout=config.pos_net_dropout)
        self.head = ISTFTHead(config.backbone_dim, config.n_fft, config.hop_length)

    @property
    def token_rate(self) -> float:
        """Codes per second (75 or 40 for the paper variants)."""
        return self.config.sample_rate / self.config.hop_length

    @property
    def codebook_size(self) -> int:
        return self.config.codebook_size

    # -- checks ---------------------------------------------------------------------------------------------

    def _check_wav(self, wav: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor | None:
        """Validates a (B, T) batch and its lengths; returns lengths or None when no row is padded."""
        if not isinstance(wav, torch.Tensor) or wav.ndim != 2:
            shape = tuple(wav.shape) if isinstance(wav, torch.Tensor) else type(wav).__name__
            raise ValueError(f"wav must be a (batch, samples) tensor, got {shape}; use wav[None] for one clip")
        if not wav.dtype.is_floating_point:
            raise ValueError(f"wav must be a floating-point tensor in [-1, 1], got dtype {wav.dtype}")
        if wav.shape[0] == 0 or wav.shape[1] == 0:
            raise ValueError(f"wav must hold at least one sample per clip, got shape {tuple(wav.shape)}")
        if not bool(torch.isfinite(wav).all()):
            raise ValueError("wav contains NaN or infinite samples")
        if lengths is None:
            return None
        if lengths.ndim != 1 or lengths.shape[0] != wav.shape[0] or lengths.dtype.is_floating_point:
            raise ValueError(f"lengths must be an integer tensor of shape ({wav.shape[0]},), "
                             f"got {lengths.dtype} {tuple(lengths.shape)}")
        if int(lengths.min()) < 1 or int(lengths.max()) > wav.shape[1]:
            raise ValueError(f"lengths must lie in [1, {wav.shape[1]}] (the padded length), got "
                             f"[{int(lengths.min())}, {int(lengths.max())}]")
        lengths = lengths.to(device=wav.device, dtype=torch.long)
        return None if bool((lengths == wav.shape[1]).all()) else lengths

    def _check_codes(self, codes: torch.Tensor) -> None:
        if not isinstance(codes, torch.Tensor) or codes.ndim != 3 or codes.shape[1] != 1 or codes.shape[2] == 0:
            shape = tuple(codes.shape) if isinstance(codes, torch.Tensor) else type(codes).__name__
            raise ValueError(f"codes must be a (batch, 1, frames) tensor with frames >= 1, got {shape}")
        if codes.dtype.is_floating_point or codes.dtype == torch.bool:
            raise ValueError(f"codes must be integers, got dtype {codes.dtype}")
        low, high = int(codes.min()), int(codes.max())
        if low < 0 or high >= self.codebook_size:
            raise ValueError(f"codes must lie in [0, {self.codebook_size}), got range [{low}, {high}]")

    def _cond_id(self, bandwidth_id: int, device: torch.device) -> torch.Tensor:
        if not 0 <= bandwidth_id < self.config.adanorm_num_embeddings:
            raise ValueError(f"bandwidth_id must be in [0, {self.config.adanorm_num_embeddings}), got {bandwidth_id}")
        return torch.tensor([bandwidth_id], device=device)

    # -- inference ------------------------------------------------------------------------------------------

    @torch.inference_mode()
    def encode_latents(self, wav: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Encoder output before quantization: wav (B, T) -> (B, D, ceil(T / hop)) (padded frames: don't-care)."""
        lengths = self._check_wav(wav, lengths)
        return self.feature_extractor.encoder(wav[:, None, :], lengths)

    @torch.inference_mode()
    def encode_with_lengths(self, wav: torch.Tensor, lengths: torch.Tensor | None = None) -> EncodeOutput:
        """wav (B, T) float at ``sample_rate``, optional lengths (B,) of a padded batch -> codes and frame counts.

        Row b's codes equal those of encoding ``wav[b, :lengths[b]]`` alone; frames past its end hold PAD_CODE.
        """
        checked = self._check_wav(wav, lengths)
        latents = self.feature_extractor.encoder(wav[:, None, :], checked)
        codes = self.feature_extractor.quantizer.encode(latents)[:, None, :]  # (B, 1, F)
        if lengths is None:
            return EncodeOutput(codes, torch.full((wav.shape[0],), codes.shape[-1], device=wav.device))
        num_frames = ceil_div(lengths.to(device=wav.device, dtype=torch.long), self.hop_length)
        past_end = torch.arange(codes.shape[-1], device=wav.device)[None, None, :] >= num_frames[:, None, None]
        return EncodeOutput(codes.masked_fill(past_end, PAD_CODE), num_frames)

    def encode(self, wav: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """wav (B, T) float -> codes (B, 1, ceil(T / hop)) int64; see :meth:`encode_with_lengths`."""
        return self.encode_with_lengths(wav, lengths).codes

    def codes_to_features(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes (B, 1, F) -> code vectors (B, D, F), the backbone's input."""
        self._check_codes(codes)
        return self.feature_extractor.quantizer.decode(codes[:, 0, :])

    def decode_features(self, features: torch.Tensor, bandwidth_id: int = 0) -> torch.Tensor:
        """Features (B, D, F) -> audio (B, F * hop); differentiable (the training path)."""
        hidden = self.backbone(features, self._cond_id(bandwidth_id, features.device))
        return self.head(hidden)

    @torch.inference_mode()
    def decode(self, codes: torch.Tensor, bandwidth_id: int = 0) -> torch.Tensor:
        """Codes (B, 1, F) -> audio (B, F * hop). Clips of a batch share F (attention spans the whole clip)."""
        return self.decode_features(self.codes_to_features(codes), bandwidth_id)

    # -- training -------------------------------------------------------------------------------------------

    def forward(self, wav: torch.Tensor, bandwidth_id: int = 0) -> WavTokenizerOutput:
        """Round trip wav (B, T) -> reconstruction; in train mode the codebook is initialised/updated (EMA)."""
        self._check_wav(wav, None)
        latents = self.feature_extractor.encoder(wav[:, None, :])
        quantized = self.feature_extractor.quantizer(latents)
        audio = self.decode_features(quantized.quantized, bandwidth_id)
        return WavTokenizerOutput(audio, quantized.codes[:, None, :], quantized.commit_loss, quantized.quantized,
                                  latents)
