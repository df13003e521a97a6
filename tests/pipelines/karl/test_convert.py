"""``mediaforge convert karl``: official .pth (EMA preferred, pickled args), sizes from shapes, strict keys."""

from __future__ import annotations

import argparse

import pytest
import torch
from typer.testing import CliRunner

from api.cli import app
from pipelines.karl.convert import infer_config
from tokenizers_media.image.karl_official import KARLOfficial

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = {"preset": "tiny", "num_heads": 1}  # the converter infers heads of 128 (one at width 64)


def official_state(seed: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return KARLOfficial.from_preset(TINY["preset"], num_heads=TINY["num_heads"]).state_dict()


def official_args(base: str = "vqgan") -> argparse.Namespace:
    return argparse.Namespace(model="karl_small", base_tokenizer=base, quantize_latent=True, factorize_latent=True,
                              input_size=32, lr=1e-4)


def convert(tmp_path, checkpoint: dict, *flags: str):
    torch.save(checkpoint, tmp_path / "ckpt.pth")
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["convert", "karl", str(tmp_path / "ckpt.pth"), "-o", str(out), *flags])
    return result, out


@pytest.mark.parametrize(("flags", "source"), [((), "ema"), (("--no-ema",), "model")])
def test_converts_the_chosen_weights(tmp_path, flags: tuple[str, ...], source: str) -> None:
    states = {"model": official_state(0), "ema": official_state(1)}
    result, out = convert(tmp_path, {**states, "epoch": 3, "args": official_args(), "optimizer": {}}, *flags)
    assert result.exit_code == 0, result.output
    model = KARLOfficial.from_pretrained(out)
    assert model.config == KARLOfficial.preset_config("tiny").replace(num_heads=1)
    loaded = model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in states[source].items())
    assert model.encode(torch.rand(1, 3, 32, 32)).mask.shape == (1, 16)


def test_training_only_keys_are_dropped_and_others_named(tmp_path) -> None:
    state = official_state(0) | {"gan_losses.0.net.weight": torch.zeros(2)}
    result, _ = convert(tmp_path, {"ema": state, "args": official_args()})
    assert result.exit_code == 0, result.output
    result, _ = convert(tmp_path, {"ema": state | {"extra.weight": torch.zeros(2)}, "args": official_args()})
    assert result.exit_code == 1 and "unexpected ['extra.weight']" in result.output
    state.pop("decoder_embed.bias")
    result, _ = convert(tmp_path, {"ema": state, "args": official_args()})
    assert result.exit_code == 1 and "missing ['decoder_embed.bias']" in result.output


def test_base_in_args_must_match_the_tensors(tmp_path) -> None:
    result, _ = convert(tmp_path, {"ema": official_state(0), "args": official_args("vae")})
    assert result.exit_code == 1 and "'vae'" in result.output


@pytest.mark.parametrize("preset", ["paper-small", "paper-small-vae"])
def test_paper_layouts_give_the_presets(preset: str) -> None:
    with torch.device("meta"):
        state = KARLOfficial.from_preset(preset).state_dict()
    assert infer_config(state) == KARLOfficial.preset_config(preset)
