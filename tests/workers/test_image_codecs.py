"""Image files <-> Image values: formats, modes, and the error matrix."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image as PILImage

from pipelines.base import InputError
from pipelines.media import Image
from workers.codecs import decode_image, decode_media, encode_image, encode_media


def _file(img: PILImage.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def _rgb(h: int = 12, w: int = 20) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims the given size, with an empty IDAT (a cheap decompression bomb)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def test_png_round_trip_is_exact() -> None:
    array = _rgb()
    image = decode_image(_file(PILImage.fromarray(array), "PNG"), "a.png")
    assert image.pixels.shape == (3, 12, 20) and image.pixels.dtype == torch.float32
    assert torch.equal((image.pixels * 255).round().to(torch.uint8).permute(1, 2, 0), torch.from_numpy(array))
    again = decode_image(encode_image(image), "b.png")
    assert torch.equal(again.pixels, image.pixels)
    assert encode_media(image)[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP"])
def test_lossy_formats_decode_close_to_the_source(fmt: str) -> None:
    array = np.full((16, 16, 3), (200, 40, 90), dtype=np.uint8)
    image = decode_media(_file(PILImage.fromarray(array), fmt, quality=95), f"x.{fmt}", "image")
    assert isinstance(image, Image)
    assert torch.allclose(image.pixels[:, 8, 8], torch.tensor([200, 40, 90]) / 255, atol=0.04)


def test_modes_are_converted_to_rgb() -> None:
    grey = decode_image(_file(PILImage.new("L", (5, 4), 128), "PNG"), "g.png").pixels
    assert grey.shape == (3, 4, 5) and torch.allclose(grey, torch.full_like(grey, 128 / 255))
    rgba = PILImage.new("RGBA", (4, 4), (255, 0, 0, 0))  # fully transparent -> white background
    assert torch.allclose(decode_image(_file(rgba, "PNG"), "t.png").pixels, torch.ones(3, 4, 4))
    palette = PILImage.new("RGB", (4, 4), (0, 0, 255)).convert("P")
    assert torch.allclose(decode_image(_file(palette, "PNG"), "p.png").pixels[:, 0, 0], torch.tensor([0.0, 0, 1]))
    deep = PILImage.fromarray(np.full((3, 3), 65535, dtype=np.uint16))
    assert torch.allclose(decode_image(_file(deep, "PNG"), "d.png").pixels, torch.ones(3, 3, 3))


@pytest.mark.parametrize(("data", "message"), [
    (b"", "empty"),
    (b"definitely not an image", "not a readable"),
    (_file(PILImage.fromarray(_rgb()), "PNG")[:60], "not a readable"),
    (_file(PILImage.new("RGB", (4, 4)), "GIF"), "GIF images are not supported"),
    (_png_header_only(200_000, 200_000), "too large|over the limit"),
    (_png_header_only(0, 10), "zero size|not a readable"),
])
def test_bad_images_raise_input_errors_naming_the_problem(data: bytes, message: str) -> None:
    with pytest.raises(InputError, match=message) as info:
        decode_image(data, "in.png")
    assert "in.png" in str(info.value)


def test_pixel_limit_is_configurable() -> None:
    data = _file(PILImage.fromarray(_rgb(20, 20)), "PNG")
    assert decode_media(data, "ok.png", "image", max_image_pixels=400).pixels.shape == (3, 20, 20)
    with pytest.raises(InputError, match="400 pixels is over the limit of 399"):
        decode_media(data, "big.png", "image", max_image_pixels=399)
