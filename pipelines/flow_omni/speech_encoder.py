"""Whisper-style speech encoder and the adapter that projects it into the LLM.

Flow-Omni listens through a Whisper encoder followed by "several linear blocks" (spec flow_omni.md §1). Whisper
weights cannot be fetched here, so the same shape is built from a config and trained: two convolutions (the
second strided by 2), fixed sinusoidal positions, pre-norm transformer layers and a final LayerNorm; the adapter
stacks ``stack`` consecutive outputs (lower rate) and maps them with Linear-GELU-Linear to the LLM width.
Unlike Whisper it takes any length (no 30-s padding), with a key-padding mask for batches.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tokenizers_media.nn.transformer import timestep_embedding


class SpeechEncoder(nn.Module):
    """Normalised log-mel (B, F, n_mels) -> LLM-width vectors (B, K, hidden), K = ceil(ceil(F / 2) / stack)."""

    def __init__(self, n_mels: int, dim: int, layers: int, heads: int, stack: int, hidden_size: int,
                 dropout: float = 0.1) -> None:
        super().__init__()
        self.dim, self.stack = dim, stack
        self.conv1 = nn.Conv1d(n_mels, dim, 3, padding=1)
        self.conv2 = nn.Conv1d(dim, dim, 3, stride=2, padding=1)
        self.layers = nn.ModuleList([
            nn.TransformerEncoderLayer(dim, heads, 4 * dim, dropout, activation="gelu", batch_first=True,
                                       norm_first=True)
            for _ in range(layers)
        ])
        self.ln_post = nn.LayerNorm(dim)
        self.adapter = nn.Sequential(nn.Linear(dim * stack, hidden_size), nn.GELU(),
                                     nn.Linear(hidden_size, hidden_size))

    def output_lengths(self, frames: torch.Tensor) -> torch.Tensor:
        return ((frames + 1) // 2 + self.stack - 1) // self.stack

    def forward(self, mel: torch.Tensor, lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns the vectors and each clip's number of valid vectors."""
        batch, frames, _ = mel.shape
        lengths = torch.full((batch,), frames, device=mel.device) if lengths is None else lengths.to(mel.device)
        valid = (torch.arange(frames, device=mel.device)[None] < lengths[:, None])[:, None]  # (B, 1, F)
        # Padding is zeroed before each conv, so a clip encodes the same alone or in a padded batch.
        h = F.gelu(self.conv1(mel.transpose(1, 2) * valid)) * valid
        x = F.gelu(self.conv2(h)).transpose(1, 2)  # (B, F', dim)
        steps = x.shape[1]
        positions = timestep_embedding(torch.arange(steps, device=mel.device), self.dim).to(x.dtype)
        x = x + positions
        half = (lengths + 1) // 2
        padding = torch.arange(steps, device=mel.device)[None] >= half[:, None]
        for layer in self.layers:
            x = layer(x, src_key_padding_mask=padding if bool(padding.any()) else None)
        x = self.ln_post(x).masked_fill(padding[..., None], 0.0)
        x = F.pad(x, (0, 0, 0, (-steps) % self.stack))
        stacked = x.reshape(batch, -1, self.dim * self.stack)
        return self.adapter(stacked), self.output_lengths(lengths)
