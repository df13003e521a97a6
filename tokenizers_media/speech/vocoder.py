"""Mel vocoder: Flow-Omni's log-mel frames -> 24 kHz waveform (Vocos, Siuzdak 2023, arXiv 2306.00814).

Flow-Omni (spec flow_omni.md §1, §3) speaks in continuous mel frames and needs a GAN vocoder; HiFi-GAN weights
cannot be fetched here, so this is a Vocos-style vocoder trained in this repo: ConvNeXt backbone (plain
LayerNorm, no AdaLN; WavTokenizer's attention ``pos_net`` optional) and an ISTFT head predicting log-magnitude
and phase per frame. Both blocks are WavTokenizer's (:mod:`tokenizers_media.nn.vocos`), only the input differs:
the 80-bin natural-log magnitude mel of :class:`tokenizers_media.speech.mel.LogMel` (24 kHz, hop 320, n_fft
1280, 75 frames/s). F frames give exactly ``F * hop`` samples on the same "same"-padded grid.

:class:`StreamingVocoder` vocodes frames as they are generated (spec §6): chunks with left context and a few
frames of look-ahead, the seams cross-faded, so the stream stays close to vocoding the whole clip at once.

Example::

    vocoder = MelVocoder.from_preset("tiny")
    wav = vocoder(LogMel()(clip[None]))   # (1, F * 320)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from tokenizers_media.modeling import PretrainedModel, register_model
from tokenizers_media.nn.vocos import ISTFTHead, VocosBackbone, WaveformGrid
from tokenizers_media.speech.mel import MelFrontendConfig, mel_floor_value


@dataclass(frozen=True)
class MelVocoderConfig(MelFrontendConfig):
    """Hyper-parameters; defaults are Vocos' published 24 kHz mel vocoder sizes on this repo's mel grid.

    Args:
        (inherited) the mel front-end the vocoder reads; the ISTFT head uses the same n_fft / hop.
        dim: backbone width (512).
        intermediate_dim: ConvNeXt MLP width (1536).
        num_layers: ConvNeXt blocks (8).
        pos_net: WavTokenizer's attention/ResNet stack before the ConvNeXt blocks (off in Vocos; attention
            spans the whole clip, so it also makes chunked streaming inexact).
        pos_net_dropout: dropout inside the pos_net ResnetBlocks (0.1).
    """

    dim: int = 512
    intermediate_dim: int = 1536
    num_layers: int = 8
    pos_net: bool = False
    pos_net_dropout: float = 0.1

    def __post_init__(self) -> None:
        if not 0 < self.hop_length <= self.n_fft:
            raise ValueError(f"need 0 < hop_length <= n_fft, got hop {self.hop_length}, n_fft {self.n_fft}")
        if min(self.dim, self.intermediate_dim, self.num_layers, self.n_mels) < 1:
            raise ValueError("dim, intermediate_dim, num_layers and n_mels must be >= 1")


@register_model
class MelVocoder(WaveformGrid, PretrainedModel):
    """Log-mel ``(B, F, n_mels)`` -> waveform ``(B, F * hop)``; see the module docstring."""

    config_class = MelVocoderConfig
    presets = {
        # Vocos' 24 kHz mel vocoder (dim 512, MLP 1536, 8 ConvNeXt blocks); 13.6 M parameters at n_fft 1280.
        "paper": lambda: MelVocoderConfig(),
        # 2.15 M parameters (8.6 MB fp32): trains on one CPU thread in tens of minutes.
        "tiny": lambda: MelVocoderConfig(dim=192, intermediate_dim=576, num_layers=8),
    }

    def __init__(self, config: MelVocoderConfig) -> None:
        super().__init__(config)
        self.config: MelVocoderConfig = config
        self.backbone = VocosBackbone(config.n_mels, config.dim, config.intermediate_dim, config.num_layers,
                                      adanorm_num_embeddings=None, pos_net=config.pos_net,
                                      dropout=config.pos_net_dropout)
        self.head = ISTFTHead(config.dim, config.n_fft, config.hop_length)

    def forward(self, log_mel: torch.Tensor) -> torch.Tensor:
        """``(B, F, n_mels)`` natural-log magnitude mel -> ``(B, F * hop)``; differentiable (training path)."""
        if log_mel.ndim != 3 or log_mel.shape[-1] != self.config.n_mels or log_mel.shape[1] == 0:
            raise ValueError(f"log_mel must be (batch, frames >= 1, {self.config.n_mels}), "
                             f"got {tuple(log_mel.shape)}")
        # Generated frames can undershoot the silence floor; nothing below it was ever seen in training.
        features = log_mel.clamp(min=mel_floor_value()).transpose(1, 2)  # (B, n_mels, F)
        return self.head(self.backbone(features))

    @torch.inference_mode()
    def vocode(self, log_mel: torch.Tensor) -> torch.Tensor:
        """Inference: ``(B, F, n_mels)`` -> ``(B, F * hop)`` without autograd."""
        return self(log_mel)


Vocode = Callable[[torch.Tensor], torch.Tensor]
"""Any frame-local vocoder: log-mel ``(B, F, n_mels)`` -> waveform ``(B, F * hop)`` (MelVocoder.vocode,
griffin_lim)."""


class StreamingVocoder:
    """Turns mel frames pushed in arbitrary pieces into waveform chunks (spec flow_omni.md §6).

    A chunk of ``chunk_frames`` is vocoded together with up to ``left_context`` earlier frames and, once they
    exist, ``lookahead + crossfade_frames`` later ones (the backbone's convolutions and the ISTFT window see both
    sides). The audio of the last ``crossfade_frames`` is held back and cross-faded (raised cosine) into the next
    chunk, which recomputes it with more right context. Emitted samples add up to exactly ``F * hop``.

    Args:
        vocode: the vocoder function.
        hop_length: samples per frame.
        chunk_frames: frames emitted per chunk (16-32; 16 frames = 213 ms at 75 frames/s).
        left_context: earlier frames re-vocoded for context.
        lookahead: later frames required before a chunk is emitted (latency vs exactness).
        crossfade_frames: frames cross-faded at each seam.
    """

    def __init__(self, vocode: Vocode, hop_length: int, chunk_frames: int = 16, left_context: int = 16,
                 lookahead: int = 4, crossfade_frames: int = 2) -> None:
        if chunk_frames < 1 or min(left_context, lookahead, crossfade_frames) < 0:
            raise ValueError("need chunk_frames >= 1 and left_context, lookahead, crossfade_frames >= 0")
        self.vocode, self.hop = vocode, hop_length
        self.chunk, self.left, self.lookahead, self.crossfade = chunk_frames, left_context, lookahead, crossfade_frames
        self._frames: torch.Tensor | None = None  # (B, kept, n_mels), kept frames start at self._first
        self._first = 0  # absolute index of self._frames[:, 0]
        self._emitted = 0  # frames whose audio has been returned
        self._tail: torch.Tensor | None = None  # (B, crossfade * hop) pending audio of the next frames
        fade = torch.linspace(0, torch.pi, crossfade_frames * hop_length + 2)[1:-1]
        self._fade_in = 0.5 - 0.5 * torch.cos(fade)  # 0 -> 1, raised cosine

    @property
    def received(self) -> int:
        return self._first + (0 if self._frames is None else self._frames.shape[1])

    def push(self, frames: torch.Tensor) -> torch.Tensor:
        """Append frames ``(B, n, n_mels)``; returns the audio ready now, ``(B, samples)`` (possibly 0 samples)."""
        if frames.ndim != 3:
            raise ValueError(f"frames must be (batch, n, n_mels), got {tuple(frames.shape)}")
        self._frames = frames if self._frames is None else torch.cat([self._frames, frames], dim=1)
        out = [frames.new_zeros(frames.shape[0], 0)]
        while self.received - self._emitted >= self.chunk + self.lookahead + self.crossfade:
            out.append(self._emit(self._emitted + self.chunk, self._emitted + self.chunk + self.crossfade
                                  + self.lookahead))
        return torch.cat(out, dim=1)

    def flush(self) -> torch.Tensor:
        """The audio of every frame not yet returned (call once, after the last frame)."""
        if self._frames is None:
            return torch.zeros(0, 0)
        if self.received == self._emitted:
            return self._frames.new_zeros(self._frames.shape[0], 0)
        return self._emit(self.received, self.received)

    def _emit(self, end: int, window_end: int) -> torch.Tensor:
        """Vocode frames ``[emitted - left, window_end)``; return the audio of ``[emitted, end)``."""
        assert self._frames is not None
        start = max(self._first, self._emitted - self.left)
        audio = self.vocode(self._frames[:, start - self._first : window_end - self._first])
        keep_end = min(end + self.crossfade, window_end)
        segment = audio[:, (self._emitted - start) * self.hop : (keep_end - start) * self.hop]
        if self._tail is not None:
            n = self._tail.shape[1]
            fade = self._fade_in.to(segment)
            segment = torch.cat([self._tail * (1 - fade) + segment[:, :n] * fade, segment[:, n:]], dim=1)
        split = (end - self._emitted) * self.hop
        self._tail = segment[:, split:] if keep_end > end else None
        self._emitted = end
        drop = max(0, self._emitted - self.left - self._first)  # frames no later chunk will read
        self._frames, self._first = self._frames[:, drop:], self._first + drop
        return segment[:, :split]


def vocode_chunks(vocode: Vocode, log_mel: torch.Tensor, hop_length: int, chunk_frames: int = 16,
                  **options: int) -> Iterator[torch.Tensor]:
    """Stream a whole ``(B, F, n_mels)`` clip through :class:`StreamingVocoder` ``chunk_frames`` at a time."""
    stream = StreamingVocoder(vocode, hop_length, chunk_frames, **options)
    for begin in range(0, log_mel.shape[1], chunk_frames):
        piece = stream.push(log_mel[:, begin : begin + chunk_frames])
        if piece.shape[1]:
            yield piece
    yield stream.flush()
