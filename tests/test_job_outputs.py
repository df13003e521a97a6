"""Every job kind on every zoo model gives the outputs recorded before the one-folder-per-family restructuring."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.job_outputs import HASHES, JOBS, run_all


def test_every_job_gives_its_recorded_outputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MEDIAFORGE_MODELS_DIR", raising=False)  # the service fixtures' zoo has a random wavtokenizer
    expected = json.loads(HASHES.read_text())
    assert sorted(expected) == sorted(JOBS)
    assert run_all(tmp_path) == expected
