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
import torch.nn.functional as F
from torch import nn

from tokenizers_media.nn.conv import SConv1d, ceil_div


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
        if torch.is_grad_enabled():
            x, lengths = self._run(layers[:split], wav, lengths)
        else:
            x = self._convolve_clips(layers[:split], wav, lengths)
            lengths = None if lengths is None else ceil_div(lengths, self.hop_length)
        return self._run(layers[split:], x, lengths)[0]

    def _convolve_clips(self, layers: list[nn.Module], wav: torch.Tensor, lengths: torch.Tensor | None
                        ) -> torch.Tensor:
        """Inference through the convolutions before the LSTM: each clip alone, trimmed to its length, channels-last.

        Clip by clip because these full-rate layers are memory-bound (a 10 s clip's first activation is 30 MB), so
        a batch costs ~2x per clip; only the LSTM and what follows gain from batching. Trimming makes each clip's
        frames those of encoding it alone; frames past a clip's end are zeros (don't-care). The channels-last
        (B, C, 1, T) layout is :meth:`WeightNormConv1d.forward`'s fast path.
        """
        frames = math.ceil(wav.shape[-1] / self.hop_length)
        rows = []
        for b in range(wav.shape[0]):
            clip = wav[b : b + 1, :, : wav.shape[-1] if lengths is None else int(lengths[b])]
            x, _ = self._run(layers, clip[:, :, None].contiguous(memory_format=torch.channels_last), None)
            rows.append(F.pad(x[:, :, 0], (0, frames - x.shape[-1])))
        return torch.cat(rows)

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
