"""``speech.generate``: text -> a 24 kHz WAV spoken by Flow-Omni (the TTS task format), streamed."""

from __future__ import annotations

from pydantic import Field, field_validator

from pipelines.base import InputError, ProgressCallback, Request, Result
from pipelines.flow_omni.serving import SpeechParams, SpeechPipeline

MAX_TEXT_CHARS = 400


class SpeechGenerateParams(SpeechParams):
    text: str = Field(..., min_length=1, max_length=MAX_TEXT_CHARS, description="what to say")

    @field_validator("text")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("text is blank")
        return value


class SpeechGeneratePipeline(SpeechPipeline):
    kind = "speech.generate"
    params_model = SpeechGenerateParams
    inputs: dict[str, str] = {}

    def check_request(self, request: Request) -> None:
        super().check_request(request)
        try:
            self.model.tokenizer.encode(request.params.text)
        except ValueError as err:
            raise InputError(f"speech.generate cannot say this text: {err}") from err
        self.vocoder(request.params.vocoder)

    def answer(self, request: Request, progress: ProgressCallback) -> Result:
        return {"audio": self.speak("tts", request.params, progress, text=request.params.text).audio}
