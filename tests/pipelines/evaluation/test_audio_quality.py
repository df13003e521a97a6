"""Quality metrics on held-out speech: identity scores best, silence worst, shapes are checked."""

from __future__ import annotations

import pytest
import torch

from pipelines.evaluation.audio_quality import QualityReport, eval_clips, evaluate, format_table, silence


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    return [c[:36_000] for c in eval_clips(2, cache_dir=tmp_path_factory.mktemp("speech-cache"))]


def test_identity_beats_degraded_beats_silence(clips) -> None:
    torch.manual_seed(0)
    identity = evaluate(lambda c: c.clone(), clips)
    noisy = evaluate(lambda c: c + 0.05 * torch.randn_like(c), clips)
    quiet = evaluate(silence, clips)
    assert identity.mel_distance == 0.0 and identity.stoi > 0.99
    assert identity.mel_distance < noisy.mel_distance < quiet.mel_distance
    assert identity.stoi > noisy.stoi > quiet.stoi
    if identity.pesq is not None:  # the pesq package is optional at run time
        assert identity.pesq > 4.0 and noisy.pesq < identity.pesq


def test_eval_clips_are_normalised_to_minus_3_db(tmp_path) -> None:
    for clip in eval_clips(2, cache_dir=tmp_path):
        assert float(clip.abs().max()) == pytest.approx(10 ** (-3 / 20), rel=1e-4)


def test_wrong_length_reconstruction_is_an_error(clips) -> None:
    with pytest.raises(ValueError, match="shape"):
        evaluate(lambda c: c[:-10], clips)


def test_table_marks_missing_pesq() -> None:
    table = format_table({"a": QualityReport(1.0, 0.5, None, 3)})
    assert "| a | 1.000 | 0.500 | n/a |" in table
