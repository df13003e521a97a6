"""Media files <-> typed media values: the only place that parses or writes user files.

Every failure is an ``InputError`` that names the file and the problem, so the CLI and the service can
report it without a traceback.
"""

from __future__ import annotations

import io
import json
import struct
import warnings

import numpy as np
import soundfile as sf
import torch
from PIL import Image as PILImage
from PIL import ImageOps, UnidentifiedImageError
from safetensors import SafetensorError
from safetensors.torch import load, save

from pipelines.base import InputError
from pipelines.media import Audio, Image, Media, Text, Tokens

DEFAULT_MAX_AUDIO_SECONDS = 600.0
DEFAULT_MAX_IMAGE_PIXELS = 64_000_000
IMAGE_FORMATS = ("PNG", "JPEG", "WEBP")


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


def decode_image(data: bytes, name: str, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> Image:
    """PNG/JPEG/WebP of any size and mode -> RGB float (3, H, W) in [0, 1] (pipelines resize).

    Transparent images are composited over white; EXIF orientation is applied. The pixel limit is checked
    from the header before decoding, and PIL's decompression-bomb guard is turned into an error as well.
    """
    if not data:
        raise InputError(f"{name}: the image file is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", PILImage.DecompressionBombWarning)
            img = PILImage.open(io.BytesIO(data))
            if img.format not in IMAGE_FORMATS:
                raise InputError(f"{name}: {img.format} images are not supported; use one of {IMAGE_FORMATS}")
            width, height = img.size
            if width == 0 or height == 0:
                raise InputError(f"{name}: the image has zero size ({width}x{height})")
            if width * height > max_pixels:
                raise InputError(f"{name}: {width}x{height} = {width * height} pixels is over the limit of "
                                 f"{max_pixels}")
            img.load()
    except (PILImage.DecompressionBombError, PILImage.DecompressionBombWarning) as err:
        raise InputError(f"{name}: the image is too large to decode safely ({err})") from err
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        if isinstance(err, InputError):
            raise
        raise InputError(f"{name}: not a readable PNG/JPEG/WebP image ({err})") from err
    return Image(pixels=_to_rgb_tensor(ImageOps.exif_transpose(img)))


def _to_rgb_tensor(img: PILImage.Image) -> torch.Tensor:
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):  # high bit depth grey: scale by the format's range
        grey = np.asarray(img, dtype=np.float32) / (65535.0 if img.mode.startswith("I") else 1.0)
        array = np.repeat(np.clip(grey, 0.0, 1.0)[:, :, None], 3, axis=2)
    else:
        if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
            img = PILImage.alpha_composite(PILImage.new("RGBA", img.size, "white"), img.convert("RGBA"))
        array = np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))


def encode_image(image: Image) -> bytes:
    """(3, H, W) float in [0, 1] -> 8-bit RGB PNG."""
    pixels = (image.pixels.detach().cpu().float().clamp(0, 1) * 255 + 0.5).to(torch.uint8)
    buf = io.BytesIO()
    PILImage.fromarray(pixels.permute(1, 2, 0).numpy()).save(buf, format="PNG")
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
    return _canonical_header(save(tensors, metadata={k: str(v) for k, v in tokens.metadata.items()}))


def _canonical_header(data: bytes) -> bytes:
    """Rewrite the safetensors JSON header with sorted keys: ``save`` orders metadata by a hash map, so the same
    tokens would give different bytes (and different content-addressed artifacts) on every call."""
    (header_len,) = struct.unpack("<Q", data[:8])
    header = json.dumps(json.loads(data[8 : 8 + header_len]), sort_keys=True, separators=(",", ":")).encode()
    header += b" " * (-len(header) % 8)  # the format pads the header to 8-byte alignment
    return struct.pack("<Q", len(header)) + header + data[8 + header_len :]


def decode_media(data: bytes, name: str, media_type: str, *,
                 max_audio_seconds: float = DEFAULT_MAX_AUDIO_SECONDS,
                 max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> Media:
    """Decode one input file's bytes as the media type a pipeline declares."""
    if media_type == "audio":
        return decode_audio(data, name, max_audio_seconds)
    if media_type == "image":
        return decode_image(data, name, max_image_pixels)
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
    if isinstance(media, Image):
        return encode_image(media)
    if isinstance(media, Tokens):
        return encode_tokens(media)
    if isinstance(media, Text):
        return media.text.encode()
    raise TypeError(f"cannot encode {type(media).__name__}")


def output_file_name(output_name: str, media: Media) -> str:
    """``tokens`` -> ``tokens.safetensors``; ``audio`` -> ``audio.wav``; ``image_000`` -> ``image_000.png``."""
    suffix = {"Audio": ".wav", "Tokens": ".safetensors", "Image": ".png", "Text": ".txt"}[type(media).__name__]
    return output_name + suffix
