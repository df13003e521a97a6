"""espeak-ng speech corpus, synthetic tones and training crops: determinism, held-out split, sample rate."""

from __future__ import annotations

import pytest
import torch

from pipelines.data import speech
from pipelines.data.crops import GAIN_DB_RANGE, CropSampler, repeat_pad
from pipelines.data.speech import (
    HELD_OUT_VOICE,
    SAMPLE_RATE,
    TRAIN_VOICES,
    EspeakNotFoundError,
    build_corpus,
    make_sentences,
)
from pipelines.data.tones import synth_tone


def test_sentences_are_deterministic_and_splits_disjoint() -> None:
    train = make_sentences("train", 300, seed=1)
    assert train == make_sentences("train", 300, seed=1)
    assert train != make_sentences("train", 300, seed=2)
    assert len(set(train)) == 300
    held_out = set(make_sentences("eval", 40, seed=1)) | set(make_sentences("eval", 40, seed=2))
    assert held_out.isdisjoint(train)
    assert held_out.isdisjoint(make_sentences("train", 300, seed=2))


def test_held_out_voice_variant_is_unused_in_training() -> None:
    variant = HELD_OUT_VOICE.split("+")[1]
    assert all(v.split("+")[1] != variant for v in TRAIN_VOICES)


def test_bad_split_is_rejected() -> None:
    with pytest.raises(ValueError, match="split"):
        make_sentences("test", 3)


def test_corpus_is_24khz_deterministic_and_cached(tmp_path) -> None:
    first = build_corpus("train", 2, seed=5, cache_dir=tmp_path / "a")
    again = build_corpus("train", 2, seed=5, cache_dir=tmp_path / "b")
    assert first.sample_rate == SAMPLE_RATE
    assert first.voices == list(TRAIN_VOICES[:2])
    for clip, twin, text in zip(first.clips, again.clips, first.texts, strict=True):
        # espeak-ng speaks ~2.5 words/s at 130..190 wpm; a 24 kHz clip of a sentence is seconds long
        assert clip.dtype == torch.float32 and clip.ndim == 1
        assert 0.3 * len(text.split()) < len(clip) / SAMPLE_RATE < 2.0 * len(text.split())
        assert 0.05 < clip.abs().max() <= 1.0
        torch.testing.assert_close(clip, twin)
    assert len(list((tmp_path / "a").glob("*.pt"))) == 1
    cached = build_corpus("train", 2, seed=5, cache_dir=tmp_path / "a")
    torch.testing.assert_close(cached.clips[0], first.clips[0])
    held_out = build_corpus("eval", 1, seed=5, cache_dir=tmp_path / "a")
    assert held_out.voices == [HELD_OUT_VOICE]
    assert held_out.texts[0] not in first.texts


def test_missing_espeak_names_the_install_command(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(EspeakNotFoundError, match="apt-get install espeak-ng"):
        build_corpus("train", 1, cache_dir=tmp_path)
    with pytest.raises(EspeakNotFoundError):
        speech.synthesize("hello", TRAIN_VOICES[0])


def test_tones_are_finite_and_peak_normalised() -> None:
    gen = torch.Generator().manual_seed(0)
    for _ in range(12):
        tone = synth_tone(4000, gen)
        assert tone.shape == (4000,) and torch.isfinite(tone).all()
        assert tone.abs().max() == pytest.approx(1.0, abs=1e-5)


def test_repeat_pad_tiles_short_clips() -> None:
    clip = torch.arange(3.0)
    assert repeat_pad(clip, 7)[:7].tolist() == [0, 1, 2, 0, 1, 2, 0]
    with pytest.raises(ValueError):
        repeat_pad(torch.zeros(0), 4)


def test_crop_sampler_gain_shape_and_resumable_state() -> None:
    clips = [torch.sin(torch.arange(n) * 0.05) * 0.3 for n in (500, 3000, 9000)]
    sampler = CropSampler(clips, 2000, tone_prob=0.3, seed=4)
    batch = sampler.sample(16)
    assert batch.shape == (16, 2000)
    low, high = (10 ** (db / 20) for db in GAIN_DB_RANGE)
    peaks = batch.abs().amax(dim=1)
    assert (peaks <= high + 1e-5).all() and (peaks >= low * 0.5).all()
    state = sampler.state_dict()
    expected = sampler.sample(4)
    sampler.load_state_dict(state)
    torch.testing.assert_close(sampler.sample(4), expected)
    with pytest.raises(ValueError, match="tone_prob"):
        CropSampler(clips, 100, tone_prob=1.5)
