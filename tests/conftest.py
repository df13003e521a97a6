"""Fixtures shared by the whole suite. The job service's fixtures live in ``tests/service_fixtures.py``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

pytest_plugins = ["tests.service_fixtures"]


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """One intra-op thread for a module of tiny models (``pytestmark = pytest.mark.usefixtures("one_thread")``):
    on the shared 2-core machine two threads fight over the cores and small ops run up to 20x slower. Module
    scope, so the module's own module-scoped fixtures (models built once) run on one thread too."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


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
