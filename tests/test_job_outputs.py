"""Every job kind on every zoo model gives the outputs recorded before the one-folder-per-family restructuring."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.job_outputs import HASHES, JOBS, PINNED_ENV, run_pinned, unpinnable_reason


def test_every_job_gives_its_recorded_outputs(tmp_path: Path) -> None:
    if reason := unpinnable_reason():
        pytest.skip(f"the recorded hashes need the pinned x86-64 kernels: {reason}")
    expected = json.loads(HASHES.read_text())
    assert sorted(expected) == sorted(JOBS)
    assert run_pinned(tmp_path) == expected


def test_a_run_without_the_pins_refuses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the pins the run refuses, so a lost variable shows as itself, not as 7 changed hashes."""
    if reason := unpinnable_reason():
        pytest.skip(reason)
    monkeypatch.setitem(PINNED_ENV, "ATEN_CPU_CAPABILITY", "default")
    with pytest.raises(RuntimeError, match="DEFAULT kernels, not the pinned AVX2"):
        run_pinned(tmp_path)
