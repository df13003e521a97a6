"""Spoken dialogue data for Flow-Omni: a restricted vocabulary, question -> answer templates and fixed voices.

Mirrors the paper's stage-2 data at toy scale (spec flow_omni.md §1, §4): questions are spoken by many voices,
answers by one fixed voice, and a from-scratch LLM on a CPU needs a small vocabulary (about 100 words) to align
text with speech in tens of minutes. Every text is a pure function of (split, count, seed); the train / eval
split is the same stable hash of the text that the codec corpus uses, so the two can never share a sentence.

Voices:
- ``ANSWER_VOICE`` (speed ``ANSWER_SPEED``, pitch ``ANSWER_PITCH``): every spoken answer and every TTS target;
- ``QUESTION_VOICES``: the codec corpus's ten training voices, for spoken questions and ASR inputs;
- ``JUDGE_VOICES``: used only to train the intelligibility judge, so it never learns the generator's own voice.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipelines.data.speech import TRAIN_VOICES, check_split, split_of

ANSWER_VOICE = "en-us"
ANSWER_SPEED = 165
ANSWER_PITCH = 50
QUESTION_VOICES: tuple[str, ...] = TRAIN_VOICES
JUDGE_VOICES: tuple[str, ...] = ("en+f2", "en-us+m1", "en-gb+m2", "en-029+f1", "en-gb-scotland+f3",
                                 "en-us-nyc+m4", "en+m6", "en-gb-x-rp+m7")

NUMBERS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
           "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty")
COLOURS = ("red", "green", "blue", "yellow", "black", "white", "brown", "pink")
SIZES = ("big", "small", "tall", "short", "old", "new")
NOUNS = ("cat", "dog", "bird", "fish", "box", "ball", "car", "boat", "tree", "house", "hat", "cup", "book", "door")
VERBS = ("sees", "has", "likes", "finds", "takes", "wants")
PEOPLE = ("the boy", "the girl", "my friend", "the teacher", "a man", "a woman")
FACTS: dict[str, str] = {"the sky": "blue", "the grass": "green", "the sun": "yellow", "snow": "white",
                         "the night": "black", "a banana": "yellow", "a tomato": "red", "the sea": "blue"}


@dataclass(frozen=True)
class QAPair:
    """One text exchange; ``kind`` names the template (for per-kind answer accuracy)."""

    question: str
    answer: str
    kind: str


def _pick(rng: np.random.Generator, words: tuple[str, ...]) -> str:
    return words[rng.integers(len(words))]


def _phrase(rng: np.random.Generator) -> str:
    """A noun phrase: article, optional size, optional colour, noun."""
    words = ["the" if rng.random() < 0.5 else "a"]
    if rng.random() < 0.5:
        words.append(_pick(rng, SIZES))
    if rng.random() < 0.7:
        words.append(_pick(rng, COLOURS))
    words.append(_pick(rng, NOUNS))
    if words[0] == "a" and words[1][0] in "aeiou":
        words[0] = "an"
    return " ".join(words)


def _statement(rng: np.random.Generator) -> str:
    if rng.random() < 0.5:
        return f"{_pick(rng, PEOPLE)} {_pick(rng, VERBS)} {_phrase(rng)}"
    return f"{_phrase(rng)} {_pick(rng, VERBS)} {_phrase(rng)}"


def _qa(rng: np.random.Generator) -> QAPair:
    kind = ("add", "next", "repeat", "colour")[rng.integers(4)]
    if kind == "add":
        a, b = rng.integers(0, 11, size=2)
        return QAPair(f"what is {NUMBERS[a]} plus {NUMBERS[b]}", f"{NUMBERS[a]} plus {NUMBERS[b]} is "
                      f"{NUMBERS[a + b]}", kind)
    if kind == "next":
        n = int(rng.integers(0, 20))
        return QAPair(f"what comes after {NUMBERS[n]}", f"{NUMBERS[n + 1]} comes after {NUMBERS[n]}", kind)
    if kind == "repeat":
        phrase = _phrase(rng)
        return QAPair(f"say {phrase}", phrase, kind)
    thing = tuple(FACTS)[rng.integers(len(FACTS))]
    return QAPair(f"what colour is {thing}", f"{thing} is {FACTS[thing]}", kind)


def _distinct(split: str, count: int, seed: int, salt: int, draw) -> list:
    check_split(split)
    rng = np.random.default_rng([seed, salt, 0 if split == "train" else 1])
    out, seen = [], set()
    for _ in range(count * 200):
        item = draw(rng)
        key = item.question if isinstance(item, QAPair) else item
        if key not in seen and split_of(key) == split:
            seen.add(key)
            out.append(item)
            if len(out) == count:
                return out
    raise ValueError(f"could not draw {count} distinct {split} items from the templates; ask for fewer")


def statements(split: str, count: int, seed: int = 0) -> list[str]:
    """``count`` distinct sentences (TTS and ASR material) of ``split``."""
    return _distinct(split, count, seed, 10, _statement)


def qa_pairs(split: str, count: int, seed: int = 0) -> list[QAPair]:
    """``count`` question -> answer pairs of ``split``, distinct by question.

    The questions (few hundred possible for arithmetic) are what is split; an answer may also appear in the other
    split as an answer to a different question.
    """
    return _distinct(split, count, seed, 11, _qa)


def all_sentences(split: str, count: int, seed: int = 0) -> list[str]:
    """Statements, questions and answers mixed (the judge's training text): ``count`` in all."""
    pairs = qa_pairs(split, count // 3, seed)
    texts = statements(split, count - 2 * len(pairs), seed)
    return texts + [p.question for p in pairs] + [p.answer for p in pairs]


def vocabulary() -> list[str]:
    """Every word the templates can produce (sorted)."""
    words = set(NUMBERS + COLOURS + SIZES + NOUNS + VERBS)
    words |= {w for text in PEOPLE + tuple(FACTS) for w in text.split()}
    words |= {"the", "a", "an", "what", "is", "plus", "comes", "after", "say", "colour"}
    return sorted(words)
