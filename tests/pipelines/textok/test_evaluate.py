"""TexTok's held-out report (``mediaforge eval textok``): pixel and semantic scores, the table and the JSON."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from api.cli import app
from pipelines.data.shapes import ShapesWorld
from pipelines.textok.evaluate import _objects_found


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


def test_models_compared_in_one_pass_score_as_alone():
    from pipelines.shapes_classifier.model import ShapesClassifier
    from pipelines.textok.evaluate import evaluate_textok, evaluate_textoks
    from pipelines.zoo import resolve_model
    from tokenizers_media.image.textok import TexTok

    torch.manual_seed(0)
    shipped = TexTok.from_pretrained(resolve_model("textok-tiny").path)
    fresh = TexTok.from_preset("tiny", text_encoder="learned", text_dim=32).eval()
    judge = ShapesClassifier.from_pretrained(resolve_model("shapes-classifier").path)
    together = evaluate_textoks([shipped, fresh], 8, judge)
    assert together == [evaluate_textok(shipped, 8, judge), evaluate_textok(fresh, 8, judge)]
    assert together[0].psnr > together[1].psnr
    with pytest.raises(ValueError, match="one image size"):
        evaluate_textoks([shipped, TexTok.from_preset("tiny", image_size=64, text_encoder="learned", text_dim=32)], 8)
