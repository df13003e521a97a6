"""Fixtures shared by the whole suite. The job service's fixtures live in ``tests/service_fixtures.py``."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

pytest_plugins = ["tests.service_fixtures"]


@pytest.fixture(scope="session")
def wavtokenizer_tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random tiny WavTokenizer with its codebook initialised by one train-mode pass, saved once per session."""
    from tokenizers_media.audio.wavtokenizer import WavTokenizer

    torch.manual_seed(0)
    model = WavTokenizer.from_preset("tiny")
    model.train()
    with torch.no_grad():
        model(torch.randn(2, 24000) * 0.1)
    return model.eval().save_pretrained(tmp_path_factory.mktemp("models") / "wavtokenizer-tiny")
