"""Griffin-Lim mel inversion: the training-free baseline every trained mel vocoder here must beat.

Spec flow_omni.md §4: pseudo-inverse of the mel filterbank (torchaudio ``InverseMelScale``, a least-squares
solve) then 32 Griffin-Lim iterations (torchaudio, momentum 0.99). Input is the natural-log magnitude mel of
:class:`tokenizers_media.speech.mel.LogMel`; output sits on the same "same"-padded grid as the trained vocoders:
F frames -> exactly ``F * hop`` samples, frame ``i`` centred on sample ``i * hop + hop / 2``.

Example::

    wav = griffin_lim(LogMel()(clip[None]))   # (1, F * 320)
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
import torchaudio.functional as AF
from torchaudio.transforms import InverseMelScale

from tokenizers_media.speech.mel import MelSpec, mel_floor_value


@functools.lru_cache(maxsize=4)
def _inverse_mel(spec: MelSpec) -> InverseMelScale:
    """Least-squares mel -> linear magnitude map, built once per front-end (same filterbank as ``LogMel``)."""
    return InverseMelScale(n_stft=spec.n_fft // 2 + 1, n_mels=spec.n_mels, sample_rate=spec.sample_rate,
                           f_min=spec.f_min, f_max=spec.f_max, norm="slaney", mel_scale="slaney")


@torch.inference_mode()
def griffin_lim(log_mel: torch.Tensor, spec: MelSpec = MelSpec(), n_iter: int = 32) -> torch.Tensor:
    """Log-mel ``(B, F, n_mels)`` -> waveform ``(B, F * hop)``; deterministic (zero initial phase)."""
    if log_mel.ndim != 3 or log_mel.shape[-1] != spec.n_mels or log_mel.shape[1] == 0:
        raise ValueError(f"log_mel must be (batch, frames >= 1, {spec.n_mels}), got {tuple(log_mel.shape)}")
    num_frames, hop = log_mel.shape[1], spec.hop_length
    # Clamp generated frames to the data range before exp (spec §8): below the floor is not real audio.
    mel = log_mel.float().clamp(min=mel_floor_value()).exp().transpose(1, 2)  # (B, n_mels, F)
    # The least-squares solve can go slightly negative between filters; a magnitude cannot.
    magnitude = _inverse_mel(spec)(mel).clamp(min=0)  # (B, n_fft / 2 + 1, F)
    # torchaudio's centred STFT puts frame i on sample i * hop; ours sits hop / 2 later, so the first hop / 2
    # output samples come before GL's first frame centre (left silent) and GL runs to F * hop - hop / 2.
    shift = hop // 2
    wav = AF.griffinlim(magnitude, torch.hann_window(spec.n_fft), spec.n_fft, hop, spec.n_fft, power=1.0,
                        n_iter=n_iter, momentum=0.99, length=num_frames * hop - shift, rand_init=False)
    return F.pad(wav, (shift, 0))
