"""Group attention for diffusers transformers (GDT, arXiv 2410.15027, sec. 3).

The G images of a group are denoised together: in every self-attention layer their tokens are concatenated,
``(B, N, C) -> (B / G, G * N, C)``, so each image attends to every image of its group; cross-attention is
left alone, so each image still reads only its own caption. Positional embeddings are added per image before
the blocks, so concatenation adds no order between images: the layer is equivariant to the group's order.

The processor wraps the module's own processor (diffusers' ``AttnProcessor2_0`` by default) and only
regroups its input and output; with G = 1 the regrouping is the identity and the result is the stock one.
Works on any model built from ``diffusers.models.attention_processor.Attention`` blocks, in particular
``PixArtTransformer2DModel`` and ``DiTTransformer2DModel`` (which has no ``set_attn_processor``: the helper
walks the modules). A batch holds whole groups, ``[group 0 images, group 1 images, ...]``; classifier-free
guidance concatenates whole batches, so its halves stay multiples of G.

Optional, our addition (not in the paper): a ``SameImageBias``, one learned logit bias per layer and head added
to the keys of the query's own image. With shared per-image positional embeddings a token cannot tell its own
image's tokens from the same positions in the other images except by content, which at high noise there is
little of; the bias lets each head choose how much to look inside its image. It depends only on whether query
and key share an image, so the layer stays equivariant to the group's order, and with G = 1 it is a constant
shift of every logit (skipped: the stock result exactly).

Example:
    >>> install_group_attention(transformer, group_size=4)  # then run the transformer on 4 * k images
"""

from __future__ import annotations

import torch
from diffusers.models.attention_processor import Attention, AttnProcessor2_0
from torch import nn


class SameImageBias(nn.Module):
    """Learned attention-logit bias (layers, heads) for keys in the query's own image; zero at init."""

    def __init__(self, layers: int, heads: int) -> None:
        super().__init__()
        self.values = nn.Parameter(torch.zeros(layers, heads))

    def logits(self, layer: int, g: int, tokens: int) -> torch.Tensor:
        """(heads, G * N, G * N): the layer's bias on same-image (query, key) pairs, 0 elsewhere."""
        image = torch.arange(g * tokens, device=self.values.device) // tokens
        same = (image[:, None] == image[None, :]).to(self.values.dtype)
        return self.values[layer][:, None, None] * same


class GroupAttnProcessor:
    """Self-attention over the concatenated tokens of each group of ``group_size`` consecutive images."""

    def __init__(self, group_size: int, inner: object | None = None) -> None:
        self.inner = inner if inner is not None else AttnProcessor2_0()
        self.group_size = check_group_size(group_size)
        self.bias: tuple[SameImageBias, int] | None = None
        """(the model's ``SameImageBias``, this layer's index in it), set by ``install_group_attention``."""

    def __call__(self, attn: Attention, hidden_states: torch.Tensor,
                 encoder_hidden_states: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                 temb: torch.Tensor | None = None, **kwargs: object) -> torch.Tensor:
        if encoder_hidden_states is not None:
            raise ValueError("GroupAttnProcessor is for self-attention layers; leave cross-attention alone")
        if hidden_states.ndim != 3:
            raise ValueError(f"group attention needs token inputs (B, N, C), got shape {tuple(hidden_states.shape)}")
        batch, tokens, channels = hidden_states.shape
        g = self.group_size
        if batch % g:
            raise ValueError(f"batch of {batch} images is not a whole number of groups of {g}; "
                             f"pass a multiple of group_size={g} images (per classifier-free-guidance half)")
        grouped = hidden_states.reshape(batch // g, g * tokens, channels)
        mask = _group_mask(attention_mask, g, tokens)
        if self.bias is not None and g > 1:
            mask = self._with_bias(mask, batch // g, g, tokens, attn.heads)
        out = self.inner(attn, grouped, None, mask, temb, **kwargs)
        return out.reshape(batch, tokens, channels)

    def _with_bias(self, key_mask: torch.Tensor | None, groups: int, g: int, tokens: int, heads: int
                   ) -> torch.Tensor:
        """The same-image bias (plus any key mask, made additive) as a (groups * heads, G*N, G*N) float mask,
        the per-head layout diffusers' processors pass through unrepeated."""
        module, layer = self.bias
        bias = module.logits(layer, g, tokens).expand(groups, -1, -1, -1)
        if key_mask is not None:
            additive = key_mask if key_mask.is_floating_point() else torch.zeros(
                key_mask.shape, dtype=bias.dtype, device=bias.device).masked_fill(~key_mask.bool(), float("-inf"))
            bias = bias + additive[:, None]
        return bias.reshape(groups * heads, g * tokens, g * tokens)


def _group_mask(mask: torch.Tensor | None, g: int, tokens: int) -> torch.Tensor | None:
    """A per-image key mask (B, N) or (B, 1, N) -> the group's key mask (B / G, 1, G * N)."""
    if mask is None:
        return None
    if (mask.ndim == 3 and mask.shape[1] != 1) or mask.shape[-1] != tokens:
        raise ValueError(f"group attention takes key masks (B, {tokens}) or (B, 1, {tokens}), got {tuple(mask.shape)}")
    return mask.reshape(-1, 1, g * tokens)


def check_group_size(group_size: int) -> int:
    if not isinstance(group_size, int) or group_size < 1:
        raise ValueError(f"group_size must be an int >= 1, got {group_size!r}")
    return group_size


def self_attention_layers(model: nn.Module) -> dict[str, Attention]:
    """Every self-attention ``Attention`` module of a diffusers model, by name."""
    layers = {name: m for name, m in model.named_modules() if isinstance(m, Attention) and not m.is_cross_attention}
    if not layers:
        raise ValueError(f"{type(model).__name__} has no diffusers self-attention layers to group")
    return layers


def install_group_attention(model: nn.Module, group_size: int, bias: SameImageBias | None = None
                            ) -> dict[str, GroupAttnProcessor]:
    """Wrap the processor of every self-attention layer; a second call only changes G (e.g. to 1, to run
    the images independently). ``bias``, when given, has one row per self-attention layer (in module order)."""
    check_group_size(group_size)
    layers = self_attention_layers(model)
    if bias is not None and tuple(bias.values.shape[:1]) != (len(layers),):
        raise ValueError(f"SameImageBias has {bias.values.shape[0]} layers, the model {len(layers)}")
    processors = {}
    for index, (name, layer) in enumerate(layers.items()):
        if layer.group_norm is not None or layer.spatial_norm is not None:
            raise ValueError(f"{name} normalises over its tokens; grouping would change its statistics")
        processor = layer.processor
        if isinstance(processor, GroupAttnProcessor):
            processor.group_size = group_size
        else:
            processor = GroupAttnProcessor(group_size, processor)
            layer.set_processor(processor)
        if bias is not None:
            processor.bias = (bias, index)
        processors[name] = processor
    return processors

