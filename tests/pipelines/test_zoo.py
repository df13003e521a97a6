"""Zoo lookups: a name resolves to ``<zoo dir>/<name>`` (the user's models dir first), never outside the zoo."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipelines.base import InputError
from pipelines.zoo import WEIGHTS_DIR, find_zoo_model, list_models, resolve_model


def _model_dir(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"model_class": "WavTokenizer"}))
    return path


def test_user_models_dir_wins_and_lookup_matches_the_listing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDIAFORGE_MODELS_DIR", str(tmp_path))
    mine = _model_dir(tmp_path / "wavtokenizer-tiny")  # shadows the shipped model of that name
    assert find_zoo_model("wavtokenizer-tiny").path == mine
    for listed in list_models():
        assert find_zoo_model(listed.name) == listed
    assert find_zoo_model("vocoder-tiny").path == WEIGHTS_DIR / "vocoder-tiny"


@pytest.mark.parametrize("name", ["", ".", "..", "../weights/vocoder-tiny", "a/b", "/etc", ".hidden"])
def test_names_that_are_not_plain_directory_names_are_never_zoo_models(name: str) -> None:
    assert find_zoo_model(name) is None


def test_resolve_takes_a_local_directory_and_names_the_zoo_when_unknown(tmp_path: Path) -> None:
    local = _model_dir(tmp_path / "my-model")
    assert resolve_model(str(local)).path == local.resolve()
    with pytest.raises(InputError, match=r"unknown model 'nope'.*vocoder-tiny"):
        resolve_model("nope")
