"""A small phoneme CTC recogniser on log-mel frames: the offline intelligibility judge (spec flow_omni.md §7).

It reads the same log-mel frames that Flow-Omni generates (:class:`~tokenizers_media.speech.mel.LogMel`,
75 frames/s), so generated speech is scored without a vocoder. Each utterance is normalised per mel bin with
its own mean and variance over its valid frames: a generated mel whose level or contrast is off by a constant
is judged on its shape, not its offset. A two-conv front-end (the first strided) halves the frame rate
(37.5 positions/s, still about three per phoneme at fast espeak speeds), a pre-norm transformer encoder adds
context, and a linear layer gives CTC logits (id 0 = blank).

Example::

    model = PhonemeRecognizer.from_preset("tiny", vocab_size=70)
    mel = LogMel(model.config.mel_spec)(wav)        # (B, F, 80)
    ids = model.transcribe(mel, lengths)            # greedy CTC, one list per utterance
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from tokenizers_media.modeling import PretrainedModel, register_model
from tokenizers_media.speech.mel import MelFrontendConfig, mel_floor_value

BLANK_ID = 0


@dataclass(frozen=True)
class PhonemeRecognizerConfig(MelFrontendConfig):
    """Hyper-parameters.

    Args:
        vocab_size: CTC outputs including the blank at id 0.
        symbols: optional names of the outputs (``len == vocab_size``); ``transcribe`` returns them, or the ids
            as strings when empty.
        dim, layers, heads, ffn_dim, dropout: transformer encoder size.
        conv_kernel: kernel of the two front-end convs (the first has stride 2, so both run at half rate).
        (inherited) the mel front-end of the input frames.
    """

    vocab_size: int = 70
    symbols: tuple[str, ...] = ()
    dim: int = 144
    layers: int = 4
    heads: int = 4
    ffn_dim: int = 512
    dropout: float = 0.1
    conv_kernel: int = 5

    def __post_init__(self) -> None:
        if self.symbols and len(self.symbols) != self.vocab_size:
            raise ValueError(f"symbols has {len(self.symbols)} names for vocab_size {self.vocab_size}")
        if self.dim % self.heads:
            raise ValueError(f"dim {self.dim} must be divisible by heads {self.heads}")
        if self.conv_kernel % 2 == 0:
            raise ValueError(f"conv_kernel must be odd, got {self.conv_kernel}")



def _sinusoids(length: int, dim: int) -> torch.Tensor:
    """``(length, dim)`` fixed sinusoidal positions (no length limit baked into the weights)."""
    pos = torch.arange(length, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10_000.0) / dim))
    table = torch.zeros(length, dim)
    table[:, 0::2], table[:, 1::2] = torch.sin(pos * freq), torch.cos(pos * freq)
    return table


def frame_mask(lengths: torch.Tensor, frames: int) -> torch.Tensor:
    """``(B, frames)`` bool, True on valid frames."""
    return torch.arange(frames, device=lengths.device)[None] < lengths[:, None]


def normalize_utterances(mel: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Per-utterance, per-bin mean/variance normalisation over the valid frames; padding becomes 0."""
    mask = frame_mask(lengths, mel.shape[1])[..., None].to(mel.dtype)
    count = mask.sum(1, keepdim=True).clamp(min=1)
    mean = (mel * mask).sum(1, keepdim=True) / count
    var = (((mel - mean) * mask) ** 2).sum(1, keepdim=True) / count
    return (mel - mean) / (var + 1e-2).sqrt() * mask


@register_model
class PhonemeRecognizer(PretrainedModel):
    config_class = PhonemeRecognizerConfig
    presets = {
        "tiny": lambda: PhonemeRecognizerConfig(),
        "small": lambda: PhonemeRecognizerConfig(dim=256, layers=6, heads=4, ffn_dim=1024),
    }

    def __init__(self, config: PhonemeRecognizerConfig) -> None:
        super().__init__(config)
        k, d = config.conv_kernel, config.dim
        self.subsample = nn.Conv1d(config.n_mels, d, k, stride=2, padding=k // 2)
        self.conv = nn.Conv1d(d, d, k, padding=k // 2)
        layer = nn.TransformerEncoderLayer(d, config.heads, config.ffn_dim, config.dropout, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, config.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, config.vocab_size)

    @staticmethod
    def output_lengths(lengths: torch.Tensor) -> torch.Tensor:
        """Positions after the stride-2 front-end for inputs of ``lengths`` frames."""
        return (lengths + 1) // 2

    def forward(self, mel: torch.Tensor, lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-mel ``(B, F, n_mels)`` -> CTC logits ``(B, ceil(F/2), vocab)`` and their valid lengths ``(B,)``."""
        if mel.dim() != 3 or mel.shape[-1] != self.config.n_mels:
            raise ValueError(f"expected log-mel (B, F, {self.config.n_mels}), got {tuple(mel.shape)}")
        if lengths is None:
            lengths = torch.full((mel.shape[0],), mel.shape[1], device=mel.device)
        lengths = lengths.to(mel.device)
        x = normalize_utterances(mel.clamp(min=mel_floor_value()), lengths)
        out_lengths = self.output_lengths(lengths)
        valid = frame_mask(out_lengths, (mel.shape[1] + 1) // 2)
        # Zero the padding between the convs so a clip's result does not depend on what it is batched with.
        x = F.gelu(self.subsample(x.transpose(1, 2))) * valid[:, None]
        x = F.gelu(self.conv(x)).transpose(1, 2)
        x = x + _sinusoids(x.shape[1], x.shape[2]).to(x)
        x = self.encoder(x, src_key_padding_mask=~valid)
        return self.head(self.norm(x)), out_lengths

    def log_probs(self, mel: torch.Tensor, lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """CTC log-probabilities ``(B, T, vocab)`` and lengths, as ``F.ctc_loss`` wants them (after a transpose)."""
        logits, out_lengths = self(mel, lengths)
        return logits.log_softmax(-1), out_lengths

    def ctc_loss(self, mel: torch.Tensor, lengths: torch.Tensor, targets: torch.Tensor,
                 target_lengths: torch.Tensor) -> torch.Tensor:
        """Mean CTC loss per target symbol; ``targets`` is ``(B, S)`` padded, ids > 0."""
        logp, out_lengths = self.log_probs(mel, lengths)
        return F.ctc_loss(logp.transpose(0, 1), targets, out_lengths, target_lengths, blank=BLANK_ID,
                          reduction="mean", zero_infinity=True)

    @torch.no_grad()
    def decode_ids(self, mel: torch.Tensor, lengths: torch.Tensor | None = None) -> list[list[int]]:
        """Greedy CTC: best id per position, repeats merged, blanks removed."""
        logits, out_lengths = self(mel, lengths)
        best = logits.argmax(-1)
        out = []
        for row, n in zip(best, out_lengths.tolist(), strict=True):
            ids = torch.unique_consecutive(row[:n]).tolist()
            out.append([i for i in ids if i != BLANK_ID])
        return out

    def transcribe(self, mel: torch.Tensor, lengths: torch.Tensor | None = None) -> list[list[str]]:
        """Greedy CTC transcription as symbol names (``config.symbols``, or ids as strings)."""
        names = self.config.symbols
        return [[names[i] if names else str(i) for i in ids] for ids in self.decode_ids(mel, lengths)]
