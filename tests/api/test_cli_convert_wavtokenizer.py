"""``mediaforge convert wavtokenizer``: writes a loadable model dir; bad checkpoints exit 2 with no traceback."""

from __future__ import annotations

import torch
from typer.testing import CliRunner

from api.cli import app
from tokenizers_media.audio.wavtokenizer import WavTokenizer
from tokenizers_media.modeling import read_model_class


def test_convert_command_writes_a_model_dir(tmp_path):
    state = WavTokenizer.from_preset("tiny").state_dict()
    torch.save({"state_dict": state}, tmp_path / "model.ckpt")
    result = CliRunner().invoke(app, ["convert", "wavtokenizer", str(tmp_path / "model.ckpt"), "-o",
                                      str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert read_model_class(tmp_path / "out") == "WavTokenizer"


def test_convert_command_names_the_bad_key(tmp_path):
    state = dict(WavTokenizer.from_preset("tiny").state_dict())
    del state["head.out.weight"]
    torch.save(state, tmp_path / "bad.pt")
    result = CliRunner().invoke(app, ["convert", "wavtokenizer", str(tmp_path / "bad.pt"), "-o", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "head.out.weight" in result.output and "Traceback" not in result.output
