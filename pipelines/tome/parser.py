"""Token groups for ToMe: each noun with its attribute modifiers, aligned to CLIP word pieces.

ToMe (Hu et al., NeurIPS 2024, arXiv 2411.07132, section 3.2) merges the tokens of an object and of its
attributes into one composite token. The paper finds the groups with a spaCy dependency parse (noun heads
plus amod / compound / nmod / advmod / conj modifiers); spaCy's models cannot be installed offline, so this
is a small rule-based parser of our own for the noun-phrase prompts text-to-image models get:

- a prompt is cut into words and punctuation; function words (determiners, conjunctions, prepositions,
  auxiliaries and common verbs) and punctuation end a noun phrase;
- in a run of content words the last one is the head noun and the earlier ones are its modifiers
  (``"a bright red stop sign"`` -> noun ``sign``, attributes ``bright red stop``); known adjectives joined by
  ``and`` / ``or`` before a noun stay one phrase (``"a red and blue square"``);
- a phrase after a preposition whose noun is a place word (``"at the top left"``, ``"on a gray
  background"``) is a location, not a subject, and is left out unless ``include_prepositional``;
- only nouns with at least one modifier form a group (a lone noun has nothing to merge).

Explicit groups may be given instead: phrases (``"red circle"``, the last word is the noun) found in the
prompt in order, or token indices ``(noun_indices, attribute_indices)`` into the tokenized prompt.
Token indices count the start token as 0, as in the text encoder's output sequence.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from transformers import PreTrainedTokenizerBase

DETERMINERS = frozenset(
    "a an the this that these those some any each every another its his her their my your our no".split())
CONJUNCTIONS = frozenset("and or but nor".split())
PREPOSITIONS = frozenset(
    "at on in of with under over above below behind beside besides near next to from by into onto inside outside "
    "against between among around across along through beneath underneath atop toward towards left right of for "
    "within without upon via than".split())
VERBS = frozenset(
    "is are was were be been being am has have had do does did sits sit sitting stands stand standing lies lie "
    "lying holding holds hold wearing wears wear looks look looking flying flies running runs walking walks "
    "playing plays eating eats made".split())
PRONOUNS = frozenset("it they he she we you i them him us which who whom whose what there here".split())
ADJECTIVES = frozenset(
    "red green blue yellow cyan magenta orange white black gray grey brown pink purple violet gold golden silver "
    "beige teal turquoise small large big tiny huge little tall short long wide narrow round square striped dotted "
    "spotted plaid checkered shiny matte glossy wooden metal metallic plastic glass leather fluffy furry soft hard "
    "bright dark light pale old new young hot cold wet dry rough smooth fuzzy".split())
"""Known adjectives: only used to tell ``"a red and blue square"`` (one noun) from ``"a circle and a square"``."""
PLACE_NOUNS = frozenset(
    "background foreground left right top bottom center centre middle side corner edge front back distance "
    "ground floor sky horizon scene image picture frame".split())
FUNCTION_WORDS = DETERMINERS | CONJUNCTIONS | PREPOSITIONS | VERBS | PRONOUNS

_WORD = re.compile(r"[A-Za-z0-9]+(?:['\u2019-][A-Za-z0-9]+)*|[^\sA-Za-z0-9]")


@dataclass(frozen=True)
class Word:
    text: str
    start: int
    end: int
    """Character span ``[start, end)`` in the prompt."""

    @property
    def lower(self) -> str:
        return self.text.lower()

    @property
    def is_content(self) -> bool:
        return self.text[0].isalnum() and self.lower not in FUNCTION_WORDS


@dataclass(frozen=True)
class TokenGroup:
    """One object: its noun's token indices and its attributes' token indices (prompt positions, BOS = 0)."""

    noun: tuple[int, ...]
    attributes: tuple[int, ...]
    phrase: str
    """The noun chunk (``"a red circle"``): the anchor prompt of the semantic binding loss."""
    noun_text: str
    """The bare noun (``"circle"``): what the cleaned prompt keeps."""

    @property
    def tokens(self) -> tuple[int, ...]:
        return self.noun + self.attributes


@dataclass(frozen=True)
class ParsedPrompt:
    prompt: str
    groups: tuple[TokenGroup, ...]
    cleaned_prompt: str
    """The prompt without the groups' attributes (``"a circle and a square"``): the source of the end tokens
    substituted at ``eot_replace_step`` (ToMe's end-token substitution)."""
    num_tokens: int
    """Tokens of the prompt including the start and end tokens (before padding / truncation)."""


ExplicitGroup = str | tuple[Sequence[int], Sequence[int]]
"""A phrase such as ``"red circle"`` (last word = noun), or ``(noun_indices, attribute_indices)``."""


def split_words(text: str) -> list[Word]:
    return [Word(m.group(), m.start(), m.end()) for m in _WORD.finditer(text)]


def noun_phrases(words: Sequence[Word], include_prepositional: bool = False) -> list[tuple[int, int, int]]:
    """``(chunk_start, first_modifier, noun)`` word indices of each noun with at least one modifier."""
    out: list[tuple[int, int, int]] = []
    i = 0
    while i < len(words):
        if not words[i].is_content:
            i += 1
            continue
        j = i
        # Extend over content words, and over "and"/"or" between two adjectives ("red and blue square").
        while j + 1 < len(words) and (words[j + 1].is_content or _adjective_conjunction(words, j + 1)):
            j += 1
        chunk = i
        while chunk > 0 and words[chunk - 1].lower in DETERMINERS:
            chunk -= 1
        location = chunk > 0 and words[chunk - 1].lower in PREPOSITIONS and words[j].lower in PLACE_NOUNS
        if j > i and (include_prepositional or not location):
            out.append((chunk, i, j))
        i = j + 1
    return out


def _adjective_conjunction(words: Sequence[Word], k: int) -> bool:
    """Is ``words[k]`` an ``and``/``or`` between two known adjectives that a noun follows?"""
    return (words[k].lower in ("and", "or") and 0 < k and k + 2 < len(words)
            and words[k - 1].lower in ADJECTIVES and words[k + 1].lower in ADJECTIVES and words[k + 2].is_content)


def word_tokens(prompt: str, tokenizer: PreTrainedTokenizerBase) -> tuple[list[Word], list[list[int]], int]:
    """Words of the prompt, the token indices of each word (BOS = 0), and the prompt's token count."""
    encoded = tokenizer(prompt, return_offsets_mapping=True, add_special_tokens=True)
    words = split_words(prompt)
    pieces: list[list[int]] = [[] for _ in words]
    for index, (start, end) in enumerate(encoded["offset_mapping"]):
        if end <= start:
            continue  # special tokens
        for w, word in enumerate(words):
            if word.start <= start and end <= word.end:
                pieces[w].append(index)
                break
    return words, pieces, len(encoded["input_ids"])


def parse_prompt(prompt: str, tokenizer: PreTrainedTokenizerBase, groups: Sequence[ExplicitGroup] | None = None,
                 include_prepositional: bool = False) -> ParsedPrompt:
    """Find (or place) the token groups of ``prompt`` and build its cleaned prompt.

    Raises ``ValueError`` when an explicit phrase is not in the prompt or token indices are out of range.
    """
    if not prompt.strip():
        raise ValueError("ToMe needs a non-empty prompt")
    words, pieces, num_tokens = word_tokens(prompt, tokenizer)
    limit = min(num_tokens, tokenizer.model_max_length) - 1  # the last kept position holds the end token
    if groups is None:
        candidates = [_span_group(span, prompt, words, pieces, limit)
                      for span in noun_phrases(words, include_prepositional)]
    else:
        phrase_spans = iter(_explicit_spans(words, groups))
        candidates = [_span_group(next(phrase_spans), prompt, words, pieces, limit) if isinstance(group, str)
                      else _index_group(group, prompt, words, pieces, limit) for group in groups]
    found = [g for g in candidates if g is not None]
    return ParsedPrompt(prompt, tuple(found), _cleaned(prompt, words, found, pieces), num_tokens)


def _span_group(span: tuple[int, int, int], prompt: str, words: Sequence[Word], pieces: Sequence[Sequence[int]],
                limit: int) -> TokenGroup | None:
    """(chunk, first modifier, noun) word indices -> a token group; None when truncation cuts it off."""
    chunk, first, noun = span
    noun_tokens = tuple(pieces[noun])
    attr_tokens = tuple(t for w in range(first, noun) if words[w].is_content for t in pieces[w])
    if not noun_tokens or max(noun_tokens + attr_tokens) >= limit:
        return None
    return TokenGroup(noun_tokens, attr_tokens, prompt[words[chunk].start : words[noun].end], words[noun].text)


def _explicit_spans(words: Sequence[Word], groups: Sequence[ExplicitGroup]) -> list[tuple[int, int, int]]:
    """Each phrase group -> (chunk, first, noun) word indices, searched left to right."""
    spans, cursor = [], 0
    lowered = [w.lower for w in words]
    for group in groups:
        if not isinstance(group, str):
            continue
        target = [w.lower for w in split_words(group)]
        if not target:
            raise ValueError(f"empty token group phrase {group!r}")
        for start in list(range(cursor, len(words))) + list(range(cursor)):
            if lowered[start : start + len(target)] == target:
                break
        else:
            raise ValueError(f"token group {group!r} is not a phrase of the prompt {' '.join(lowered)!r}")
        chunk = start
        while chunk > 0 and words[chunk - 1].lower in DETERMINERS:
            chunk -= 1
        spans.append((chunk, start, start + len(target) - 1))
        cursor = start + len(target)
    return spans


def _index_group(group: tuple[Sequence[int], Sequence[int]], prompt: str, words: Sequence[Word],
                 pieces: Sequence[Sequence[int]], limit: int) -> TokenGroup:
    try:
        noun, attributes = (tuple(int(i) for i in part) for part in group)
    except (TypeError, ValueError) as err:
        raise ValueError(f"a token-index group is (noun_indices, attribute_indices), got {group!r}") from err
    if not noun:
        raise ValueError(f"token group {group!r} has no noun index")
    bad = [i for i in noun + attributes if not 1 <= i < limit]
    if bad:
        raise ValueError(f"token indices {bad} are outside the prompt's word pieces 1..{limit - 1}")
    owners = sorted({w for w, p in enumerate(pieces) for i in noun + attributes if i in p})
    phrase = prompt[words[owners[0]].start : words[owners[-1]].end] if owners else prompt
    noun_words = [words[w].text for w, p in enumerate(pieces) if set(p) & set(noun)]
    return TokenGroup(noun, attributes, phrase, " ".join(noun_words))


def _cleaned(prompt: str, words: Sequence[Word], groups: Sequence[TokenGroup],
             pieces: Sequence[Sequence[int]]) -> str:
    """The prompt with every attribute word (and a conjunction inside an attribute list) removed."""
    attribute_tokens = {t for g in groups for t in g.attributes}
    drop = {w for w, p in enumerate(pieces) if p and set(p) <= attribute_tokens}
    for w in range(1, len(words) - 1):
        if words[w].lower in ("and", "or") and w - 1 in drop and w + 1 in drop:
            drop.add(w)
    kept = [words[w] for w in range(len(words)) if w not in drop]
    out = ""
    for w, word in enumerate(kept):
        glue = w > 0 and (not word.text[0].isalnum() or prompt[kept[w - 1].end : word.start] == "")
        out += word.text if w == 0 or glue else " " + word.text
    return out
