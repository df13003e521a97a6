"""Cross-attention maps for ToMe's entropy loss: a recording processor and the loss itself.

The recorder wraps a layer's own attention processor (so the layer's output is unchanged) and, while a
store is active, also keeps the pre-softmax cross-attention scores ``(B, heads, N, L)`` (N image positions,
L text tokens) with their autograd graph, so a loss on them can be differentiated with respect to the
latents and the text embeddings. ToMe (arXiv 2411.07132, section 3.3) minimises the entropy of each
composite token's spatial attention map so that every object attends to one compact region.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from diffusers import UNet2DConditionModel

SDXL_PAPER_LAYERS = tuple(f"up_blocks.0.attentions.1.transformer_blocks.{i}.attn2" for i in (1, 2, 3))
"""The 32 x 32 cross-attention layers the paper uses on SDXL."""


class AttentionStore:
    """Scores recorded by layer name while ``active``."""

    def __init__(self) -> None:
        self.active = False
        self.scores: dict[str, torch.Tensor] = {}

    def clear(self) -> None:
        self.scores = {}


class CrossAttentionRecorder:
    """Attention processor: runs ``inner`` unchanged, and records scores into ``store`` when it is active."""

    def __init__(self, store: AttentionStore, name: str, inner) -> None:
        self.store, self.name, self.inner = store, name, inner

    def __call__(self, attn, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None, temb: torch.Tensor | None = None, **kwargs):
        if self.store.active and encoder_hidden_states is not None and hidden_states.ndim == 3:
            context = attn.norm_encoder_hidden_states(encoder_hidden_states) if attn.norm_cross else (
                encoder_hidden_states)
            query = attn.head_to_batch_dim(attn.to_q(hidden_states))  # (B * heads, N, d)
            key = attn.head_to_batch_dim(attn.to_k(context))  # (B * heads, L, d)
            scores = attn.scale * query @ key.transpose(-1, -2)
            self.store.scores[self.name] = scores.unflatten(0, (hidden_states.shape[0], attn.heads))
        return self.inner(attn, hidden_states, encoder_hidden_states, attention_mask, temb, **kwargs)


def cross_attention_layers(unet: UNet2DConditionModel) -> list[str]:
    """Names (``...attn2``) of every cross-attention layer of the UNet."""
    return [k.removesuffix(".processor") for k in unet.attn_processors if k.endswith("attn2.processor")]


def default_attention_layers(unet: UNet2DConditionModel, preferred: Sequence[str] = ()) -> list[str]:
    """``preferred`` layers that exist; else every cross-attention layer of the first up block that has any
    (the lowest-resolution decoder level, where object layout is decided)."""
    layers = cross_attention_layers(unet)
    chosen = [name for name in preferred if name in layers]
    if chosen:
        return chosen
    for block in range(len(unet.up_blocks)):
        in_block = [name for name in layers if name.startswith(f"up_blocks.{block}.")]
        if in_block:
            return in_block
    if not layers:
        raise ValueError("this UNet has no cross-attention layers; ToMe needs text cross-attention")
    return layers


@contextmanager
def recording(unet: UNet2DConditionModel, layers: Sequence[str]) -> Iterator[AttentionStore]:
    """Install recorders on ``layers`` for the duration of the block, then restore the original processors."""
    known = set(cross_attention_layers(unet))
    unknown = sorted(set(layers) - known)
    if unknown:
        raise ValueError(f"attention layers {unknown} are not cross-attention layers of this UNet; "
                         f"known: {sorted(known)}")
    original = unet.attn_processors
    store = AttentionStore()
    wrapped = {key: (CrossAttentionRecorder(store, key.removesuffix(".processor"), proc)
                     if key.removesuffix(".processor") in layers else proc) for key, proc in original.items()}
    unet.set_attn_processor(wrapped)
    try:
        yield store
    finally:
        unet.set_attn_processor(original)


def attention_entropy(scores: Sequence[torch.Tensor], positions: Sequence[int], temperature: float = 0.5
                      ) -> torch.Tensor:
    """Entropy of each token's spatial attention map, averaged over layers: ``(B, len(positions))``.

    Per layer: softmax over the text tokens except the start token (which soaks up most attention) of
    ``scores / temperature``, mean over heads, then each position's map over the N image positions is
    normalised to a distribution and its entropy taken (in nats).
    """
    per_layer = []
    for layer_scores in scores:  # (B, heads, N, L)
        probs = (layer_scores[..., 1:].float() / temperature).softmax(-1).mean(1)  # (B, N, L - 1)
        maps = probs[..., [p - 1 for p in positions]]  # (B, N, P)
        maps = maps / maps.sum(1, keepdim=True).clamp_min(1e-12)
        entropy = -(maps * maps.clamp_min(1e-12).log()).sum(1)  # (B, P)
        per_layer.append(entropy)
    return torch.stack(per_layer).mean(0)
