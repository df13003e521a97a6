"""The codes baseline's bridge to waveforms and log-mel: a WavTokenizer's encoder and decoder.

Training turns the reference answers into codes with it; evaluation decodes generated codes and re-analyses them
into the same log-mel the judge reads, so both output kinds are scored on the same features.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from tokenizers_media.speech.mel import LogMel, MelSpec


@dataclass(frozen=True)
class CodecBridge:
    """How the codes baseline meets mel space: its codec's encoder and decoder (+ ``LogMel``)."""

    to_codes: Callable[[torch.Tensor], torch.Tensor]
    """Waveform (T,) -> codes (F,)."""
    to_mel: Callable[[torch.Tensor], torch.Tensor]
    """Codes (F,) -> log-mel (F', n_mels) of the decoded audio."""


def codec_bridge(codec_ref: str, spec: MelSpec) -> CodecBridge:
    """A zoo WavTokenizer (name or directory) as a :class:`CodecBridge` into ``spec``'s log-mel."""
    from pipelines.zoo import resolve_model
    from tokenizers_media.audio.wavtokenizer import WavTokenizer

    codec, log_mel = WavTokenizer.from_pretrained(resolve_model(codec_ref).path), LogMel(spec)

    @torch.inference_mode()
    def to_codes(wav: torch.Tensor) -> torch.Tensor:
        return codec.encode(wav[None])[0, 0]

    @torch.inference_mode()
    def to_mel(codes: torch.Tensor) -> torch.Tensor:
        return log_mel(codec.decode(codes.reshape(1, 1, -1)))[0]

    return CodecBridge(to_codes, to_mel)
