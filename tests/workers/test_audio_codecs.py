"""Audio and tokens file decoding: every bad input is an InputError that names the problem."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf
import torch

from pipelines.base import InputError
from pipelines.media import Tokens
from workers.codecs import decode_audio, decode_media, decode_tokens, encode_media


def wav_bytes(array: np.ndarray, rate: int, subtype: str = "FLOAT") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, array, rate, format="WAV", subtype=subtype)
    return buf.getvalue()


def test_stereo_is_mixed_to_mono_at_the_file_rate():
    left = np.linspace(-0.5, 0.5, 800, dtype=np.float32)
    audio = decode_audio(wav_bytes(np.stack([left, -left], axis=1), 16000), "stereo.wav")
    assert audio.sample_rate == 16000 and audio.samples.shape == (800,)
    assert torch.allclose(audio.samples, torch.zeros(800), atol=1e-6)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"this is not a wav file at all", "not a readable audio file"),
        (wav_bytes(np.zeros((0, 1), np.float32), 24000), "no samples"),
        (wav_bytes(np.array([0.0, np.nan, 0.1], np.float32), 24000), "NaN"),
        (wav_bytes(np.zeros(24000 * 3, np.float32), 24000), "longer than the limit"),
    ],
)
def test_bad_audio_is_named(data, message):
    with pytest.raises(InputError, match=message):
        decode_audio(data, "clip.wav", max_seconds=2.0)


def test_tokens_round_trip_keeps_tensors_and_metadata():
    tokens = Tokens({"codes": torch.arange(6).reshape(1, 1, 6)}, {"model": "m", "sample_rate": "24000"})
    back = decode_media(encode_media(tokens), "t.safetensors", "tokens")
    assert torch.equal(back.tensors["codes"], tokens.tensors["codes"]) and back.metadata == tokens.metadata


def test_bad_tokens_file_is_named():
    with pytest.raises(InputError, match="not a safetensors tokens file"):
        decode_tokens(b"\x00" * 32, "x.safetensors")
    with pytest.raises(InputError, match="empty"):
        decode_tokens(b"", "x.safetensors")
