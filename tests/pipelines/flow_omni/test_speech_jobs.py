"""speech.generate / speech.chat pipelines: streamed speaking, chunked vocoding, progress text, input errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pipelines.base import InputError, Request
from pipelines.flow_omni.speech_chat import SpeechChatParams, SpeechChatPipeline
from pipelines.flow_omni.speech_generate import SpeechGenerateParams, SpeechGeneratePipeline
from pipelines.media import Audio, Text
from pipelines.registry import get_pipeline_class
from tests.pipelines.flow_omni.test_flow_omni import small_model
from tokenizers_media.speech.vocoder import MelVocoder


@pytest.fixture(scope="module")
def generate_pipeline() -> SpeechGeneratePipeline:
    return SpeechGeneratePipeline(small_model())


def test_registry_serves_both_kinds_on_flow_omni() -> None:
    assert get_pipeline_class("speech.generate", "FlowOmni") is SpeechGeneratePipeline
    assert get_pipeline_class("speech.chat", "FlowOmni") is SpeechChatPipeline


def test_generate_streams_text_and_whole_frames(generate_pipeline: SpeechGeneratePipeline) -> None:
    messages: list[str] = []
    params = SpeechGenerateParams(text="a red cat", vocoder="griffin-lim", max_seconds=0.6, seed=1)
    [result] = generate_pipeline.run([Request({}, params)], progress=lambda f, m: messages.append(m))
    audio = result["audio"]
    config = generate_pipeline.model.config
    assert audio.sample_rate == 24_000
    assert audio.samples.numel() % (config.hop_length * config.frames_per_step) == 0
    assert 0 < audio.samples.numel() <= 0.6 * 24_000 + config.hop_length * config.frames_per_step
    assert messages[-1] == "done; text: a red cat"
    again = generate_pipeline.run([Request({}, params)])[0]["audio"]
    torch.testing.assert_close(again.samples, audio.samples)  # seeded: a rerun gives the same audio


def test_generate_uses_a_mel_vocoder_from_a_directory(generate_pipeline: SpeechGeneratePipeline,
                                                      tmp_path: Path) -> None:
    torch.manual_seed(0)
    vocoder_dir = MelVocoder.from_preset("tiny", n_mels=16).save_pretrained(tmp_path / "voc")
    params = SpeechGenerateParams(text="a dog", vocoder=str(vocoder_dir), max_seconds=0.4)
    audio = generate_pipeline.run([Request({}, params)])[0]["audio"]
    assert audio.samples.numel() > 0 and bool(torch.isfinite(audio.samples).all())


def test_chat_answers_with_text_and_audio_from_any_sample_rate() -> None:
    pipeline = SpeechChatPipeline(small_model())
    question = Audio(0.1 * torch.randn(16_000), 16_000)
    params = SpeechChatParams(vocoder="griffin-lim", max_seconds=0.4)
    [result] = pipeline.run([Request({"audio": question}, params)])
    assert isinstance(result["text"], Text) and isinstance(result["audio"], Audio)
    assert result["audio"].samples.numel() > 0


@pytest.mark.parametrize(("request_", "message"), [
    (Request({}, SpeechGenerateParams(text="café ünïcode", vocoder="griffin-lim")), "outside this model's alphabet"),
    (Request({}, SpeechGenerateParams(text="hello", vocoder="no-such-vocoder")), "unknown model"),
])
def test_generate_rejects_bad_requests(generate_pipeline: SpeechGeneratePipeline, request_: Request,
                                       message: str) -> None:
    with pytest.raises(InputError, match=message):
        generate_pipeline.check_request(request_)


def test_chat_rejects_unusable_audio() -> None:
    pipeline = SpeechChatPipeline(small_model())
    with pytest.raises(InputError, match="too low"):
        pipeline.check_request(Request({"audio": Audio(torch.zeros(4000), 4000)}, SpeechChatParams()))
    with pytest.raises(InputError, match="lasts"):
        pipeline.check_request(Request({"audio": Audio(torch.zeros(100), 24_000)}, SpeechChatParams()))


def test_codes_baseline_is_not_served() -> None:
    with pytest.raises(InputError, match="baseline"):
        SpeechGeneratePipeline(small_model(output="codes"))


def test_flow_steps_is_the_old_name_of_num_inference_steps() -> None:
    with pytest.warns(DeprecationWarning, match="'flow_steps' is deprecated"):
        assert SpeechChatParams.model_validate({"flow_steps": 3}).num_inference_steps == 3
    with pytest.raises(ValueError, match="pass 'num_inference_steps' only"):
        SpeechGenerateParams.model_validate({"text": "hi", "flow_steps": 3, "num_inference_steps": 3})
    assert "flow_steps" not in SpeechGenerateParams.model_json_schema()["properties"]
