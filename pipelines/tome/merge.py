"""Embedding arithmetic of ToMe: composite tokens, end-token substitution, single-token prompts.

Hu et al., "Token Merging for Training-Free Semantic Binding in Text-to-Image Synthesis" (NeurIPS 2024,
arXiv 2411.07132), section 3.2: the tokens of an object and of its attributes are added into one composite
token placed at the noun, so that cross-attention sees one token per object and attributes cannot leak to
another object; section 3.3: the end tokens, which summarise the whole prompt, are replaced by those of the
prompt with the attributes removed (end-token substitution, ETS). Embeddings are ``(B, L, D)``: batch,
token positions (start token at 0), embedding width.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from pipelines.tome.parser import TokenGroup


def merge_tokens(embeds: torch.Tensor, groups: Sequence[TokenGroup], noun_weight: float = 1.1,
                 attribute_weight: float = 1.2) -> torch.Tensor:
    """Composite token ``noun_weight * sum(noun) + attribute_weight * sum(attributes)`` at each group's first
    noun position; the group's other positions are zeroed. Returns a new tensor ``(B, L, D)``."""
    out = embeds.clone()
    for group in groups:
        composite = (noun_weight * embeds[:, list(group.noun)].sum(1)
                     + attribute_weight * embeds[:, list(group.attributes)].sum(1))
        out[:, list(group.tokens)] = 0.0
        out[:, group.noun[0]] = composite
    return out


def composite_positions(groups: Sequence[TokenGroup]) -> list[int]:
    """The position holding each group's composite token (its first noun piece)."""
    return [g.noun[0] for g in groups]


def substitute_end_tokens(embeds: torch.Tensor, eot_index: int, source: torch.Tensor, source_eot_index: int
                          ) -> torch.Tensor:
    """Replace positions ``eot_index..L-1`` (end token and padding) of ``embeds`` (B, L, D) by the end token and
    padding of ``source`` (B or 1, L, D), aligned at their end tokens. Returns a new tensor."""
    length = embeds.shape[1]
    if not (0 < eot_index < length and 0 < source_eot_index < length):
        raise ValueError(f"end-token positions {eot_index}, {source_eot_index} must lie in 1..{length - 1}")
    take = min(length - eot_index, length - source_eot_index)
    out = embeds.clone()
    out[:, eot_index : eot_index + take] = source[:, source_eot_index : source_eot_index + take]
    return out


def single_token_prompts(embeds: torch.Tensor, positions: Sequence[int]) -> torch.Tensor:
    """For each position p: the prompt holding only the start token and the token at p, every other position
    zero (the composite token "alone" of the semantic binding loss). ``(B, L, D)`` -> ``(B * P, L, D)``,
    ordered image-major."""
    batch, length, _ = embeds.shape
    keep = torch.zeros(len(positions), length, 1, dtype=embeds.dtype, device=embeds.device)
    keep[:, 0] = 1.0
    for i, p in enumerate(positions):
        keep[i, p] = 1.0
    return (embeds[:, None] * keep[None]).flatten(0, 1)
