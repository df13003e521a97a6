"""Flow-Omni evaluation: noise at a given SNR, and every score computed end to end on tiny random models."""

from __future__ import annotations

import math

import torch

from pipelines.data.phonemes import PHONEME_INVENTORY
from pipelines.flow_omni.codec import CodecBridge
from pipelines.flow_omni.data import DialogueCorpus, Exchange
from pipelines.flow_omni.evaluate import add_noise, codec_ceiling_per, score_dialogue, score_tts
from pipelines.flow_omni.generate import GenerationOptions
from tests.pipelines.flow_omni.test_flow_omni import small_model
from tokenizers_media.speech.recognizer import PhonemeRecognizer, PhonemeRecognizerConfig


def judge() -> PhonemeRecognizer:
    torch.manual_seed(0)
    config = PhonemeRecognizerConfig(vocab_size=len(PHONEME_INVENTORY), symbols=tuple(PHONEME_INVENTORY), dim=32,
                                     layers=1, heads=2, ffn_dim=64, n_mels=16)
    return PhonemeRecognizer(config).eval()


def corpus() -> DialogueCorpus:
    gen = torch.Generator().manual_seed(0)

    def exchange(prompt: str, answer: str) -> Exchange:
        wav = (torch.randn(4800, generator=gen) * 3000).to(torch.int16)
        return Exchange(prompt, answer, torch.randn(15, 16, generator=gen) - 4, torch.randn(12, 16, generator=gen) - 4,
                        wav, wav)

    return DialogueCorpus([exchange("a red cat", "a red cat"), exchange("the dog", "the dog")],
                          [exchange("what is one plus one", "one plus one is two")])


def test_add_noise_hits_the_requested_snr() -> None:
    wav = torch.sin(torch.arange(24000) / 10.0)
    noisy = add_noise(wav, 10.0, seed=0)
    snr = 10 * math.log10(wav.pow(2).mean() / (noisy - wav).pow(2).mean())
    assert abs(snr - 10.0) < 0.2
    assert add_noise(wav, None, seed=0) is wav


def test_tts_scores_are_in_range() -> None:
    model = small_model()
    scores = score_tts(model, judge(), corpus().statements, GenerationOptions(max_groups=5))
    assert scores.utterances == 2
    assert scores.per >= 0 and scores.reference_per >= 0 and scores.teacher_forced_per >= 0
    assert scores.dtw_mel > 0 and scores.dtw_mean_frame > 0
    assert 0 < scores.duration_ratio <= 5 * 3 / 12 + 1e-6  # capped at 5 groups of 3 frames vs 12 reference frames
    assert scores.stop_rate in (0.0, 0.5, 1.0) and scores.real_time_factor > 0


def test_dialogue_scores_for_mel_and_codes_models() -> None:
    data = corpus()
    options = GenerationOptions(max_groups=3, max_text_tokens=25)
    mel = score_dialogue(small_model(), judge(), data, options, snr_db=5.0)
    assert mel.questions == 1 and 0 <= mel.s2s_accuracy <= 1 and 0 <= mel.t2t_accuracy <= 1 and mel.asr_cer > 0

    codec = CodecBridge(to_codes=lambda wav: torch.zeros(wav.numel() // 320, dtype=torch.long),
                        to_mel=lambda codes: torch.nn.functional.one_hot(codes.long(), 16).float() - 4)
    codes_model = small_model(output="codes")
    codes = score_dialogue(codes_model, judge(), data, options, None, codec)
    assert codes.s2s_per >= 0
    assert codec_ceiling_per(judge(), data.statements, codec) > 0
    tts = score_tts(codes_model, judge(), data.statements, GenerationOptions(max_groups=3), codec)
    assert tts.utterances == 2 and tts.teacher_forced_per >= 0
