"""``mediaforge convert xar``: EMA preferred, size inferred from shapes, foreign layouts refused."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from api.cli import app
from pipelines.xar.model import XAR

pytestmark = pytest.mark.usefixtures("one_thread")


def official_state(seed: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return XAR.from_preset("tiny").state_dict()


def convert(tmp_path, checkpoint: dict, *flags: str):
    torch.save(checkpoint, tmp_path / "ckpt.pth")
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["convert", "xar", str(tmp_path / "ckpt.pth"), "-o", str(out), *flags])
    return result, out


def test_prefers_ema_and_infers_the_size(tmp_path):
    raw, ema = official_state(0), official_state(1)
    result, out = convert(tmp_path, {"model": raw, "model_ema": ema, "epoch": 3})
    assert result.exit_code == 0, result.output
    model = XAR.from_pretrained(out)
    assert (model.config.width, model.config.encoder_depth, model.config.num_heads) == (128, 2, 4)
    assert (model.config.grid_size, model.config.entity_size, model.config.num_classes) == (8, 4, 40)
    assert torch.equal(model.z_proj.weight, ema["z_proj.weight"])


def test_no_ema_flag_takes_the_raw_weights(tmp_path):
    raw, ema = official_state(0), official_state(1)
    result, out = convert(tmp_path, {"model": raw, "model_ema": ema}, "--no-ema")
    assert result.exit_code == 0, result.output
    assert torch.equal(XAR.from_pretrained(out).z_proj.weight, raw["z_proj.weight"])


def test_a_different_mask_is_refused(tmp_path):
    state = official_state(0)
    state["mask"] = torch.zeros_like(state["mask"]).masked_fill(torch.ones_like(state["mask"]).triu(1) > 0,
                                                                 float("-inf"))  # token-causal, not cells
    result, _ = convert(tmp_path, {"model_ema": state})
    assert result.exit_code == 2
    assert "differs from the one computed" in result.output and "Traceback" not in result.output
