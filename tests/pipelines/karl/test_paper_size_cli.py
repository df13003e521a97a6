"""A paper-size KARL checkpoint through the CLI, and the input convention images of other sizes go through.

The checkpoint is the golden recipe (seed 1234) in the official layout and the official ``save_model`` format
(``model`` / ``ema`` + a pickled ``argparse.Namespace``); ``mediaforge convert karl`` turns it into a model
directory and ``mediaforge run`` serves it: the golden image must give the official tokens and reconstruction,
and a non-square RGBA and a grayscale image (neither 256 px) what the Python API gives on the job's own input.

The official evaluation transform is torchvision's ``Resize(256, BICUBIC)``, ``CenterCrop(256)``,
``ToTensor()`` on a PIL image (tests/data/karl_golden/README.md); torchvision itself is the oracle here.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image as PILImage
from safetensors.torch import load_file
from typer.testing import CliRunner

from api.cli import app
from pipelines.image_resize import resize_and_center_crop
from tests.tokenizers_media.image.karl_recipe import HALTING_BIAS, recipe_state_dict
from tests.tokenizers_media.image.test_karl_official import GOLDEN, REFERENCE
from tokenizers_media.image.karl_official import KARLOfficial
from workers.codecs import decode_image

pytestmark = pytest.mark.usefixtures("one_thread")

TAG = "vqgan_seed1234_T256_eps0.05"
"""The golden case the CLI is checked on (T=256, eps=0.05)."""
JOB_DEFAULTS = {"target_error": 0.05, "max_tokens": 256, "halt_threshold": 0.75}
"""What ``image.tokenize`` uses on this model when a param is not given."""
SIZES = [(300, 200), (200, 300), (335, 200), (256, 259), (257, 256), (1024, 683), (128, 96), (256, 256)]
"""(width, height): landscape and portrait, an odd crop margin (round half to even), a long side the
truncation shortens, a side already 256, an up-scale and the identity."""


def official_transform(image: PILImage.Image) -> torch.Tensor:
    """What the official evaluation code feeds the model for an RGB PIL image: (3, 256, 256) in [0, 1]."""
    transforms = pytest.importorskip("torchvision.transforms")
    return transforms.Compose([transforms.Resize(256, interpolation=transforms.InterpolationMode.BICUBIC,
                                                 antialias=True),
                               transforms.CenterCrop(256), transforms.ToTensor()])(image)


def photo(width: int, height: int, seed: int = 0) -> np.ndarray:
    """(H, W, 3) uint8: gradients, a sine and noise, so that every resize filter tap matters."""
    yy, xx = np.mgrid[0:height, 0:width]
    smooth = np.stack([xx / width * 255, yy / height * 255, 127 + 100 * np.sin(xx / 7 + yy / 11)], axis=-1)
    noise = np.random.default_rng(seed).normal(0, 20, smooth.shape)
    return np.clip(smooth + noise, 0, 255).astype(np.uint8)


@pytest.mark.parametrize(("width", "height"), SIZES)
def test_resize_matches_the_official_transform(width: int, height: int) -> None:
    pixels = photo(width, height)
    ours = resize_and_center_crop(torch.from_numpy(pixels).permute(2, 0, 1) / 255, 256)
    assert torch.equal(ours, official_transform(PILImage.fromarray(pixels)))


@dataclass
class Converted:
    """The converted model directory and the recipe tensors it was converted from."""

    directory: Path
    state: dict[str, torch.Tensor]


def invoke(*args: str) -> list[Path]:
    """Run the CLI in this process; the paths it printed (one per written file)."""
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return [Path(line) for line in result.stdout.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> Converted:
    """The recipe in the official layout (the released key order), saved as the official training
    code saves it, then converted by ``mediaforge convert karl`` (the 1.1 GB ``.pth`` is deleted after)."""
    reference = REFERENCE / "karl_small_vqgan_state_dict.json"
    layout = {k: tuple(v) for k, v in json.loads(reference.read_text()).items()}
    state = recipe_state_dict(layout, 1234, HALTING_BIAS["vqgan"])
    root = tmp_path_factory.mktemp("karl-paper")
    args = argparse.Namespace(model="karl_small", base_tokenizer="vqgan", quantize_latent=True, factorize_latent=True,
                              input_size=256, lr=1e-4)
    torch.save({"model": state, "ema": state, "epoch": 0, "args": args, "optimizer": {}}, root / "karl_small.pth")
    invoke("convert", "karl", root / "karl_small.pth", "-o", root / "karl-small")
    (root / "karl_small.pth").unlink()
    return Converted(root / "karl-small", state)


def write_png(path: Path, pixels: np.ndarray, mode: str | None = None) -> Path:
    image = PILImage.fromarray(pixels)
    (image.convert(mode) if mode else image).save(path)
    return path


@pytest.mark.slow
def test_the_converted_checkpoint_gives_the_official_tokens_through_the_cli(converted: Converted, tmp_path) -> None:
    """Full size: the golden image through ``image.tokenize`` / ``image.detokenize`` (about 15 s on 1 thread, after the
    module's 20 s to draw, save and convert the checkpoint)."""
    config = json.loads((converted.directory / "config.json").read_text())
    assert config.pop("model_class") == "KARLOfficial"
    assert KARLOfficial.config_class.from_dict(config) == KARLOfficial.preset_config("paper-small")
    weights = load_file(converted.directory / "model.safetensors")
    assert weights.keys() == converted.state.keys()
    assert all(torch.equal(converted.state[k], v) for k, v in weights.items())
    golden = np.load(GOLDEN / "input.npy")[0]
    png = write_png(tmp_path / "input.png", np.round(golden * 255).astype(np.uint8).transpose(1, 2, 0))
    (tokens_path,) = invoke("run", "image.tokenize", "--model", converted.directory, "-p", "target_error=0.05",
                            "-p", "max_tokens=256", png, "-o", tmp_path / "tok")
    tokens = load_file(tokens_path)
    active = torch.from_numpy(np.load(GOLDEN / f"active_{TAG}.npy"))
    assert torch.equal(tokens["mask"], active)
    assert torch.equal(tokens["codes"][active], torch.from_numpy(np.load(GOLDEN / f"codes_{TAG}.npy"))[active])
    (image_path,) = invoke("run", "image.detokenize", "--model", converted.directory, tokens_path,
                           "-o", tmp_path / "img")
    with PILImage.open(image_path) as png_image:
        image = torch.from_numpy(np.array(png_image.convert("RGB"))).permute(2, 0, 1).float()
    recon = torch.from_numpy(np.load(GOLDEN / f"recon_{TAG}.npy"))[0]
    assert (image - torch.floor(recon.clamp(0, 1) * 255 + 0.5)).abs().max() <= 2


@pytest.mark.slow
def test_non_square_rgba_and_grayscale_images_through_the_cli(converted: Converted, tmp_path) -> None:
    """Full size: a 300 x 200 RGBA image (half transparent) and a 200 x 333 grayscale one are tokenized as the
    Python API tokenizes the job's input, with the job's params; the RGBA tokens decode to a 256 x 256 image
    (about 25 s on 1 thread)."""
    rgba = np.dstack([photo(300, 200, seed=1), np.tile(np.linspace(0, 255, 300, dtype=np.uint8), (200, 1))])
    inputs = {"rgba": (write_png(tmp_path / "rgba.png", rgba), {"target_error": 0.02, "max_tokens": 128}),
              "grey": (write_png(tmp_path / "grey.png", photo(200, 333, seed=2), "L"), {"halt_threshold": 0.6})}
    with torch.device("meta"):
        model = KARLOfficial.from_preset("paper-small")
    model.load_state_dict(converted.state, strict=True, assign=True)
    model.eval()
    written = {}
    for name, (png, params) in inputs.items():
        flags = [arg for key, value in params.items() for arg in ("-p", f"{key}={value}")]
        (written[name],) = invoke("run", "image.tokenize", "--model", converted.directory, *flags, png,
                                  "-o", tmp_path / name)
        tokens = load_file(written[name])
        pixels = decode_image(png.read_bytes(), png.name).pixels
        expected = model.encode(resize_and_center_crop(pixels, 256)[None], **(JOB_DEFAULTS | params))
        assert torch.equal(tokens["mask"], expected.mask) and torch.equal(tokens["codes"], expected.codes)
        assert 0 < int(expected.mask.sum()) < expected.mask.numel()
    (image_path,) = invoke("run", "image.detokenize", "--model", converted.directory, written["rgba"],
                           "-o", tmp_path / "rgba-image")
    with PILImage.open(image_path) as image:
        assert image.size == (256, 256) and image.mode == "RGB"
