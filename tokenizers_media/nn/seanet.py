"""SEANet encoder as used by EnCodec and WavTokenizer (shared/specs/audio.md, section 1).

Non-causal, weight-normed, reflect-padded convolutions; one residual block per stage with a 1x1 conv shortcut;
the downsampling ratios are applied in reverse order (ratios (8, 5, 4, 2) -> strides 2, 4, 5, 8); a 2-layer LSTM
with a skip connection; ELU activations. Module indices reproduce EnCodec's ``model.<i>`` layout
(conv, [resblock, ELU, down-conv] per stage, LSTM, ELU, conv), so official weights load by name.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from tokenizers_media.nn.conv import SConv1d


class SEANetResnetBlock(nn.Module):
    """x + block(x): ELU, conv k (dilated) C -> C / compress, ELU, conv 1x1 back to C; shortcut = 1x1 conv."""

    def __init__(self, dim: int, kernel_size: int = 3, dilation: int = 1, compress: int = 2) -> None:
        super().__init__()
        hidden = dim // compress
        self.block = nn.ModuleList([
            nn.ELU(), SConv1d(dim, hidden, kernel_size, dilation=dilation),
            nn.ELU(), SConv1d(hidden, dim, 1),
        ])
        self.shortcut = SConv1d(dim, dim, 1)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """(B, C, T) -> (B, C, T)."""
        h = x
        for layer in self.block:
            h = layer(h, lengths) if isinstance(layer, SConv1d) else layer(h)
        return self.shortcut(x, lengths) + h


class SLSTM(nn.Module):
    """Unidirectional LSTM over time with a skip connection, on (B, C, T) tensors."""

    def __init__(self, dim: int, num_layers: int = 2) -> None:
        super().__init__()
        self.lstm = nn.LSTM(dim, dim, num_layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T) -> (B, C, T). Causal in time, so padding after a clip never changes its frames."""
        seq = x.permute(2, 0, 1)  # (T, B, C)
        out, _ = self.lstm(seq)
        return (out + seq).permute(1, 2, 0)


class SEANetEncoder(nn.Module):
    """Waveform (B, 1, T) -> latents (B, dimension, ceil(T / prod(ratios))).

    Args:
        channels: audio channels (1).
        dimension: latent size (WavTokenizer: 512).
        n_filters: channels after the first conv, doubled at each downsampling (32).
        ratios: downsampling ratios in EnCodec's (decoder) order; the encoder applies them reversed.
        n_residual_layers: residual blocks per stage (1); block j uses dilation ``dilation_base ** j``.
        kernel_size, last_kernel_size, residual_kernel_size: 7, 7, 3.
        dilation_base: 2.
        compress: channel reduction inside residual blocks (2).
        lstm_layers: LSTM layers before the last conv (2; 0 = none).
    """

    def __init__(self, channels: int = 1, dimension: int = 512, n_filters: int = 32,
                 ratios: Sequence[int] = (8, 5, 4, 2), n_residual_layers: int = 1, kernel_size: int = 7,
                 last_kernel_size: int = 7, residual_kernel_size: int = 3, dilation_base: int = 2,
                 compress: int = 2, lstm_layers: int = 2) -> None:
        super().__init__()
        self.hop_length = math.prod(ratios)
        width = n_filters
        layers: list[nn.Module] = [SConv1d(channels, width, kernel_size)]
        for ratio in reversed(ratios):
            layers += [SEANetResnetBlock(width, residual_kernel_size, dilation_base**j, compress)
                       for j in range(n_residual_layers)]
            layers += [nn.ELU(), SConv1d(width, width * 2, kernel_size=2 * ratio, stride=ratio)]
            width *= 2
        if lstm_layers:
            layers.append(SLSTM(width, lstm_layers))
        layers += [nn.ELU(), SConv1d(width, dimension, last_kernel_size)]
        self.model = nn.ModuleList(layers)

    def forward(self, wav: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """(B, C, T) -> (B, dimension, ceil(T / hop)).

        ``lengths`` (B,) marks a padded batch: row b holds ``lengths[b]`` samples, and its first
        ``ceil(lengths[b] / hop)`` frames equal those of encoding the clip alone (the rest are don't-care).
        """
        layers = list(self.model)
        split = next((i for i, layer in enumerate(layers) if isinstance(layer, SLSTM)), len(layers))
        if wav.shape[0] > 1 and not torch.is_grad_enabled():
            # Inference on a batch: the full-rate convs are memory-bound (a 10 s clip's first activation is 30 MB
            # per clip), so batching them costs ~2x per clip; only the LSTM and what follows gain from a batch.
            rows = [self._run(layers[:split], wav[b : b + 1], None if lengths is None else lengths[b : b + 1])
                    for b in range(wav.shape[0])]
            x = torch.cat([r[0] for r in rows])
            lengths = None if lengths is None else torch.cat([r[1] for r in rows])
        else:
            x, lengths = self._run(layers[:split], wav, lengths)
        return self._run(layers[split:], x, lengths)[0]

    @staticmethod
    def _run(layers: list[nn.Module], x: torch.Tensor, lengths: torch.Tensor | None
             ) -> tuple[torch.Tensor, torch.Tensor | None]:
        for layer in layers:
            if isinstance(layer, SConv1d):
                x = layer(x, lengths)
                lengths = None if lengths is None else layer.output_lengths(lengths)
            elif isinstance(layer, SEANetResnetBlock):
                x = layer(x, lengths)
            else:
                x = layer(x)
        return x, lengths
