"""``speech.chat``: a spoken question (WAV) -> Flow-Omni's answer as text and as a 24 kHz WAV, streamed."""

from __future__ import annotations

import torch
import torchaudio.functional as AF

from pipelines.base import InputError, ProgressCallback, Request, Result
from pipelines.flow_omni.serving import SpeechParams, SpeechPipeline
from pipelines.media import Audio, Text
from tokenizers_media.speech.mel import LogMel

MIN_SAMPLE_RATE = 8000
MAX_QUESTION_SECONDS = 30.0


class SpeechChatParams(SpeechParams):
    pass


class SpeechChatPipeline(SpeechPipeline):
    kind = "speech.chat"
    params_model = SpeechChatParams
    inputs = {"audio": "audio"}

    def check_request(self, request: Request) -> None:
        super().check_request(request)
        audio = request.inputs["audio"]
        if not isinstance(audio, Audio):
            raise InputError("speech.chat needs an audio input (a WAV file)")
        if audio.sample_rate < MIN_SAMPLE_RATE:
            raise InputError(f"sample rate {audio.sample_rate} Hz is too low; speech needs >= {MIN_SAMPLE_RATE} Hz")
        seconds = audio.samples.shape[-1] / audio.sample_rate
        if not 0.1 <= seconds <= MAX_QUESTION_SECONDS:
            raise InputError(f"the question lasts {seconds:.2f} s; speech.chat takes 0.1 to {MAX_QUESTION_SECONDS} s")
        self.vocoder(request.params.vocoder)

    def question_mel(self, audio: Audio) -> torch.Tensor:
        samples = audio.samples.reshape(-1).float()
        rate = self.model.config.sample_rate
        if audio.sample_rate != rate:
            samples = AF.resample(samples, orig_freq=audio.sample_rate, new_freq=rate)
        with torch.inference_mode():
            return LogMel(self.model.config.mel_spec)(samples[None])[0]

    def answer(self, request: Request, progress: ProgressCallback) -> Result:
        mel = self.question_mel(request.inputs["audio"])
        spoken = self.speak("s2s", request.params, progress, speech_mel=mel)
        return {"text": Text(spoken.text), "audio": spoken.audio}
