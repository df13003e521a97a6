"""``mediaforge train``: a tiny real run through the CLI, ``--resume`` continuing it, and the reused-directory rule."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from api.cli import app
from pipelines.training.checkpoint import Checkpoint
from pipelines.training.run_dir import CHECKPOINT_NAME, TRAIN_CONFIG_NAME

pytestmark = pytest.mark.usefixtures("one_thread")

MICRO = {"image_size": 32, "patch_size": 8, "width": 32, "encoder_depth": 1, "decoder_depth": 1, "num_heads": 2,
         "latent_pool": 8, "max_tokens": 8, "codebook_size": 64}
"""A KARL of a few thousand parameters: a step takes milliseconds."""

EXTRA_ARGS = {"xar": ["--vae", "unused-vae"]}
"""Required inputs of a command besides the run directory."""


def _train_commands() -> list[str]:
    group = typer.main.get_command(app).get_command(None, "train")
    return [name for name in group.list_commands(None) if name != "sd-decoder"]  # sd-decoder edits a pipeline


def test_tiny_karl_run_through_the_cli_then_resume(tmp_path: Path) -> None:
    run = tmp_path / "run"
    settings = tmp_path / "micro.json"
    settings.write_text(json.dumps({"model_overrides": MICRO, "checkpoint_every": 1, "sample_every": 100}))
    args = ["train", "karl", "--config", str(settings), "--batch-size", "2", "--token-step", "4", "--set",
            "warmup_steps=1", "--no-progress"]
    first = CliRunner().invoke(app, [*args, "-o", str(run), "--steps", "2"])
    assert first.exit_code == 0, first.output
    saved = json.loads((run / TRAIN_CONFIG_NAME).read_text())
    assert (saved["steps"], saved["batch_size"], saved["warmup_steps"], saved["model_overrides"]) == (2, 2, 1, MICRO)
    assert Checkpoint.load(run / CHECKPOINT_NAME).step == 2

    again = CliRunner().invoke(app, [*args, "-o", str(run), "--steps", "3"])
    assert again.exit_code == 2 and "--resume" in again.output
    assert Checkpoint.load(run / CHECKPOINT_NAME).step == 2  # untouched

    resumed = CliRunner().invoke(app, [*args, "--out", str(run), "--steps", "3", "--resume"])  # old spelling
    assert resumed.exit_code == 0, resumed.output
    assert Checkpoint.load(run / CHECKPOINT_NAME).step == 3
    assert json.loads((run / TRAIN_CONFIG_NAME).read_text())["steps"] == 3


@pytest.mark.parametrize("name", _train_commands())
def test_a_reused_directory_without_resume_exits_2(tmp_path: Path, name: str) -> None:
    (tmp_path / "notes.txt").write_text("an earlier run")
    result = CliRunner().invoke(app, ["train", name, "-o", str(tmp_path), *EXTRA_ARGS.get(name, [])])
    assert result.exit_code == 2, result.output
    assert "not empty" in result.output and "--resume" in result.output
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_resume_without_a_checkpoint_exits_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["train", "karl", "-o", str(tmp_path / "new"), "--resume", "--no-progress"])
    assert result.exit_code == 2 and "no checkpoint.pt" in result.output


@pytest.mark.parametrize("name", ["shapes-classifier", "speech-judge"])
def test_trainers_without_checkpoints_refuse_resume(tmp_path: Path, name: str) -> None:
    result = CliRunner().invoke(app, ["train", name, "-o", str(tmp_path / "new"), "--resume"])
    assert result.exit_code == 2 and "nothing to resume" in result.output


def test_the_output_directory_is_required() -> None:
    result = CliRunner().invoke(app, ["train", "karl", "--steps", "1"])
    assert result.exit_code == 2 and "--output" in result.output


def test_a_config_check_exits_2_before_the_run_directory_is_made(tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", "gdt", "-o", str(out), "--drop-shared", "1.5"])
    assert result.exit_code == 2 and "drop_shared is a probability" in result.output
    assert not out.exists()


def test_vae_preset_gives_the_presets_config_and_options_override_it(tmp_path: Path) -> None:
    from pipelines.training.run_dir import config_from_dict
    from pipelines.training.vae import VAETrainConfig

    run = tmp_path / "run"
    args = ["train", "vae", "--preset", "gdt", "-o", str(run), "--steps", "2", "--batch-size", "2", "--set",
            "kl_weight=0.001", "--no-progress"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    saved = config_from_dict(VAETrainConfig, json.loads((run / TRAIN_CONFIG_NAME).read_text()))
    assert saved == VAETrainConfig.from_preset("gdt", steps=2, batch_size=2, kl_weight=0.001)
    assert json.loads((run / "config.json").read_text())["latent_channels"] == 4  # gdt's, not xar's 16


def test_an_unknown_vae_preset_exits_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["train", "vae", "--preset", "xl", "-o", str(tmp_path / "run")])
    assert result.exit_code == 2 and "unknown preset" in result.output and "xar, gdt, sd" in result.output
    assert not (tmp_path / "run").exists()
