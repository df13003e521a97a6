"""``mediaforge eval binding`` on the shipped sd-shapes-tiny: the table, the JSON and the ToMe weight options."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from api.cli import app


def test_binding_json_records_composite_weights(tmp_path):
    out = tmp_path / "binding.json"
    args = ["eval", "binding", "--prompts", "1", "--images-per-prompt", "1", "--steps", "2",
            "--methods", "plain,tome-merge-only", "--noun-weight", "0.48", "--attribute-weight", "0.52",
            "--tome-option", "token_step_size=100", "--json", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "| tome-merge-only |" in result.output
    record = json.loads(out.read_text())
    assert record["tome"]["noun_weight"] == 0.48 and record["tome"]["attribute_weight"] == 0.52
    assert record["tome"]["token_step_size"] == 100
    assert set(record["methods"]) == {"plain", "tome-merge-only"}
    assert all(m["images"] == 1 and 0 <= m["swap_rate"] <= 1 for m in record["methods"].values())
    assert "| swap rate |" in result.output


def test_binding_rejects_unknown_method():
    result = CliRunner().invoke(app, ["eval", "binding", "--methods", "plain,attend-and-excite"])
    assert result.exit_code != 0
    assert "unknown methods" in result.output


def test_binding_rejects_unknown_or_malformed_tome_options():
    for option, message in (("step=1", "KEY=VALUE with KEY one of"), ("token_step_size=1e", "not a JSON value")):
        result = CliRunner().invoke(app, ["eval", "binding", "--tome-option", option])
        assert result.exit_code != 0
        assert message in result.output
