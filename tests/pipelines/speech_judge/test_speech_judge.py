"""The intelligibility judge: phonemes, speech metrics, the phoneme CTC recogniser, its training and shipped weights."""

from __future__ import annotations

import pytest
import torch

from pipelines.data.dialogue import ANSWER_PITCH, ANSWER_SPEED, ANSWER_VOICE, statements
from pipelines.data.phonemes import PHONEME_INVENTORY, UNK, espeak_ipa, phoneme_ids, phonemize, split_ipa
from pipelines.data.speech import synthesize
from pipelines.evaluation.speech_metrics import dtw_mel_distance, duration_ratio, edit_distance, phone_error_rate
from pipelines.speech_judge.train import pad_batch
from pipelines.zoo import resolve_model
from tokenizers_media.modeling import load_pretrained
from tokenizers_media.speech.mel import LogMel
from tokenizers_media.speech.recognizer import PhonemeRecognizer

SENTENCES = ["the big red dog sees a small cat", "what is two plus three",
             "His grandmother measured twelve yellow candles by the harbour, and the pilot ordered a bag of rice."]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def log_mel() -> LogMel:
    return LogMel()


def _mel(log_mel: LogMel, text: str, voice: str = ANSWER_VOICE, speed: int = ANSWER_SPEED) -> torch.Tensor:
    return log_mel(synthesize(text, voice, speed, ANSWER_PITCH)[None])[0]


def test_phonemize_is_deterministic_and_covered_by_the_inventory() -> None:
    first = phonemize(SENTENCES)
    espeak_ipa.cache_clear()
    assert phonemize(SENTENCES) == first
    units = [u for sentence in first for u in sentence]
    assert set(units) <= set(PHONEME_INVENTORY)
    assert not {"ˈ", "ˌ", " "} & set("".join(units)) and "ː" not in units
    assert first[1] == ["w", "ʌ", "t", "ɪ", "z", "t", "uː", "p", "l", "ʌ", "s", "θ", "ɹ", "iː"]
    assert PHONEME_INVENTORY[0] == "<blank>" and len(set(PHONEME_INVENTORY)) == len(PHONEME_INVENTORY)


def test_split_ipa_merges_units_and_maps_unknown_symbols() -> None:
    assert split_ipa("tʃˈeɪn dʒˌɔɪ") == ["tʃ", "eɪ", "n", "dʒ", "ɔɪ"]
    units = split_ipa("qˈaː ʘ")
    assert units == ["q", "aː", "ʘ"]
    unk = PHONEME_INVENTORY.index(UNK)
    assert phoneme_ids(units) == [unk, PHONEME_INVENTORY.index("aː"), unk]


def test_edit_distance_and_corpus_per() -> None:
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance([], ["a", "b"]) == 2 and edit_distance(["a"], []) == 1
    assert edit_distance(["a", "b"], ["a", "b"]) == 0
    hyps, refs = [["a", "b", "c"], ["x"]], [["a", "b", "d"], ["x", "y"]]
    assert phone_error_rate(hyps, refs) == pytest.approx(2 / 5)  # corpus-level, not the mean of 1/3 and 1/2
    assert duration_ratio(150, 100) == 1.5


def test_dtw_mel_distance(log_mel: LogMel) -> None:
    ref = _mel(log_mel, SENTENCES[0])
    stretched = torch.nn.functional.interpolate(ref.T[None], scale_factor=1.3, mode="linear")[0].T
    other = _mel(log_mel, SENTENCES[1])
    assert dtw_mel_distance(ref, ref) == 0.0
    assert dtw_mel_distance(ref, other) == pytest.approx(dtw_mel_distance(other, ref))
    assert dtw_mel_distance(stretched, ref) < 0.5 * dtw_mel_distance(other, ref)
    unaligned = (stretched[:ref.shape[0]] - ref).abs().mean().item()
    assert dtw_mel_distance(stretched, ref) < unaligned


def test_recognizer_shapes_round_trip_and_batch_independence(tmp_path) -> None:
    torch.manual_seed(0)
    model = PhonemeRecognizer.from_preset("tiny", vocab_size=len(PHONEME_INVENTORY), symbols=PHONEME_INVENTORY)
    assert sum(p.numel() for p in model.parameters()) <= 1_500_000
    model.eval()
    mel, lengths = torch.randn(2, 101, 80) - 4, torch.tensor([101, 57])
    logits, out_lengths = model(mel, lengths)
    assert logits.shape == (2, 51, len(PHONEME_INVENTORY)) and out_lengths.tolist() == [51, 29]
    alone, _ = model(mel[1:, :57])
    torch.testing.assert_close(logits[1, :29], alone[0], atol=1e-4, rtol=1e-4)
    loaded = PhonemeRecognizer.from_pretrained(model.save_pretrained(tmp_path / "judge"))
    torch.testing.assert_close(loaded(mel, lengths)[0], logits)
    assert loaded.transcribe(mel, lengths) == model.transcribe(mel, lengths)
    assert all(set(t) <= set(PHONEME_INVENTORY[1:]) for t in model.transcribe(mel, lengths))


def test_ctc_training_lowers_the_loss(log_mel: LogMel) -> None:
    torch.manual_seed(0)
    texts = statements("train", 4, seed=3)
    mels = [_mel(log_mel, t, "en+f2", 170) for t in texts]
    mel, lengths, targets, target_lengths = pad_batch(mels, phonemize(texts))
    model = PhonemeRecognizer.from_preset("tiny", vocab_size=len(PHONEME_INVENTORY), dim=64, layers=2,
                                          ffn_dim=128, dropout=0.0)
    optim = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        loss = model.ctc_loss(mel, lengths, targets, target_lengths)
        optim.zero_grad()
        loss.backward()
        optim.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_shipped_judge_transcribes_the_answer_voice(log_mel: LogMel) -> None:
    ref = resolve_model("speech-judge")
    judge = load_pretrained(ref.path)
    assert isinstance(judge, PhonemeRecognizer) and not judge.training
    texts = statements("eval", 3, seed=0)
    mels = [_mel(log_mel, t) for t in texts]
    mel, lengths, _, _ = pad_batch(mels, [[] for _ in texts])
    assert phone_error_rate(judge.transcribe(mel, lengths), phonemize(texts)) < 0.3
