"""Text -> US-English phoneme units from ``espeak-ng`` IPA: the intelligibility judge's labels and references.

Every text is phonemised with the ``en-us`` voice, whoever speaks it, so the judge maps any accent to one
phoneme set and its PER is measured against the phonemes of the text the generator was asked to say.

Deterministic normalisation of espeak's ``-q -x --ipa`` output:

- stress marks (``ˈ ˌ``), syllabic marks, tie bars and zero-width joiners are dropped: stress is prosody, not
  identity, and the recogniser is scored on phoneme identity only;
- word and clause boundaries are dropped: there is no pause between words in speech, so a boundary symbol
  would only add unlearnable errors;
- the rest is split by greedy longest match against ``PHONEME_INVENTORY`` (diphthongs, long vowels and the
  affricates ``tʃ dʒ`` are one unit); a length mark that follows no long vowel is dropped, and any other
  symbol is kept as is and maps to ``<unk>`` in :func:`phoneme_ids` (never an error).
"""

from __future__ import annotations

import functools
import subprocess

from pipelines.data.speech import espeak_binary

BLANK = "<blank>"
UNK = "<unk>"

_MULTI = ("aɪə", "aɪ", "aʊ", "eɪ", "oʊ", "əʊ", "ɔɪ", "iə", "eə", "ɪə", "ʊə",
          "iː", "uː", "ɑː", "ɔː", "ɜː", "oː", "aː", "tʃ", "dʒ")
_SINGLE = ("p", "b", "t", "d", "k", "ɡ", "f", "v", "θ", "ð", "s", "z", "ʃ", "ʒ", "h", "x", "m", "n", "ŋ", "l",
           "ɹ", "r", "w", "j", "ɾ", "ʔ", "ɬ", "ɪ", "i", "ɛ", "æ", "ɑ", "ɒ", "ɔ", "ʊ", "u", "ʌ", "ə", "ɚ", "ɝ",
           "ɐ", "ᵻ", "a", "e", "o", "ɜ", "ɵ", "y")
PHONEME_INVENTORY: tuple[str, ...] = (BLANK, UNK) + _MULTI + _SINGLE
"""Fixed output alphabet: index 0 is the CTC blank, index 1 the unknown symbol."""

_INDEX = {symbol: i for i, symbol in enumerate(PHONEME_INVENTORY)}
_DROPPED = str.maketrans("", "", "ˈˌ\u0329\u0361\u035c\u200d")
_LENGTH = "ː"
_MAX_UNIT = max(len(u) for u in _MULTI)


@functools.lru_cache(maxsize=65536)
def espeak_ipa(text: str) -> str:
    """Raw ``espeak-ng -q -x --ipa -v en-us`` output for one text (one process per text: espeak splits clauses
    onto new lines, so a shared process could not tell where one text ends)."""
    result = subprocess.run([espeak_binary(), "-q", "-x", "--ipa", "-v", "en-us"], input=text, capture_output=True,
                            text=True, timeout=60, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"espeak-ng failed to phonemise {text!r}: {result.stderr}")
    return result.stdout


def split_ipa(ipa: str) -> list[str]:
    """Normalised IPA string -> phoneme units (rules in the module docstring)."""
    units: list[str] = []
    for word in ipa.translate(_DROPPED).split():
        i = 0
        while i < len(word):
            for size in range(min(_MAX_UNIT, len(word) - i), 0, -1):
                piece = word[i:i + size]
                if piece in _INDEX and piece not in (BLANK, UNK):
                    break
            else:
                piece = word[i]  # an unknown symbol (size 1) or a stray length mark
            if piece != _LENGTH:
                units.append(piece)
            i += len(piece)
    return units


def phonemize(texts: list[str]) -> list[list[str]]:
    """Each text's US-English phoneme units (cached per text)."""
    return [split_ipa(espeak_ipa(text)) for text in texts]


def phoneme_ids(phonemes: list[str]) -> list[int]:
    """Units -> inventory ids; symbols outside the inventory map to ``<unk>``."""
    unk = _INDEX[UNK]
    return [_INDEX.get(p, unk) for p in phonemes]
