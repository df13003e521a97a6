"""TexTok's held-out report (``mediaforge eval textok``): pixel and semantic scores, the table and the JSON."""

from __future__ import annotations

import json

import torch
from typer.testing import CliRunner

from api.cli import app
from pipelines.data.shapes import ShapesWorld
from pipelines.textok_eval import _objects_found


def test_object_judge_finds_real_objects_and_not_a_blank():
    batch = ShapesWorld(32, min_objects=1, max_objects=4).batch("eval", 0, 16)
    assert _objects_found(batch.images, batch).float().mean() > 0.8
    assert not _objects_found(torch.full_like(batch.images, 0.5), batch).any()


def test_cli_compares_models_with_pixel_and_semantic_scores(tmp_path):
    out = tmp_path / "textok.json"
    result = CliRunner().invoke(app, ["eval", "textok", "-m", "textok-tiny", "--images", "16", "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "| textok-tiny | 32 | kl | yes |" in result.output and "proxy rFID" in result.output
    record = json.loads(out.read_text())["textok-tiny"]
    assert record["eval_images"] == 16 and record["psnr"] > 15 and record["proxy_rfid"] >= 0
    assert 0 <= record["object_recall"] <= 1 and record["object_recall_real"] > 0.8


def test_cli_rejects_a_model_that_is_not_textok():
    result = CliRunner().invoke(app, ["eval", "textok", "-m", "karl-tiny", "--images", "4"])
    assert result.exit_code != 0
    assert "is a KARL, not a TexTok" in result.output
