"""Speech synthesised with Debian's ``espeak-ng``: the audio tokenizers' training and evaluation corpus.

Nothing is downloaded. Sentences come from templates and word lists in this module, deterministically from a seed;
each one is spoken by an ``espeak-ng`` voice (a language x voice-variant pair) at a random speed and pitch,
read back with ``soundfile`` and resampled to 24 kHz with torchaudio.

Held-out split (never used for training):

- sentences: a sentence belongs to ``eval`` iff a stable hash of its text falls in the eval bucket
  (1 in ``_EVAL_BUCKETS``), whatever seed produced it, so the two splits can never share a sentence;
- voice: ``HELD_OUT_VOICE`` uses a voice variant that no training voice uses.

A corpus is built once and cached as one ``.pt`` file (int16 samples + texts + voices) keyed by its parameters.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

logger = logging.getLogger(__name__)

SAMPLE_RATE = 24_000
CORPUS_VERSION = 1
"""Bump when synthesis changes so stale caches are not reused."""

TRAIN_VOICES: tuple[str, ...] = (
    "en-us+m3", "en-us+f2", "en+m1", "en+f3", "en-gb-scotland+m4", "en-gb-x-rp+f1",
    "en-029+m2", "en-us-nyc+f5", "en-gb-x-gbclan+m5", "en-us+klatt",
)
HELD_OUT_VOICE = "en-gb-x-rp+f4"
"""Evaluation voice: the ``f4`` variant is used by no training voice."""

SPEED_RANGE = (130, 190)
"""espeak-ng words per minute."""
PITCH_RANGE = (25, 75)
"""espeak-ng pitch (0..99, default 50)."""

_EVAL_BUCKETS = 8

_SUBJECTS = ("the old farmer", "a small child", "my neighbour", "the tired doctor", "our teacher", "the pilot",
             "a quiet student", "the baker", "her brother", "the captain", "a young artist", "the driver",
             "his grandmother", "the singer", "a clever fox", "the mayor")
_VERBS = ("painted", "carried", "found", "opened", "repaired", "watched", "followed", "cleaned", "described",
          "remembered", "borrowed", "measured", "visited", "ordered", "counted", "lifted")
_OBJECTS = ("a red bicycle", "the wooden door", "seven green apples", "an old map", "the broken window",
            "a heavy box", "the silver spoon", "twelve yellow candles", "a long letter", "the blue umbrella",
            "a warm blanket", "the narrow bridge", "three paper boats", "a strange picture", "the kitchen table",
            "a bag of rice")
_PLACES = ("near the river", "in the morning", "after lunch", "behind the station", "at the market",
           "before the storm", "on a sunny day", "under the stairs", "in the garden", "during the concert",
           "by the harbour", "late at night")
_QUESTION_WORDS = ("why", "when", "where", "how")
_ADJECTIVES = ("quickly", "slowly", "carefully", "happily", "quietly", "loudly", "gently", "suddenly")
_NUMBERS = ("one", "two", "four", "nine", "eleven", "twenty", "forty two", "a hundred")


class EspeakNotFoundError(RuntimeError):
    """espeak-ng is not installed; the message says how to install it."""

    def __init__(self, message: str = "espeak-ng was not found on PATH; the speech corpus is synthesised with it. "
                                      "Install it with: apt-get install espeak-ng") -> None:
        super().__init__(message)


def espeak_binary() -> str:
    """Path of the ``espeak-ng`` executable, or :class:`EspeakNotFoundError`."""
    path = shutil.which("espeak-ng")
    if path is None:
        raise EspeakNotFoundError()
    return path


def synthesize(text: str, voice: str, speed: int = 160, pitch: int = 50,
               sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """Speak ``text`` with espeak-ng; returns a mono float32 waveform ``(T,)`` at ``sample_rate``."""
    cmd = [espeak_binary(), "-v", voice, "-s", str(int(speed)), "-p", str(int(pitch)), "--stdout", text]
    result = subprocess.run(cmd, capture_output=True, timeout=60, check=False)
    if result.returncode != 0 or not result.stdout:
        raise RuntimeError(f"espeak-ng failed for voice {voice!r}: {result.stderr.decode(errors='replace')}")
    data, rate = sf.read(io.BytesIO(result.stdout), dtype="float32", always_2d=True)
    wav = torch.from_numpy(data.mean(axis=1))
    return AF.resample(wav, rate, sample_rate) if rate != sample_rate else wav


def split_of(sentence: str) -> str:
    """``eval`` for 1 in ``_EVAL_BUCKETS`` sentences by a stable hash, whatever generated them."""
    bucket = int.from_bytes(hashlib.sha256(sentence.encode()).digest()[:4], "little") % _EVAL_BUCKETS
    return "eval" if bucket == 0 else "train"


def _random_sentence(rng: np.random.Generator) -> str:
    def pick(words: tuple[str, ...]) -> str:
        return words[rng.integers(len(words))]

    kind = rng.integers(4)
    if kind == 0:
        return f"{pick(_SUBJECTS).capitalize()} {pick(_VERBS)} {pick(_OBJECTS)} {pick(_PLACES)}."
    if kind == 1:
        return f"{pick(_QUESTION_WORDS).capitalize()} has {pick(_SUBJECTS)} {pick(_VERBS)} {pick(_OBJECTS)}?"
    if kind == 2:
        return (f"{pick(_SUBJECTS).capitalize()} {pick(_ADJECTIVES)} {pick(_VERBS)} {pick(_OBJECTS)}, "
                f"and {pick(_SUBJECTS)} {pick(_VERBS)} {pick(_OBJECTS)}.")
    return f"{pick(_PLACES).capitalize()}, {pick(_SUBJECTS)} counted {pick(_NUMBERS)} times {pick(_NUMBERS)}."


def make_sentences(split: str, count: int, seed: int = 0) -> list[str]:
    """``count`` distinct sentences of ``split`` (``train`` or ``eval``), a pure function of the arguments."""
    check_split(split)
    rng = np.random.default_rng([seed, 0 if split == "train" else 1])
    out: list[str] = []
    seen: set[str] = set()
    for _ in range(count * 200):
        sentence = _random_sentence(rng)
        if sentence not in seen and split_of(sentence) == split:
            seen.add(sentence)
            out.append(sentence)
            if len(out) == count:
                return out
    raise ValueError(f"could not draw {count} distinct {split} sentences; ask for fewer")


def check_split(split: str) -> None:
    if split not in ("train", "eval"):
        raise ValueError(f"split must be 'train' or 'eval', got {split!r}")


@dataclass
class SpeechCorpus:
    """Synthesised utterances of one split. ``clips[i]`` is a float32 ``(T_i,)`` waveform at ``sample_rate``."""

    clips: list[torch.Tensor]
    texts: list[str]
    voices: list[str]
    sample_rate: int = SAMPLE_RATE

    def __len__(self) -> int:
        return len(self.clips)

    @property
    def seconds(self) -> float:
        return sum(len(c) for c in self.clips) / self.sample_rate


def default_cache_dir() -> Path:
    """``$MEDIAFORGE_CACHE/speech`` or ``~/.cache/mediaforge/speech``."""
    root = os.environ.get("MEDIAFORGE_CACHE") or Path.home() / ".cache" / "mediaforge"
    return Path(root) / "speech"


def to_int16(wav: torch.Tensor) -> torch.Tensor:
    """Float samples in [-1, 1] -> int16: the speech caches hold audio at half the size of float32."""
    return (wav.clamp(-1, 1) * 32767).round().to(torch.int16)


def from_int16(clip: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`to_int16`: float32 samples in [-1, 1]."""
    return clip.float() / 32767.0


def save_int16_clips(path: Path, clips: list[torch.Tensor], **fields: Any) -> None:
    """Write ``{"clips": clips, **fields}`` to ``path`` atomically (a killed writer never leaves a half-written
    cache); ``clips`` are int16 (:func:`to_int16`)."""
    if any(c.dtype != torch.int16 for c in clips):
        raise TypeError("save_int16_clips stores int16 clips; convert them with to_int16")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save({"clips": clips, **fields}, tmp)
    tmp.replace(path)


def load_int16_clips(path: Path) -> tuple[Iterator[torch.Tensor], dict[str, Any]]:
    """A :func:`save_int16_clips` file: its clips as float32, converted while iterated (a large cache is never
    float32 all at once), and its other fields."""
    saved = torch.load(path, weights_only=True)
    return map(from_int16, saved.pop("clips")), saved


def build_corpus(split: str, count: int, seed: int = 0, cache_dir: str | Path | None = None) -> SpeechCorpus:
    """Synthesise (or load from the cache) ``count`` utterances of ``split``.

    Train utterances cycle through ``TRAIN_VOICES``; eval utterances all use ``HELD_OUT_VOICE``. Speed and pitch
    are drawn per utterance from ``SPEED_RANGE`` / ``PITCH_RANGE`` with the same seeded generator.
    """
    check_split(split)
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = cache / f"espeak-v{CORPUS_VERSION}-{split}-n{count}-s{seed}.pt"
    if path.is_file():
        clips, saved = load_int16_clips(path)
        return SpeechCorpus(list(clips), saved["texts"], saved["voices"])
    espeak_binary()  # fail early with the install hint
    texts = make_sentences(split, count, seed)
    rng = np.random.default_rng([seed, 2 if split == "train" else 3])
    voices, clips = [], []
    for i, text in enumerate(texts):
        voice = TRAIN_VOICES[i % len(TRAIN_VOICES)] if split == "train" else HELD_OUT_VOICE
        speed, pitch = rng.integers(*SPEED_RANGE), rng.integers(*PITCH_RANGE)
        voices.append(voice)
        clips.append(synthesize(text, voice, speed, pitch))
    logger.info("synthesised %d %s utterances (%.0f s) into %s", count, split,
                sum(len(c) for c in clips) / SAMPLE_RATE, path)
    as_int16 = [to_int16(c) for c in clips]
    save_int16_clips(path, as_int16, texts=texts, voices=voices)
    return SpeechCorpus([from_int16(c) for c in as_int16], texts, voices)
