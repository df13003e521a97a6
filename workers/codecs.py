"""Media files <-> typed media values: the only place that parses or writes user files.

Every failure is an ``InputError`` that names the file and the problem, so the CLI and the service can
report it without a traceback.
"""

from __future__ import annotations

import io
import json
import struct

import numpy as np
import soundfile as sf
import torch
from safetensors import SafetensorError
from safetensors.torch import load, save

from pipelines.base import InputError
from pipelines.media import Audio, Media, Text, Tokens

DEFAULT_MAX_AUDIO_SECONDS = 600.0


def decode_audio(data: bytes, name: str, max_seconds: float = DEFAULT_MAX_AUDIO_SECONDS) -> Audio:
    """Any WAV/FLAC/OGG, any channel count -> mono float32 at the file's own rate (pipelines resample)."""
    if not data:
        raise InputError(f"{name}: the audio file is empty")
    try:
        array, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as err:
        raise InputError(f"{name}: not a readable audio file ({err})") from err
    if array.shape[0] == 0:
        raise InputError(f"{name}: the audio has no samples")
    seconds = array.shape[0] / rate
    if seconds > max_seconds:
        raise InputError(f"{name}: {seconds:.1f} s of audio is longer than the limit of {max_seconds:g} s")
    if not np.isfinite(array).all():
        raise InputError(f"{name}: the audio contains NaN or infinite samples")
    mono = torch.from_numpy(array).mean(dim=1)
    return Audio(samples=mono.clamp(-1.0, 1.0).contiguous(), sample_rate=int(rate))


def encode_audio(audio: Audio) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, audio.samples.detach().cpu().float().numpy(), audio.sample_rate, format="WAV", subtype="FLOAT")
    return buf.getvalue()


def decode_tokens(data: bytes, name: str) -> Tokens:
    if not data:
        raise InputError(f"{name}: the tokens file is empty")
    try:
        tensors = load(data)
        metadata = _safetensors_metadata(data)
    except (SafetensorError, ValueError, RuntimeError) as err:
        raise InputError(f"{name}: not a safetensors tokens file ({err})") from err
    return Tokens(tensors=tensors, metadata=metadata)


def _safetensors_metadata(data: bytes) -> dict[str, str]:
    (header_len,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + header_len])
    return dict(header.get("__metadata__", {}))


def encode_tokens(tokens: Tokens) -> bytes:
    tensors = {k: v.detach().cpu().contiguous() for k, v in tokens.tensors.items()}
    return save(tensors, metadata={k: str(v) for k, v in tokens.metadata.items()})


def decode_media(data: bytes, name: str, media_type: str, *,
                 max_audio_seconds: float = DEFAULT_MAX_AUDIO_SECONDS) -> Media:
    """Decode one input file's bytes as the media type a pipeline declares."""
    if media_type == "audio":
        return decode_audio(data, name, max_audio_seconds)
    if media_type == "tokens":
        return decode_tokens(data, name)
    if media_type == "text":
        try:
            return Text(data.decode("utf-8"))
        except UnicodeDecodeError as err:
            raise InputError(f"{name}: text input is not UTF-8 ({err})") from err
    raise InputError(f"{name}: unsupported input media type {media_type!r}")


def encode_media(media: Media) -> bytes:
    if isinstance(media, Audio):
        return encode_audio(media)
    if isinstance(media, Tokens):
        return encode_tokens(media)
    if isinstance(media, Text):
        return media.text.encode()
    raise TypeError(f"cannot encode {type(media).__name__}")


def output_file_name(output_name: str, media: Media) -> str:
    """``tokens`` -> ``tokens.safetensors``; ``audio`` -> ``audio.wav``; ``image_000`` -> ``image_000.png``."""
    suffix = {"Audio": ".wav", "Tokens": ".safetensors", "Image": ".png", "Text": ".txt"}[type(media).__name__]
    return output_name + suffix
