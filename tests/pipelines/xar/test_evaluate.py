"""``mediaforge eval xar``: XAREvalConfig holds the defaults, refuses bad knobs before a model loads, and a tiny
random xAR runs through the CLI end to end."""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from api.cli import app
from pipelines.data.shapes import NUM_CLASSES
from pipelines.training.vae import VAETrainConfig, build_vae
from pipelines.xar.evaluate import XAREvalConfig, evaluate_xar
from pipelines.xar.model import XAR

pytestmark = pytest.mark.usefixtures("one_thread")


def test_evaluate_xar_defaults_are_the_configs():
    params = inspect.signature(evaluate_xar).parameters
    fields = dataclasses.asdict(XAREvalConfig())
    assert {name: params[name].default for name in fields} == fields


@pytest.mark.parametrize(("overrides", "message"), [
    ({"sampler": "euler"}, "unknown sampler 'euler'"),
    ({"images_per_class": 0}, "images_per_class must be >= 1"),
    ({"num_inference_steps": 0}, "num_inference_steps must be >= 1"),
    ({"batch_size": -1}, "batch_size must be >= 1"),
])
def test_bad_knobs_are_refused(overrides, message):
    with pytest.raises(ValueError, match=message):
        XAREvalConfig(**overrides)


def test_the_cli_refuses_a_bad_knob_before_loading_the_model(tmp_path: Path):
    missing = tmp_path / "no-model"
    result = CliRunner().invoke(app, ["eval", "xar", "-m", str(missing), "--sampler", "euler"])
    assert result.exit_code == 2, result.output
    assert "unknown sampler 'euler'" in result.output and "Traceback" not in result.output


@pytest.fixture(scope="module")
def tiny_xar_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained tiny xAR with an untrained VAE of the ``xar`` preset in ``vae/``, as ``train xar`` saves it."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("models") / "xar"
    XAR.from_preset("tiny").save_pretrained(path)
    build_vae(VAETrainConfig.from_preset("xar")).save_pretrained(path / "vae")
    return path


def test_a_tiny_model_runs_through_the_cli(tiny_xar_dir: Path):
    args = ["eval", "xar", "-m", str(tiny_xar_dir), "--images-per-class", "1", "--steps", "1", "--batch-size", "20",
            "--sampler", "ode", "--threads", "1"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert f"generated images: {NUM_CLASSES};" in result.output
    rows = [line for line in result.output.splitlines() if line.startswith("| ") and "accuracy" not in line]
    assert len(rows) == NUM_CLASSES
    assert all(0.0 <= float(row.split("|")[2]) <= 1.0 for row in rows)
