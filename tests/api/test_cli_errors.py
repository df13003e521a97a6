"""The exit-code rule: a caller's mistake exits 2 with one line, a failure while running propagates (exit 1)."""

from __future__ import annotations

import pytest
import typer

from api.cli.errors import USAGE, caller_errors
from pipelines.base import InputError


@pytest.mark.parametrize("error", [ValueError("steps must be >= 1"), InputError("unknown model 'x'"),
                                   FileNotFoundError("no checkpoint.pt in run"), FileExistsError("run is not empty")])
def test_caller_mistakes_exit_2_naming_the_problem(error: Exception, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(typer.Exit) as exit_info, caller_errors():
        raise error
    assert exit_info.value.exit_code == USAGE
    assert capsys.readouterr().err.strip() == f"error: {error}"


def test_failures_while_running_propagate() -> None:
    with pytest.raises(RuntimeError, match="CUDA out of memory"), caller_errors():
        raise RuntimeError("CUDA out of memory")
    with pytest.raises(KeyError), caller_errors():  # a lookup bug is no caller's mistake ...
        raise KeyError("weight")


def test_a_command_can_name_its_own_caller_errors(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(typer.Exit) as exit_info, caller_errors(KeyError):  # ... but a checkpoint's missing key is
        raise KeyError("missing ['head.out.weight']")
    assert exit_info.value.exit_code == USAGE
    assert capsys.readouterr().err.strip() == "error: missing ['head.out.weight']"
