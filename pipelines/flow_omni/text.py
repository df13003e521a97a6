"""Character tokens for Flow-Omni's text stream, with the special tokens of the parallel-stream layout.

Characters (not BPE) keep the vocabulary tiny enough for a few-million-parameter LLM (spec flow_omni.md §4), and
decode exactly, which the streamed text of a job needs.
"""

from __future__ import annotations

SPECIALS = ("<pad>", "<eot>", "<asr>", "<tts>", "<s2s>", "<t2t>")
"""``<pad>`` fills the text stream while speech runs on; ``<eot>`` ends a text answer; the rest tag the task."""

PAD, EOT = 0, 1
TASK_TOKENS = {"asr": 2, "tts": 3, "s2s": 4, "t2t": 5}
DEFAULT_CHARACTERS = " abcdefghijklmnopqrstuvwxyz'"


class CharTokenizer:
    """Text <-> ids over a fixed character set; other characters are an error, upper case is folded."""

    def __init__(self, characters: str = DEFAULT_CHARACTERS) -> None:
        if len(set(characters)) != len(characters):
            raise ValueError("the character set has repeats")
        self.characters = characters
        self._ids = {c: i + len(SPECIALS) for i, c in enumerate(characters)}

    @property
    def vocab_size(self) -> int:
        return len(SPECIALS) + len(self.characters)

    def normalize(self, text: str) -> str:
        """Lower case, punctuation other than apostrophes dropped, spaces collapsed."""
        kept = "".join(c for c in text.lower() if c in self._ids or c.isspace())
        return " ".join(kept.split())

    def encode(self, text: str) -> list[int]:
        clean = self.normalize(text)
        unknown = sorted({c for c in text.lower() if c not in self._ids and c.isalnum()})
        if unknown:
            raise ValueError(f"text has characters outside this model's alphabet: {unknown}")
        if not clean:
            raise ValueError("text is empty after normalisation")
        return [self._ids[c] for c in clean]

    def decode(self, ids: list[int]) -> str:
        """Ids -> text; specials are skipped."""
        offset = len(SPECIALS)
        return "".join(self.characters[i - offset] for i in ids if offset <= i < self.vocab_size)
