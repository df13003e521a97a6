"""Shared by the ``speech.*`` job kinds: a loaded Flow-Omni model, its vocoder, and streamed speaking.

Frames come out of :func:`pipelines.flow_omni.generate.stream` one group per LLM step and are vocoded in chunks
as they arrive (:class:`StreamingVocoder`), so a job reports its first audio long before the answer is complete;
progress messages carry the text produced so far (the SSE stream of ``GET /v1/jobs/{id}/events``).
"""

from __future__ import annotations

import time
from abc import abstractmethod
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import ClassVar, Self

import torch
from pydantic import Field

from pipelines.base import (
    InputError,
    Params,
    Pipeline,
    ProgressCallback,
    Request,
    Result,
    Seed,
    item_progress,
    names_model,
)
from pipelines.data.dialogue import ANSWER_SPEED
from pipelines.flow_omni.generate import GenerationOptions, stream
from pipelines.flow_omni.model import FlowOmni
from pipelines.media import Audio
from pipelines.zoo import resolve_model
from tokenizers_media.speech.griffin_lim import griffin_lim
from tokenizers_media.speech.vocoder import MelVocoder, StreamingVocoder, Vocode

GRIFFIN_LIM = "griffin-lim"
ANSWER_CHARS_PER_SECOND = ANSWER_SPEED * 5 / 60
"""The training answer voice's pace (espeak's words a minute, five characters a word): 13.75 a second, the pace
flow-omni-tiny speaks at (28 characters in 2.0 s)."""
DEFAULT_VOCODER = "vocoder-tiny"


MAX_SPEECH_SECONDS = 60.0
"""One LLM step per frame group (25 a second on flow-omni-tiny): a minute of speech and a 400-character text
prompt stay inside the served models' 2048 positions, and the KV cache and audio stay small."""
MAX_FLOW_STEPS = 100
MAX_PATH_CHARS = 4096


class SpeechParams(Params):
    vocoder: str = Field(DEFAULT_VOCODER, min_length=1, max_length=MAX_PATH_CHARS,
                         description=f"a mel vocoder in the zoo (or, run locally, a model directory: at most "
                         f"{MAX_PATH_CHARS} characters, Linux's PATH_MAX), or {GRIFFIN_LIM!r}",
                         json_schema_extra=names_model(GRIFFIN_LIM))
    num_inference_steps: int | None = Field(
        None, ge=1, le=MAX_FLOW_STEPS,
        description="Euler steps of the flow head per frame group (default: the model's flow_steps, 10 in the "
        f"paper); at most {MAX_FLOW_STEPS}, as each step runs once per frame group")
    temperature: float = Field(1.0, ge=0.0, le=10.0, description="scale of the flow's starting noise (1: the "
                               "trained one, 0: none); above 10 the samples are far outside what the model learned")
    max_seconds: float = Field(20.0, gt=0.0, le=MAX_SPEECH_SECONDS,
                               description=f"length cap of the spoken answer; at most {MAX_SPEECH_SECONDS:g} s, "
                               "one LLM step per frame group, so that an answer fits the model's context")
    seed: Seed = Field(0, description="seed of the flow's noise")
    renamed: ClassVar[dict[str, str]] = {"flow_steps": "num_inference_steps"}


@dataclass
class Spoken:
    text: str
    audio: Audio
    first_audio_seconds: float | None
    stopped: bool


def spoken_fraction(groups: int, expected: int, max_groups: int) -> float:
    """How far an answer is after ``groups``: against its expected length (the text's, at the answer voice's
    pace), or the cap where that is shorter; below 1 until the stream stops (the model decides when), so an answer
    longer than expected creeps towards 1 instead of passing it."""
    return min(0.99, groups / min(max_groups, max(expected, groups + 1)))


class SpeechPipeline(Pipeline):
    """Base of the speech pipelines: holds a Flow-Omni model and loads vocoders by name on first use."""

    def __init__(self, model: FlowOmni) -> None:
        if model.config.output != "mel":
            raise InputError("this Flow-Omni model predicts codec codes (the baseline); serve a mel model")
        self.model = model
        self._vocoders: dict[str, Vocode] = {}

    @classmethod
    def load(cls, model_dir: Path, device: str | torch.device = "cpu") -> Self:
        return cls(FlowOmni.from_pretrained(model_dir, device=device))

    @abstractmethod
    def answer(self, request: Request, progress: ProgressCallback) -> Result:
        """One checked request's outputs (each speech kind says what it asks the model)."""

    def run(self, requests: list[Request], progress: ProgressCallback | None = None) -> list[Result]:
        """Requests one by one: generation is sequential per answer, and a job streams its own progress."""
        return [self.answer(request, item_progress(progress, n, len(requests))) for n, request in enumerate(requests)]

    def expected_groups(self, characters: int) -> int:
        """Frame groups an answer of ``characters`` takes in the voice the served models learned to answer in."""
        groups_per_second = self.model.config.mel_spec.frame_rate / self.model.config.frames_per_step
        return round(characters / ANSWER_CHARS_PER_SECOND * groups_per_second)

    def vocoder(self, name: str) -> Vocode:
        if name not in self._vocoders:
            if name == GRIFFIN_LIM:
                self._vocoders[name] = partial(griffin_lim, spec=self.model.config.mel_spec)
            else:
                ref = resolve_model(name)
                if ref.model_class != "MelVocoder":
                    raise InputError(f"vocoder {name!r} is a {ref.model_class}, not a MelVocoder")
                vocoder = MelVocoder.from_pretrained(ref.path)
                if vocoder.config.mel_spec != self.model.config.mel_spec:
                    raise InputError(f"vocoder {name!r} reads a different mel ({vocoder.config.mel_spec}) "
                                     f"than this model writes ({self.model.config.mel_spec})")
                self._vocoders[name] = vocoder.vocode
        return self._vocoders[name]

    def speak(self, task: str, params: SpeechParams, progress: ProgressCallback | None, text: str | None = None,
              speech_mel: torch.Tensor | None = None) -> Spoken:
        """Stream one answer: text pieces into progress messages, frame groups into the chunked vocoder; progress
        counts the groups against the answer's expected length (``spoken_fraction``), not the length cap."""
        vocoder = StreamingVocoder(self.vocoder(params.vocoder), self.model.config.hop_length)
        frame_rate = self.model.config.mel_spec.frame_rate
        max_groups = max(1, int(params.max_seconds * frame_rate / self.model.config.frames_per_step))
        options = GenerationOptions(flow_steps=params.num_inference_steps, temperature=params.temperature,
                                    max_groups=max_groups, seed=params.seed)
        start, first_audio, said, chunks, groups, shown = time.perf_counter(), None, "", [], 0, 0.0
        for event in stream(self.model, task, text=text, speech_mel=speech_mel, options=options):
            said += event.text
            if event.frames is None:
                continue
            groups += 1
            chunk = vocoder.push(event.frames[None])[0]
            if chunk.numel():
                chunks.append(chunk)
                first_audio = first_audio if first_audio is not None else time.perf_counter() - start
            if progress and groups % 8 == 0:
                seconds = groups * self.model.config.frames_per_step / frame_rate
                expected = self.expected_groups(len(text or said.strip()))  # tts: all it says; s2s: so far
                shown = max(shown, spoken_fraction(groups, expected, max_groups))
                progress(shown, f"{seconds:.1f} s of audio; text: {said.strip()}")
        tail = vocoder.flush()
        if tail.numel():
            chunks.append(tail[0])
            first_audio = first_audio if first_audio is not None else time.perf_counter() - start
        samples = torch.cat(chunks) if chunks else torch.zeros(0)
        if progress:
            progress(1.0, f"done; text: {said.strip()}")
        return Spoken(said.strip(), Audio(samples.clamp(-1, 1).contiguous(), self.model.config.sample_rate),
                      first_audio, groups < max_groups)
