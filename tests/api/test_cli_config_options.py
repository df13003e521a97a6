"""Options built from config dataclasses: every train and eval command shows the dataclass defaults in --help,
and bad keys or values exit 2 naming them."""

from __future__ import annotations

import dataclasses
import importlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from api.cli import app
from api.cli.config_options import PREFIX, Opt, build_config, config_command, format_value
from pipelines.flow_omni.train import FlowOmniTrainConfig
from pipelines.karl.train import KARLTrainConfig, PerturbOptions

WIDE = {"COLUMNS": "1000", "TERMINAL_WIDTH": "1000"}
"""One option per help line, so each line can be read on its own."""


def _commands() -> list[tuple[str, str]]:
    root = typer.main.get_command(app)
    return [(group, name) for group in ("train", "eval") for name in root.get_command(None, group).list_commands(None)]


def _command(group: str, name: str):
    return typer.main.get_command(app).get_command(None, group).get_command(None, name)


def _shown_default(param, default) -> str | None:
    """What --help should print as ``[default: ...]`` for a field option with this dataclass default."""
    if default in (None, "") or default is dataclasses.MISSING:  # no default, or required
        return None
    if isinstance(default, bool):
        return (param.opts[0] if default else param.secondary_opts[0]).lstrip("-")
    return str(format_value(default))


@pytest.mark.parametrize(("group", "name"), _commands())
def test_help_shows_the_dataclass_defaults(group: str, name: str) -> None:
    command = _command(group, name)
    cls = _config_class(group, name)
    defaults = {f.name: f.default for f in dataclasses.fields(cls)}
    result = CliRunner().invoke(app, [group, name, "--help"], env=WIDE)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    fields = [p for p in command.params if p.name.startswith(PREFIX)]
    assert fields, f"{group} {name} has no option built from {cls.__name__}"
    for param in fields:
        line = next(text for text in lines if re.match(rf"[│\s*]*{re.escape(param.opts[0])}\s", text))
        shown = re.search(r"\[default: ([^\]]*)\]", line)
        expected = _shown_default(param, defaults[param.name.removeprefix(PREFIX)])
        assert (shown and shown.group(1)) == expected, f"{group} {name} {param.opts[0]}: {line.strip()}"
        assert param.help, f"{group} {name} {param.opts[0]} has no help text"
    assert "--set" in result.output and "--threads" in result.output


def _config_class(group: str, name: str) -> type:
    module = importlib.import_module(f"api.cli.{group}")
    info = next(c for c in module.app.registered_commands if c.name == name)
    return info.callback.config_class


def test_every_train_command_shares_the_run_options() -> None:
    for group, name in _commands():
        opts = {opt for param in _command(group, name).params for opt in param.opts}
        assert "--threads" in opts
        if group == "train" and name != "sd-decoder":
            assert {"-o", "--output", "--resume", "--progress"} <= opts, name


def test_later_sources_win_and_conversions_apply(tmp_path: Path) -> None:
    fields = {"steps": "", "perturb": Opt("perturbation", parse=PerturbOptions.parse)}
    file = tmp_path / "run.json"
    file.write_text(json.dumps({"steps": 5, "lr": 0.01, "perturb": {"alpha": 0.5, "beta": 0.2, "delta": 3}}))
    config = build_config(KARLTrainConfig, fields, {}, file, [])
    assert (config.steps, config.lr, config.perturb) == (5, 0.01, PerturbOptions(0.5, 0.2, 3))
    config = build_config(KARLTrainConfig, fields, {"steps": 7, "perturb": "alpha=1,delta=9"}, file,
                          ["lr=0.5", "init=none", "model_overrides={\"width\": 8}"])
    assert (config.steps, config.lr, config.perturb.delta, config.init) == (7, 0.5, 9, None)
    assert config.model_overrides == {"width": 8}
    assert build_config(KARLTrainConfig, fields, {}, None, ["steps=9"]).steps == 9
    weights = build_config(FlowOmniTrainConfig, {}, {}, None, ["task_weights=1,2,3,4"]).task_weights
    assert weights == (1.0, 2.0, 3.0, 4.0)


def test_a_preset_is_the_base_the_other_sources_override(tmp_path: Path) -> None:
    from pipelines.training.vae import PRESETS, VAETrainConfig

    file = tmp_path / "run.json"
    file.write_text(json.dumps({"lr": 0.01, "steps": 4}))
    config = build_config(VAETrainConfig, {"steps": None}, {"steps": 5}, file, ["seed=3"], PRESETS["sd"])
    assert config == VAETrainConfig.from_preset("sd", steps=5, lr=0.01, seed=3)


def test_presets_must_include_the_defaults_help_shows() -> None:
    from pipelines.training.vae import PRESETS, VAETrainConfig

    with pytest.raises(TypeError, match="must be one preset's"):
        config_command(VAETrainConfig, {"steps": None}, presets={"gdt": PRESETS["gdt"]})(lambda config: None)


@pytest.mark.parametrize(("items", "message"), [
    (["nope=1"], "unknown key 'nope'"),
    (["steps=ten"], "steps: bad value 'ten'"),
    (["halting_only=maybe"], "halting_only: bad value 'maybe'"),
    (["steps"], "unknown key 'steps'"),
])
def test_bad_set_items_are_named(items: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        build_config(KARLTrainConfig, {}, {}, None, items)


def test_a_config_file_is_checked_against_the_fields(tmp_path: Path) -> None:
    file = tmp_path / "run.json"
    file.write_text(json.dumps({"stepz": 5}))
    with pytest.raises(ValueError, match=r"unknown keys \['stepz'\]"):
        build_config(KARLTrainConfig, {}, {}, file, [])
    file.write_text(json.dumps({"steps": "ten"}))
    with pytest.raises(ValueError, match="steps: expected int, got 'ten'"):
        build_config(KARLTrainConfig, {}, {}, file, [])


@pytest.mark.parametrize(("args", "message"), [
    (["--set", "nope=1"], "nope"),
    (["--set", "steps=ten"], "steps"),
    (["--steps", "ten"], "--steps"),
    (["--no-such-option"], "--no-such-option"),
    (["--perturb", "gamma=1"], "gamma"),
    (["--init", "no-such-model"], "no-such-model"),
])
def test_caller_mistakes_exit_2_before_any_run(tmp_path: Path, args: list[str], message: str) -> None:
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", "karl", "-o", str(out), *args])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not out.exists()


def test_eval_config_errors_exit_2() -> None:
    result = CliRunner().invoke(app, ["eval", "binding", "--set", "judge=oracle"])
    assert result.exit_code == 2 and "unknown judge 'oracle'" in result.output
    result = CliRunner().invoke(app, ["eval", "pscore", "-m", "karl-tiny", "--alpha", "0.1"])
    assert result.exit_code == 2 and "--delta" in result.output  # no default: the paper's value is unreleased


def test_train_and_eval_modules_load_only_when_used() -> None:
    """``run`` and ``models`` must not pay for importing every trainer (seconds) just to build the app."""
    code = ("import sys; from api.cli import app; import typer; typer.main.get_command(app); "
            "print(sorted(m for m in ('api.cli.train', 'api.cli.eval', 'pipelines.sd.train') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
