"""``mediaforge convert karl``: official .pth (EMA preferred, pickled args), sizes from shapes and args, strict
keys."""

from __future__ import annotations

import argparse
import pathlib
import re

import pytest
import torch
from typer.testing import CliRunner

from api.cli import app
from pipelines.karl.convert import MODEL_HEADS, convert_checkpoint, infer_config
from tokenizers_media.image.karl_official import KARLOfficial

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = {"preset": "tiny", "num_heads": MODEL_HEADS["karl_small"]}  # args.model is karl_small: its 8 heads


def official_state(seed: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return KARLOfficial.from_preset(TINY["preset"], num_heads=TINY["num_heads"]).state_dict()


def official_args(base: str = "vqgan", input_size: int = 32) -> argparse.Namespace:
    return argparse.Namespace(model="karl_small", base_tokenizer=base, quantize_latent=True, factorize_latent=True,
                              input_size=input_size, lr=1e-4)


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
    assert model.config == KARLOfficial.preset_config("tiny").replace(num_heads=TINY["num_heads"])
    loaded = model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in states[source].items())
    assert model.encode(torch.rand(1, 3, 32, 32)).mask.shape == (1, 16)


def test_training_only_keys_are_dropped_and_others_named(tmp_path) -> None:
    state = official_state(0) | {"gan_losses.0.net.weight": torch.zeros(2)}
    result, _ = convert(tmp_path, {"ema": state, "args": official_args()})
    assert result.exit_code == 0, result.output
    result, _ = convert(tmp_path, {"ema": state | {"extra.weight": torch.zeros(2)}, "args": official_args()})
    assert result.exit_code == 2 and "unexpected ['extra.weight']" in result.output
    state.pop("decoder_embed.bias")
    result, _ = convert(tmp_path, {"ema": state, "args": official_args()})
    assert result.exit_code == 2 and "missing ['decoder_embed.bias']" in result.output


def test_base_in_args_must_match_the_tensors(tmp_path) -> None:
    result, _ = convert(tmp_path, {"ema": official_state(0), "args": official_args("vae")})
    assert result.exit_code == 2 and "'vae'" in result.output


@pytest.mark.parametrize(("preset", "base"), [("paper-small", "vqgan"), ("paper-small-vae", "vae")])
def test_paper_layouts_give_the_presets(preset: str, base: str) -> None:
    with torch.device("meta"):
        state = KARLOfficial.from_preset(preset).state_dict()
    assert infer_config(state, official_args(base, input_size=256)) == KARLOfficial.preset_config(preset)


def test_image_side_comes_from_args() -> None:
    state = official_state(0)
    assert infer_config(state, official_args(input_size=64)).image_size == 64
    assert infer_config(state, official_args(input_size=32)).grid == 2


@pytest.mark.parametrize(("drop", "named"), [("input_size", "args.input_size (the image side)"),
                                             ("model", "args.model (the official model")])
def test_sizes_missing_from_args_are_named(drop: str, named: str) -> None:
    args = official_args()
    delattr(args, drop)
    with pytest.raises(ValueError, match=re.escape(named)) as err:
        infer_config(official_state(0), args)
    assert ("input_size" in str(err.value)) == (drop == "input_size")


def test_a_checkpoint_without_args_is_refused_naming_both(tmp_path) -> None:
    torch.save({"ema": official_state(0)}, tmp_path / "ckpt.pth")
    with pytest.raises(ValueError, match="no 'args' entry") as err:
        convert_checkpoint(tmp_path / "ckpt.pth", tmp_path / "out")
    assert "args.input_size" in str(err.value) and "args.model" in str(err.value)
    assert not (tmp_path / "out").exists()


def test_an_unknown_model_name_is_refused() -> None:
    args = official_args()
    args.model = "karl_huge"
    with pytest.raises(ValueError, match=r"args.model is 'karl_huge'.*known: \['karl_small'\]"):
        infer_config(official_state(0), args)


def test_a_width_the_heads_do_not_divide_is_refused() -> None:
    torch.manual_seed(0)
    state = KARLOfficial.from_preset("tiny", width=68, num_heads=4).state_dict()
    with pytest.raises(ValueError, match="width 68 .* 8 heads of 'karl_small'"):
        infer_config(state, official_args())


def test_pickled_objects_other_than_the_args_namespace_are_refused_by_name(tmp_path) -> None:
    args = official_args()
    args.output_dir = pathlib.PosixPath("/runs/karl")  # not unpickled: it could be any class, running any code
    result, out = convert(tmp_path, {"ema": official_state(0), "args": args})
    assert result.exit_code == 2 and "pathlib.PosixPath" in result.output and "argparse.Namespace" in result.output
    assert not out.exists()


def test_a_truncated_checkpoint_is_a_caller_error(tmp_path) -> None:
    torch.save({"ema": official_state(0), "args": official_args()}, tmp_path / "ckpt.pth")
    (tmp_path / "cut.pth").write_bytes((tmp_path / "ckpt.pth").read_bytes()[:1000])
    result = CliRunner().invoke(app, ["convert", "karl", str(tmp_path / "cut.pth"), "-o", str(tmp_path / "out")])
    assert result.exit_code == 2 and "not a readable torch checkpoint" in result.output
