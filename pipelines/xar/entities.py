"""Prediction entities of xAR (arXiv 2502.20388, Sec. 3.1, Fig. 2): how latent tokens are grouped and ordered.

An entity is the unit predicted in one autoregressive step. Tokens are stored entity-major: the sequence is
entity 0's tokens, then entity 1's, ... Inside an entity attention is bidirectional; across entities it is
causal (``block_causal_mask``).

- ``cell``: k x k squares of neighbouring tokens in raster order of cells (the official default: 4 cells of
  8 x 8 on a 16 x 16 grid).
- ``patch``: one token per entity (cell with k = 1, i.e. plain next-token AR in raster order).
- ``subsample``: k x k tokens spread over the whole grid with stride G / k (non-local grouping); entity
  ``(a, b)`` holds the tokens at rows ``a, a + s, ...`` and columns ``b, b + s, ...``.
- ``scale``: coarse to fine; entity i is the latent grid area-pooled to ``scales[i]``; the image is the
  last (finest) scale, which must equal the grid size.
- ``image``: the whole grid as one entity (a plain flow-matching model).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

ENTITY_KINDS = ("cell", "patch", "subsample", "scale", "image")


@dataclass(frozen=True)
class EntityLayout:
    """Token order of one entity kind.

    Attributes:
        grid_size: side G of the latent grid.
        sizes: tokens per entity, ``(E,)`` in AR order.
        positions: ``(N, 2)`` float (row, column) of every sequence token on the G x G grid.
        order: for grid-based kinds, ``(N,)`` raster index of each sequence token; None for ``scale``.
        scales: the pooled sizes of the ``scale`` kind (empty otherwise).
    """

    grid_size: int
    sizes: tuple[int, ...]
    positions: torch.Tensor
    order: torch.Tensor | None
    scales: tuple[int, ...] = ()

    @property
    def num_entities(self) -> int:
        return len(self.sizes)

    @property
    def num_tokens(self) -> int:
        return sum(self.sizes)

    @property
    def starts(self) -> tuple[int, ...]:
        """Sequence index of each entity's first token."""
        return tuple(sum(self.sizes[:i]) for i in range(len(self.sizes)))

    def entity_index(self) -> torch.Tensor:
        """``(N,)`` long: the entity of each sequence token."""
        return torch.repeat_interleave(torch.arange(self.num_entities), torch.tensor(self.sizes))

    def block_causal_mask(self) -> torch.Tensor:
        """``(1, 1, N, N)`` additive mask: 0 where token i may see token j (entity(j) <= entity(i)), -inf else."""
        entity = self.entity_index()
        allowed = entity[None, :] <= entity[:, None]
        return torch.zeros(allowed.shape).masked_fill(~allowed, float("-inf"))[None, None]

    def to_tokens(self, latents: torch.Tensor) -> torch.Tensor:
        """``(B, C, G, G)`` latent grid -> ``(B, N, C)`` entity-major tokens."""
        if self.order is None:
            pooled = [F.adaptive_avg_pool2d(latents, s) if s != self.grid_size else latents for s in self.scales]
            return torch.cat([p.flatten(2) for p in pooled], dim=2).transpose(1, 2)
        return latents.flatten(2)[:, :, self.order.to(latents.device)].transpose(1, 2)

    def to_latents(self, tokens: torch.Tensor) -> torch.Tensor:
        """``(B, N, C)`` entity-major tokens -> ``(B, C, G, G)`` grid (the finest scale for ``scale``)."""
        b, _, c = tokens.shape
        g = self.grid_size
        if self.order is None:
            return tokens[:, -g * g :].transpose(1, 2).reshape(b, c, g, g)
        grid = torch.empty(b, c, g * g, dtype=tokens.dtype, device=tokens.device)
        grid[:, :, self.order.to(tokens.device)] = tokens.transpose(1, 2)
        return grid.reshape(b, c, g, g)


def _grid_layout(grid_size: int, groups: torch.Tensor) -> EntityLayout:
    """Layout from ``groups`` ``(E, n)``: raster indices of each entity's tokens."""
    order = groups.flatten()
    positions = torch.stack([order // grid_size, order % grid_size], dim=-1).float()
    return EntityLayout(grid_size, (groups.shape[1],) * groups.shape[0], positions, order)


def make_layout(kind: str, grid_size: int, entity_size: int = 8, scales: tuple[int, ...] = ()) -> EntityLayout:
    """Build the layout of entity ``kind`` on a ``grid_size`` square grid.

    Args:
        kind: one of ``ENTITY_KINDS``.
        grid_size: side G of the latent token grid.
        entity_size: side k of a ``cell`` / ``subsample`` entity (must divide G).
        scales: increasing pooled sizes for ``scale`` (the last must be G).
    """
    if kind not in ENTITY_KINDS:
        raise ValueError(f"unknown entity kind {kind!r}; allowed: {ENTITY_KINDS}")
    g = grid_size
    raster = torch.arange(g * g).reshape(g, g)
    if kind == "scale":
        if not scales or scales[-1] != g or list(scales) != sorted(set(scales)):
            raise ValueError(f"scales must increase strictly and end at the grid size {g}, got {scales}")
        positions = []
        for s in scales:  # a coarse token sits at the centre of the fine tokens it pools
            centre = (torch.arange(s, dtype=torch.float32) + 0.5) * g / s - 0.5
            positions.append(torch.stack(torch.meshgrid(centre, centre, indexing="ij"), dim=-1).reshape(-1, 2))
        return EntityLayout(g, tuple(s * s for s in scales), torch.cat(positions), None, tuple(scales))
    k = {"cell": entity_size, "subsample": entity_size, "patch": 1, "image": g}[kind]
    if k < 1 or g % k:
        raise ValueError(f"entity_size {k} must divide the grid size {g}")
    if kind == "subsample":
        s = g // k  # stride; entity (a, b) = tokens (a + s*i, b + s*j)
        groups = raster.reshape(k, s, k, s).permute(1, 3, 0, 2).reshape(s * s, k * k)
    else:
        n = g // k
        groups = raster.reshape(n, k, n, k).permute(0, 2, 1, 3).reshape(n * n, k * k)
    return _grid_layout(g, groups)
