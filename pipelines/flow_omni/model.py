"""Flow-Omni: a Qwen2 decoder over parallel text / speech streams with a flow-matching mel head.

Speech in goes through the Whisper-style :class:`SpeechEncoder`; speech out is one group of
``frames_per_step`` log-mel frames per LLM step, sampled by :class:`FlowHead` from the output of a small causal
transformer over the LLM hidden states, and fed back through a pre-net whose dropout stays on at inference
(spec flow_omni.md §3, §8). ``output="codes"`` swaps the continuous frames for WavTokenizer codes predicted with
cross-entropy: the discrete baseline of the paper's comparison, on the same LLM.

Example:
    >>> model = FlowOmni.from_preset("tiny")
    >>> model.config.frames_per_step, model.tokenizer.vocab_size
    (3, 34)
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn
from transformers import Qwen2Config, Qwen2Model

from pipelines.flow_omni.flow_head import FlowHead
from pipelines.flow_omni.speech_encoder import SpeechEncoder
from pipelines.flow_omni.streams import NUM_STATES, STATE_GEN, STATE_START, STATE_STOP, StreamBatch
from pipelines.flow_omni.text import DEFAULT_CHARACTERS, SPECIALS, CharTokenizer
from tokenizers_media.modeling import PretrainedModel, register_model
from tokenizers_media.speech.mel import MelFrontendConfig, mel_floor_value

OUTPUTS = ("mel", "codes")


@dataclasses.dataclass(frozen=True)
class FlowOmniConfig(MelFrontendConfig):
    """Hyper-parameters of Flow-Omni.

    Args:
        characters: the text alphabet (character tokens; specials are added in front).
        hidden_size / num_layers / num_heads / num_kv_heads / intermediate_size / rope_theta /
            max_positions: the Qwen2 decoder.
        encoder_dim / encoder_layers / encoder_heads / encoder_stack: the speech encoder and its adapter's
            frame stacking.
        head_layers: layers of the causal transformer between the LLM and the flow MLP.
        output: ``mel`` (continuous frames, flow matching) or ``codes`` (WavTokenizer codes, cross-entropy).
        frames_per_step: frames (or codes) produced per LLM step (the reduction factor r).
        codebook_size: codec codebook size (``codes`` only).
        delay: positions the speech stream waits behind the text.
        flow_width / flow_blocks / sigma_min / flow_draws: the flow MLP, its path and time draws per frame.
        flow_steps: default Euler steps at inference.
        prenet_dropout: dropout of the frame pre-net, kept at inference (MELLE).
        readout_weight: weight of the auxiliary L1 + L2 linear read-out of the frames (FELLE's condition loss).
        stop_weight: class weight of ``start`` / ``stop`` in the state cross-entropy (one positive each).
        (inherited) the mel front-end of the frames it reads and writes.
    """

    characters: str = DEFAULT_CHARACTERS
    hidden_size: int = 256
    num_layers: int = 4
    num_heads: int = 4
    num_kv_heads: int = 2
    intermediate_size: int = 768
    rope_theta: float = 10000.0
    max_positions: int = 2048
    encoder_dim: int = 192
    encoder_layers: int = 3
    encoder_heads: int = 4
    encoder_stack: int = 2
    head_layers: int = 2
    output: str = "mel"
    frames_per_step: int = 3
    codebook_size: int = 4096
    delay: int = 4
    flow_width: int = 256
    flow_blocks: int = 3
    sigma_min: float = 1e-4
    flow_draws: int = 4
    flow_steps: int = 10
    prenet_dropout: float = 0.5
    readout_weight: float = 1.0
    stop_weight: float = 20.0

    def __post_init__(self) -> None:
        if self.output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}, got {self.output!r}")
        if self.frames_per_step < 1 or self.delay < 0:
            raise ValueError("frames_per_step must be >= 1 and delay >= 0")

    @property
    def group_dim(self) -> int:
        """Values per step on the speech stream: r mel frames, or r code ids."""
        return self.frames_per_step * (self.n_mels if self.output == "mel" else 1)

    def qwen2(self, layers: int) -> Qwen2Config:
        return Qwen2Config(vocab_size=len(SPECIALS) + len(self.characters), hidden_size=self.hidden_size,
                           num_hidden_layers=layers, num_attention_heads=self.num_heads,
                           num_key_value_heads=self.num_kv_heads, intermediate_size=self.intermediate_size,
                           rope_theta=self.rope_theta, max_position_embeddings=self.max_positions,
                           tie_word_embeddings=True)


def _tiny() -> FlowOmniConfig:
    return FlowOmniConfig()


def _paper() -> FlowOmniConfig:
    """Qwen2-0.5B decoder, a Whisper-small-sized encoder stacked to 12.5 Hz, FELLE-sized flow MLP, r = 1."""
    return FlowOmniConfig(hidden_size=896, num_layers=24, num_heads=14, num_kv_heads=2, intermediate_size=4864,
                          rope_theta=1_000_000.0, max_positions=32768, encoder_dim=768, encoder_layers=12,
                          encoder_heads=12, encoder_stack=4, frames_per_step=1, flow_width=1024, readout_weight=0.1,
                          stop_weight=100.0)


class Prenet(nn.Module):
    """Frame group -> LLM width: 3 Linear-ReLU layers with dropout that also applies at inference."""

    def __init__(self, dim: int, hidden_size: int, dropout: float) -> None:
        super().__init__()
        self.dropout = dropout
        self.layers = nn.ModuleList([nn.Linear(dim, hidden_size), nn.Linear(hidden_size, hidden_size),
                                     nn.Linear(hidden_size, hidden_size)])

    def _drop(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        if self.dropout == 0:
            return x
        keep = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype) >= self.dropout
        return x * keep / (1 - self.dropout)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = self._drop(F.relu(x), generator)
        return x


@register_model
class FlowOmni(PretrainedModel):
    config_class = FlowOmniConfig
    presets = {"tiny": _tiny, "paper": _paper}

    def __init__(self, config: FlowOmniConfig) -> None:
        super().__init__(config)
        self.tokenizer = CharTokenizer(config.characters)
        hidden = config.hidden_size
        self.llm = Qwen2Model(config.qwen2(config.num_layers))
        self.state_embed = nn.Embedding(NUM_STATES, hidden)
        self.state_head = nn.Linear(hidden, NUM_STATES)
        self.encoder = SpeechEncoder(config.n_mels, config.encoder_dim, config.encoder_layers, config.encoder_heads,
                                     config.encoder_stack, hidden)
        # Fed hidden states, never tokens: its token table (specials only) is unused but part of the layout.
        self.output_module = Qwen2Model(dataclasses.replace(config, characters="").qwen2(config.head_layers))
        if config.output == "mel":
            self.prenet = Prenet(config.group_dim, hidden, config.prenet_dropout)
            self.flow = FlowHead(config.group_dim, hidden, config.flow_width, config.flow_blocks, config.sigma_min)
            self.readout = nn.Linear(hidden, config.group_dim)
        else:
            self.code_embed = nn.Embedding(config.frames_per_step * config.codebook_size, hidden)
            self.code_head = nn.Linear(hidden, config.frames_per_step * config.codebook_size)
        self.register_buffer("mel_mean", torch.zeros(config.n_mels))
        self.register_buffer("mel_std", torch.ones(config.n_mels))

    # -- mel normalisation -------------------------------------------------------------------------------------
    def set_mel_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Per-bin statistics of the training mel (a N(0, I) prior on raw log-mel trains badly, spec §8)."""
        self.mel_mean.copy_(mean)
        self.mel_std.copy_(std.clamp(min=1e-3))

    def normalize_mel(self, mel: torch.Tensor) -> torch.Tensor:
        return (mel - self.mel_mean) / self.mel_std

    def denormalize_mel(self, x: torch.Tensor) -> torch.Tensor:
        """Back to log-mel, clamped to a sane range before anyone exponentiates it."""
        return (x.clamp(-6, 6) * self.mel_std + self.mel_mean).clamp(min=mel_floor_value())

    def groups_to_frames(self, groups: torch.Tensor) -> torch.Tensor:
        """(..., G, group_dim) -> (..., G * r, n_mels) (``mel``) or (..., G * r) codes."""
        per_frame = self.config.n_mels if self.config.output == "mel" else 1
        frames = groups.reshape(*groups.shape[:-2], -1, per_frame)
        return frames if self.config.output == "mel" else frames[..., 0]

    def frames_to_groups(self, frames: torch.Tensor) -> torch.Tensor:
        """(F, n_mels) normalised mel or (F,) codes -> (ceil(F / r), group_dim), the last group padded."""
        r = self.config.frames_per_step
        pad = (-frames.shape[0]) % r
        if self.config.output == "mel":
            frames = torch.cat([frames, frames[-1:].expand(pad, -1)]) if pad else frames
        else:
            frames = torch.cat([frames, frames[-1:].expand(pad)])[:, None] if pad else frames[:, None]
        return frames.reshape(-1, self.config.group_dim)

    # -- embeddings -----------------------------------------------------------------------------------------------
    def feedback(self, groups: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Frame groups (..., group_dim) -> input vectors (..., hidden)."""
        if self.config.output == "mel":
            return self.prenet(groups, generator)
        offsets = torch.arange(self.config.frames_per_step, device=groups.device) * self.config.codebook_size
        return self.code_embed(groups.long() + offsets).sum(-2)

    def embed(self, text: torch.Tensor, state: torch.Tensor, groups: torch.Tensor,
              generator: torch.Generator | None = None) -> torch.Tensor:
        """Per-position input: text embedding + state embedding (+ fed-back frames where generating)."""
        e = self.llm.embed_tokens(text) + self.state_embed(state)
        generating = state == STATE_GEN
        if bool(generating.any()):
            e = e + generating[..., None] * self.feedback(groups, generator)
        return e

    def encode_speech(self, mel: torch.Tensor, lengths: torch.Tensor | None = None) -> list[torch.Tensor]:
        """Raw log-mel (B, F, n_mels) of spoken prompts -> one (K_i, hidden) tensor per clip."""
        vectors, counts = self.encoder(self.normalize_mel(mel), lengths)
        return [v[: int(k)] for v, k in zip(vectors, counts, strict=True)]

    @staticmethod
    def place_speech(e: torch.Tensor, slots: torch.Tensor, speech: list[torch.Tensor]) -> torch.Tensor:
        """Zeros shaped like ``e`` with the speech vectors written, in order, at the ``slots`` positions."""
        vectors = torch.cat(speech).to(e.dtype)
        if vectors.shape[0] != int(slots.sum()):
            raise ValueError(f"{int(slots.sum())} speech slots but {vectors.shape[0]} speech vectors")
        return torch.zeros_like(e).masked_scatter(slots[..., None].expand_as(e), vectors)

    def text_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return F.linear(hidden, self.llm.embed_tokens.weight)

    # -- training ----------------------------------------------------------------------------------------------------
    def forward(self, batch: StreamBatch, speech: list[torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """Teacher-forced losses of a batch; ``speech`` holds the encoder vectors of its spoken prompts, in order."""
        e = self.embed(batch.text, batch.state, batch.frames)
        if bool(batch.speech_slot.any()):
            if speech is None:
                raise ValueError("the batch has speech slots but no speech vectors were given")
            e = e + self.place_speech(e, batch.speech_slot, speech)
        mask = batch.attention_mask.long()
        hidden = self.llm(inputs_embeds=e, attention_mask=mask).last_hidden_state
        scored = batch.loss_mask
        losses = {"text": F.cross_entropy(self.text_logits(hidden)[scored], batch.text_target[scored])}
        weights = torch.ones(NUM_STATES, device=hidden.device)
        weights[[STATE_START, STATE_STOP]] = self.config.stop_weight
        losses["state"] = F.cross_entropy(self.state_head(hidden)[scored], batch.state_target[scored], weight=weights)
        speaking = batch.frame_mask
        if bool(speaking.any()):
            cond = self.output_module(inputs_embeds=hidden, attention_mask=mask).last_hidden_state[speaking]
            target = batch.frame_target[speaking]
            losses.update(self._speech_losses(cond, target))
        losses["loss"] = sum(losses.values())
        return losses

    def _speech_losses(self, cond: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.config.output == "codes":
            logits = self.code_head(cond).reshape(-1, self.config.codebook_size)
            return {"codes": F.cross_entropy(logits, target.long().reshape(-1))}
        read = self.readout(cond)
        return {"flow": self.flow.loss(target, cond, self.config.flow_draws),
                "readout": self.config.readout_weight * ((read - target).abs().mean() + F.mse_loss(read, target))}

    # -- inference ---------------------------------------------------------------------------------------------------
    def sample_group(self, cond: torch.Tensor, steps: int | None = None, temperature: float = 1.0,
                     generator: torch.Generator | None = None) -> torch.Tensor:
        """One frame group (N, group_dim) per conditioning row: flow sampling, or code sampling for ``codes``."""
        if self.config.output == "mel":
            return self.flow.sample(cond, steps or self.config.flow_steps, temperature, generator)
        logits = self.code_head(cond).reshape(cond.shape[0], self.config.frames_per_step, -1)
        if temperature == 0:
            return logits.argmax(-1)
        probs = torch.softmax(logits / temperature, -1).reshape(-1, logits.shape[-1])
        return torch.multinomial(probs, 1, generator=generator).reshape(cond.shape[0], -1)
