"""xAR-B golden vectors: recipe weights -> official-style .pth -> ``mediaforge convert xar`` -> velocity."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from api.cli import app
from pipelines.xar.model import XAR
from tests.pipelines.xar.golden_recipe import GOLDEN, LAYOUT, write_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> XAR:
    tmp = tmp_path_factory.mktemp("xar_b")
    write_checkpoint(tmp / "xar_b.pth", seed=1234)
    result = CliRunner().invoke(app, ["convert", "xar", str(tmp / "xar_b.pth"), "-o", str(tmp / "model")])
    assert result.exit_code == 0, result.output
    return XAR.from_pretrained(tmp / "model")


@pytest.mark.slow
def test_converted_layout_is_the_official_one(converted):
    layout = json.loads(LAYOUT.read_text())
    state = converted.state_dict()
    assert {k: list(v.shape) for k, v in state.items()} == layout
    assert converted.config == XAR.preset_config("paper-B")


@pytest.mark.slow
def test_golden_velocity(converted):
    x_t = torch.from_numpy(np.load(GOLDEN / "x_t_seed1234.npy"))
    t_rows = torch.from_numpy(np.load(GOLDEN / "t_seed1234.npy"))  # row = cell * B + image
    labels = torch.from_numpy(np.load(GOLDEN / "labels_seed1234.npy")).long()
    expected = torch.from_numpy(np.load(GOLDEN / "velocity_seed1234.npy"))
    t = t_rows.reshape(converted.layout.num_entities, x_t.shape[0]).T  # (B, E)
    with torch.inference_mode():
        velocity = converted.velocity(x_t, t, labels)
    assert (velocity - expected).abs().max().item() < 1e-4
