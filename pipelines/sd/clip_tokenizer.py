"""An offline CLIP tokenizer: the real 49,408-token BPE vocabulary, rebuilt from the ``open-clip-torch`` wheel.

Hub tokenizers cannot be fetched here, but open_clip ships CLIP's merges (``bpe_simple_vocab_16e6.txt.gz``).
The vocabulary is derived from them the way CLIP defines it: the 256 byte symbols, the same with the
end-of-word marker ``</w>``, one entry per merge, then ``<|startoftext|>`` and ``<|endoftext|>``. Token ids
therefore match CLIP's (``<|startoftext|>`` = 49406, ``<|endoftext|>`` = 49407).
"""

from __future__ import annotations

import gzip
from functools import lru_cache
from importlib import resources

from transformers import CLIPTokenizer
from transformers.convert_slow_tokenizer import bytes_to_unicode

CLIP_VOCAB_SIZE = 49408
CLIP_MAX_LENGTH = 77
BOS, EOS = "<|startoftext|>", "<|endoftext|>"


@lru_cache(maxsize=1)
def clip_merges() -> tuple[str, ...]:
    """CLIP's BPE merges (``"a b"`` strings) in priority order, as shipped in the open_clip wheel."""
    raw = resources.files("open_clip").joinpath("bpe_simple_vocab_16e6.txt.gz").read_bytes()
    lines = gzip.decompress(raw).decode("utf-8").split("\n")
    # Line 0 is a version header; CLIP uses the first 49152 - 256 - 2 merges (the vocabulary is 49408 long).
    return tuple(lines[1 : 1 + CLIP_VOCAB_SIZE - 2 * 256 - 2])


def clip_vocab() -> dict[str, int]:
    symbols = list(bytes_to_unicode().values())
    words = symbols + [s + "</w>" for s in symbols] + ["".join(m.split()) for m in clip_merges()] + [BOS, EOS]
    if len(words) != CLIP_VOCAB_SIZE:
        raise RuntimeError(f"rebuilt CLIP vocabulary has {len(words)} entries, expected {CLIP_VOCAB_SIZE}")
    return {w: i for i, w in enumerate(words)}


def offline_clip_tokenizer(model_max_length: int = CLIP_MAX_LENGTH) -> CLIPTokenizer:
    """A transformers ``CLIPTokenizer`` with CLIP's vocabulary, built without network access."""
    merges = [tuple(m.split()) for m in clip_merges()]
    return CLIPTokenizer(vocab=clip_vocab(), merges=merges, model_max_length=model_max_length)
