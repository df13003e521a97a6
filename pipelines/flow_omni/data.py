"""Flow-Omni's training and evaluation material: spoken statements and Q&A, as cached log-mel frames.

Each text is spoken twice when needed: in the fixed answer voice (TTS targets, spoken answers) and in a question
voice (ASR inputs, spoken questions), mirroring the paper's many-voices-in, one-voice-out dialogue data. Only the
mel frames are kept (float16): the model never sees waveforms, and 5,000 clips stay around 100 MB.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pipelines.data.dialogue import ANSWER_PITCH, ANSWER_SPEED, ANSWER_VOICE, QUESTION_VOICES, qa_pairs, statements
from pipelines.data.speech import PITCH_RANGE, SPEED_RANGE, default_cache_dir, synthesize, to_int16
from pipelines.flow_omni.streams import SPEECH_IN, SPEECH_OUT, Streams, answer_streams, concat, prompt_streams
from tokenizers_media.speech.mel import LogMel, MelSpec

logger = logging.getLogger(__name__)

CORPUS_VERSION = 1


def answer_speech(text: str) -> torch.Tensor:
    """The espeak reference of an answer: the fixed answer voice, speed and pitch."""
    return synthesize(text, ANSWER_VOICE, ANSWER_SPEED, ANSWER_PITCH)


def question_speech(text: str, rng: np.random.Generator) -> torch.Tensor:
    voice = QUESTION_VOICES[rng.integers(len(QUESTION_VOICES))]
    return synthesize(text, voice, int(rng.integers(*SPEED_RANGE)), int(rng.integers(*PITCH_RANGE)))


@dataclass
class Exchange:
    """One item: a prompt text spoken by a question voice, and an answer text spoken by the answer voice."""

    prompt: str
    answer: str
    prompt_mel: torch.Tensor
    answer_mel: torch.Tensor
    answer_wav: torch.Tensor
    """int16 samples of the answer: the reference for scoring, and the codec baseline's targets."""
    prompt_wav: torch.Tensor | None = None
    """int16 samples of the spoken prompt (kept for the eval split: noisy-input tests re-derive its mel)."""


@dataclass
class DialogueCorpus:
    """``statements``: prompt == answer (TTS and ASR material); ``dialogues``: Q&A (S2S and T2T)."""

    statements: list[Exchange]
    dialogues: list[Exchange]


def _speak(pairs: list[tuple[str, str]], rng: np.random.Generator, log_mel: LogMel,
           keep_prompts: bool) -> list[Exchange]:
    out = []
    for prompt, answer in pairs:
        q, a = question_speech(prompt, rng), answer_speech(answer)
        with torch.no_grad():
            mels = [log_mel(w[None])[0].half() for w in (q, a)]
        out.append(Exchange(prompt, answer, *mels, to_int16(a), to_int16(q) if keep_prompts else None))
    return out


def build_dialogue_corpus(split: str, num_statements: int, num_dialogues: int, seed: int = 0,
                          cache_dir: str | Path | None = None, spec: MelSpec = MelSpec()) -> DialogueCorpus:
    """Synthesise (or load from the cache) the spoken statements and dialogues of ``split``."""
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    name = (f"dialogue-v{CORPUS_VERSION}-{split}-s{num_statements}-d{num_dialogues}-seed{seed}"
            f"-hop{spec.hop_length}-m{spec.n_mels}.pt")
    path = cache / name
    if path.is_file():
        saved = torch.load(path, weights_only=False)
        return DialogueCorpus([Exchange(**e) for e in saved["statements"]], [Exchange(**e) for e in saved["dialogues"]])
    rng = np.random.default_rng([seed, 7, 0 if split == "train" else 1])
    log_mel = LogMel(spec)
    keep = split == "eval"
    said = _speak([(s, s) for s in statements(split, num_statements, seed)], rng, log_mel, keep)
    dialogues = _speak([(p.question, p.answer) for p in qa_pairs(split, num_dialogues, seed)], rng, log_mel, keep)
    cache.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save({"statements": [vars(e) for e in said], "dialogues": [vars(e) for e in dialogues]}, tmp)
    tmp.replace(path)
    logger.info("synthesised %d statements and %d dialogues (%s) into %s", len(said), len(dialogues), split, path)
    return DialogueCorpus(said, dialogues)


def mel_statistics(corpus: DialogueCorpus) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-bin mean and std of every answer-voice frame (what the flow head must produce)."""
    frames = torch.cat([e.answer_mel.float() for e in corpus.statements + corpus.dialogues])
    return frames.mean(0), frames.std(0)


@dataclass
class TrainingItem:
    """The streams of one example and, for a spoken prompt, its raw log-mel (encoded inside the step)."""

    streams: Streams
    prompt_mel: torch.Tensor | None


def make_item(task: str, exchange: Exchange, model) -> TrainingItem:
    """Lay ``exchange`` out as ``task`` for ``model`` (a ``FlowOmni``: tokenizer, delay, frame grouping)."""
    config, tok = model.config, model.tokenizer
    prompt_mel = exchange.prompt_mel.float() if task in SPEECH_IN else None
    if prompt_mel is not None:
        positions = int(model.encoder.output_lengths(torch.tensor(prompt_mel.shape[0])))
        prompt = prompt_streams(task, config.group_dim, speech_positions=positions)
    else:
        prompt = prompt_streams(task, config.group_dim, tok.encode(exchange.prompt))
    groups = None
    if task in SPEECH_OUT:
        target = exchange.answer_mel.float()  # codec codes (F,) for the discrete baseline
        groups = model.frames_to_groups(model.normalize_mel(target) if config.output == "mel" else target)
    answer = answer_streams(task, tok.encode(exchange.answer), groups, config.delay, config.group_dim)
    return TrainingItem(concat(prompt, answer), prompt_mel)
