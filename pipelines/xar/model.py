"""xAR: next-X autoregressive image generation with flow matching (Ren et al., arXiv 2502.20388).

The whole encoder-decoder transformer regresses the flow-matching velocity of continuous latent tokens; there
is no separate diffusion head (Sec. 3.2). Every entity (a cell of k x k tokens by default, see
``entities.py``) carries its own time step through adaLN, so one teacher-forced pass gives the velocity of
every entity at its own noise level ("Noisy Context Learning", Sec. 3.3). A block-causal mask keeps
attention bidirectional inside an entity and causal across entities.

Module names mirror the official ``models/xar.py`` state dict so that converted xAR-B/L/H checkpoints load
strictly (``convert.py``).

Example:
    >>> model = XAR.from_preset("tiny")
    >>> x_t = torch.randn(2, model.layout.num_tokens, model.config.latent_channels)
    >>> t = torch.rand(2, model.layout.num_entities)
    >>> model.velocity(x_t, t, torch.tensor([0, 1])).shape == x_t.shape
    True
"""

from __future__ import annotations

import dataclasses
from functools import cached_property

import torch
from torch import nn

from pipelines.xar.entities import ENTITY_KINDS, EntityLayout, make_layout
from tokenizers_media.modeling import ModelConfig, PretrainedModel, register_model
from tokenizers_media.nn.transformer import ATTENTION_BACKENDS, AdaLNBlock, KVCache, TimestepEmbedder


@dataclasses.dataclass(frozen=True)
class XARConfig(ModelConfig):
    """Hyper-parameters of xAR.

    Args:
        latent_channels: channels C of a latent token (16 for the KL-16 VAE).
        grid_size: side G of the latent token grid (16 for 256 px with a stride-16 VAE).
        entity: prediction entity, one of ``cell``, ``patch``, ``subsample``, ``scale``, ``image``.
        entity_size: side k of a ``cell`` / ``subsample`` entity.
        scales: pooled sizes of the ``scale`` entity (coarse to fine, ending at G).
        width: model width D.
        encoder_depth / decoder_depth: blocks in each stack.
        num_heads: attention heads.
        mlp_hidden_dim: SwiGLU hidden size; official models use ``int(width * 4 * 2 / 3)`` (parameter-matched
            to a 4x GELU MLP).
        mlp_activation: gate activation of the SwiGLU MLP; the official models gate with exact GELU.
        num_classes: class count; the id ``num_classes`` is the null (unconditional) class.
        time_steps: times in [0, 1] are embedded as ``long(t * time_steps)``.
        frequency_dim: sinusoid size of the time embedding.
        rope_theta: RoPE base.
        norm_eps: RMSNorm epsilon.
        class_names: optional names of the class ids (used by pipelines to accept names).
    """

    latent_channels: int = 16
    grid_size: int = 16
    entity: str = "cell"
    entity_size: int = 8
    scales: tuple[int, ...] = (1, 2, 4, 8, 16)
    width: int = 768
    encoder_depth: int = 8
    decoder_depth: int = 8
    num_heads: int = 12
    mlp_hidden_dim: int = 2048
    mlp_activation: str = "gelu"
    num_classes: int = 1000
    time_steps: int = 1000
    frequency_dim: int = 256
    rope_theta: float = 10000.0
    norm_eps: float = 1e-6
    class_names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.entity not in ENTITY_KINDS:
            raise ValueError(f"unknown entity {self.entity!r}; allowed: {ENTITY_KINDS}")


def _paper(width: int, depth: int, heads: int) -> XARConfig:
    return XARConfig(
        width=width, encoder_depth=depth, decoder_depth=depth, num_heads=heads, mlp_hidden_dim=int(width * 4 * 2 / 3)
    )


@register_model
class XAR(PretrainedModel):
    """The xAR velocity network over entity-major latent tokens ``(B, N, C)``."""

    config_class = XARConfig
    presets = {
        "paper-B": lambda: _paper(768, 8, 12),
        "paper-L": lambda: _paper(1024, 16, 16),
        "paper-H": lambda: _paper(1280, 20, 16),  # [U] heads of xAR-H: MAR-H's 16 assumed
        "tiny": lambda: XARConfig(
            latent_channels=16, grid_size=8, entity_size=4, scales=(1, 2, 4, 8), width=128,
            encoder_depth=2, decoder_depth=2, num_heads=4, mlp_hidden_dim=256, num_classes=40,
        ),
    }

    def __init__(self, config: XARConfig) -> None:
        super().__init__(config)
        layout = self.layout
        d, n = config.width, layout.num_tokens
        self.encoder_pos_embed_learned = nn.Parameter(torch.zeros(1, n, d))
        self.decoder_pos_embed_learned = nn.Parameter(torch.zeros(1, n, d))
        self.register_buffer("mask", layout.block_causal_mask())
        self.register_buffer("entity_index", layout.entity_index(), persistent=False)
        self.class_emb = nn.Embedding(config.num_classes + 1, d)
        self.time_embed = TimestepEmbedder(d, config.frequency_dim)
        self.z_proj = nn.Linear(config.latent_channels, d)
        self.z_proj_ln = nn.RMSNorm(d, eps=config.norm_eps)

        def blocks(depth: int) -> nn.ModuleList:
            return nn.ModuleList(
                AdaLNBlock(d, config.num_heads, config.mlp_hidden_dim, layout.positions, config.rope_theta,
                           config.norm_eps, config.mlp_activation)
                for _ in range(depth)
            )

        self.encoder_blocks = blocks(config.encoder_depth)
        self.encoder_norm = nn.RMSNorm(d, eps=config.norm_eps)
        self.decoder_embed = nn.Linear(d, d)
        self.decoder_blocks = blocks(config.decoder_depth)
        self.decoder_norm = nn.RMSNorm(d, eps=config.norm_eps)
        self.pred = nn.Linear(d, config.latent_channels)
        self.reset_parameters()

    @cached_property
    def layout(self) -> EntityLayout:
        c = self.config
        return make_layout(c.entity, c.grid_size, c.entity_size, c.scales)

    @property
    def null_class(self) -> int:
        return self.config.num_classes

    def reset_parameters(self) -> None:
        """Training init: Xavier linears, small embeddings, zero adaLN (identity blocks, DiT Sec. 3.2)."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        for p in (self.encoder_pos_embed_learned, self.decoder_pos_embed_learned, self.class_emb.weight):
            nn.init.normal_(p, std=0.02)
        for block in [*self.encoder_blocks, *self.decoder_blocks]:
            nn.init.zeros_(block.ada_lin[1].weight)
            nn.init.zeros_(block.ada_lin[1].bias)

    def set_attention_backend(self, backend: str) -> None:
        """Switch every attention layer to ``backend`` (``sdpa`` fused, ``math`` fp32 reference)."""
        if backend not in ATTENTION_BACKENDS:
            raise ValueError(f"unknown attention backend {backend!r}; allowed: {sorted(ATTENTION_BACKENDS)}")
        for block in [*self.encoder_blocks, *self.decoder_blocks]:
            block.attn.backend = backend

    def condition(self, t: torch.Tensor, class_labels: torch.Tensor) -> torch.Tensor:
        """adaLN condition per entity: ``t`` ``(B, E)`` in [0, 1], labels ``(B,)`` -> ``(B, E, D)``."""
        steps = (t * self.config.time_steps).long()  # the official model embeds integer steps
        return self.class_emb(class_labels)[:, None] + self.time_embed(steps)

    def _run(
        self,
        x: torch.Tensor,
        condition: torch.Tensor,
        index: torch.Tensor,
        positions: slice,
        mask: torch.Tensor | None,
        caches: list[KVCache] | None,
        store: bool,
    ) -> torch.Tensor:
        """Encoder + decoder over the tokens ``positions`` of the sequence: ``(B, n, C) -> (B, n, C)``."""
        depth = len(self.encoder_blocks)
        caches = caches if caches is not None else [None] * (depth + len(self.decoder_blocks))
        start = positions.start
        h = self.z_proj_ln(self.z_proj(x) + self.encoder_pos_embed_learned[:, positions])
        for block, cache in zip(self.encoder_blocks, caches[:depth], strict=True):
            h = block(h, condition, index, mask, start, cache, store)
        h = self.decoder_embed(self.encoder_norm(h)) + self.decoder_pos_embed_learned[:, positions]
        for block, cache in zip(self.decoder_blocks, caches[depth:], strict=True):
            h = block(h, condition, index, mask, start, cache, store)
        return self.pred(self.decoder_norm(h))

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, class_labels: torch.Tensor) -> torch.Tensor:
        """Teacher-forced velocity of every entity in one pass.

        Args:
            x_t: ``(B, N, C)`` noisy latent tokens in entity-major order.
            t: ``(B, E)`` one time in [0, 1] per entity (1 = pure noise).
            class_labels: ``(B,)`` class ids; ``num_classes`` is the null class.

        Returns:
            ``(B, N, C)`` velocity ``eps - x`` predicted for every token.
        """
        self._check(x_t, t, class_labels)
        condition = self.condition(t, class_labels)
        n = self.layout.num_tokens
        return self._run(x_t, condition, self.entity_index, slice(0, n), self.mask, None, False)

    def velocity(self, x_t: torch.Tensor, t: torch.Tensor, class_labels: torch.Tensor) -> torch.Tensor:
        """Alias of ``forward`` (the contract used by samplers and golden checks)."""
        return self(x_t, t, class_labels)

    def new_caches(self) -> list[KVCache]:
        """Empty KV caches, one per block (encoder then decoder), for entity-by-entity sampling."""
        return [KVCache() for _ in range(len(self.encoder_blocks) + len(self.decoder_blocks))]

    def entity_velocity(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        class_labels: torch.Tensor,
        entity: int,
        caches: list[KVCache],
        store: bool = False,
    ) -> torch.Tensor:
        """Velocity of one entity given the entities committed to ``caches`` (KV-cached AR step).

        Args:
            x: ``(B, n, C)`` tokens of entity ``entity``.
            t: ``(B,)`` its time.
            class_labels: ``(B,)``.
            entity: which entity (fixes positions); all earlier ones must already be in ``caches``.
            caches: from ``new_caches``.
            store: append this entity's keys/values to the caches (feed it back as clean context).
        """
        start, size = self.layout.starts[entity], self.layout.sizes[entity]
        if x.shape[1] != size or caches[0].length != start:
            raise ValueError(
                f"entity {entity} has {size} tokens after {start} cached ones; got {x.shape[1]} tokens "
                f"after {caches[0].length}"
            )
        condition = self.condition(t[:, None], class_labels)
        index = torch.zeros(size, dtype=torch.long, device=x.device)
        return self._run(x, condition, index, slice(start, start + size), None, caches, store)

    def _check(self, x_t: torch.Tensor, t: torch.Tensor, class_labels: torch.Tensor) -> None:
        n, c, e = self.layout.num_tokens, self.config.latent_channels, self.layout.num_entities
        if x_t.ndim != 3 or x_t.shape[1:] != (n, c):
            raise ValueError(f"x_t must be (B, {n}, {c}), got {tuple(x_t.shape)}")
        if t.shape != (x_t.shape[0], e):
            raise ValueError(f"t must be (B, E) = ({x_t.shape[0]}, {e}), got {tuple(t.shape)}")
        if class_labels.shape != (x_t.shape[0],):
            raise ValueError(f"class_labels must be ({x_t.shape[0]},), got {tuple(class_labels.shape)}")
