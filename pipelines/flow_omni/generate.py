"""Streaming generation: one LLM step at a time, yielding the text piece and the frame group it produced.

Each step reads the LLM's last hidden state: the text head picks the next text token (or the given text is
forced, as in TTS where the text stream echoes the input), the layout fixes ``pad`` for ``delay`` steps then
``start``, after which the state head decides ``generating`` vs ``stop``; a ``generating`` step samples a frame
group from the flow head. The new position is then embedded (text + state + pre-net of the group) and fed back,
with a KV cache for the LLM and for the output transformer (``use_cache=False`` recomputes the whole prefix every
step: the benchmark's baseline).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from transformers.cache_utils import DynamicCache

from pipelines.flow_omni.model import FlowOmni
from pipelines.flow_omni.streams import (
    SPEECH_IN,
    SPEECH_OUT,
    STATE_GEN,
    STATE_PAD,
    STATE_START,
    STATE_STOP,
    prompt_streams,
)
from pipelines.flow_omni.text import EOT, PAD, SPECIALS


@dataclass
class StepEvent:
    """What one LLM step produced: a text piece (maybe empty) and maybe a frame group."""

    step: int
    text: str
    frames: torch.Tensor | None
    """(r, n_mels) log-mel frames, or (r,) codec codes for ``output="codes"``; None when not generating."""


@dataclass
class GenerationResult:
    text: str
    frames: torch.Tensor
    """All generated frames: (F, n_mels) log-mel or (F,) codes (empty when the task answers in text)."""
    steps: int
    stopped: bool
    """True when the model said ``stop`` (False: it hit the length cap or the task has no speech)."""
    events: list[StepEvent] = field(default_factory=list)


@dataclass
class GenerationOptions:
    flow_steps: int | None = None
    """Euler steps per frame group (default: the model's ``flow_steps``)."""
    temperature: float = 1.0
    """Scale of the flow's starting noise (or the code sampling temperature)."""
    max_groups: int = 200
    """Length cap of the speech stream, in frame groups."""
    max_text_tokens: int = 200
    seed: int = 0
    use_cache: bool = True


class _Decoder:
    """Runs the LLM and the output transformer over a growing sequence, with or without KV caches."""

    def __init__(self, model: FlowOmni, use_cache: bool) -> None:
        self.model, self.use_cache = model, use_cache
        self.llm_cache = DynamicCache(config=model.llm.config) if use_cache else None
        self.head_cache = DynamicCache(config=model.output_module.config) if use_cache else None
        self.prefix: torch.Tensor | None = None

    def __call__(self, embeds: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Append positions ``(1, n, H)``; returns the last LLM hidden state and output-module state (1, H)."""
        if not self.use_cache:
            self.prefix = embeds if self.prefix is None else torch.cat([self.prefix, embeds], dim=1)
            hidden = self.model.llm(inputs_embeds=self.prefix).last_hidden_state
            cond = self.model.output_module(inputs_embeds=hidden).last_hidden_state
            return hidden[:, -1], cond[:, -1]
        out = self.model.llm(inputs_embeds=embeds, cache=self.llm_cache, use_cache=True)
        self.llm_cache = out.cache
        head = self.model.output_module(inputs_embeds=out.last_hidden_state, cache=self.head_cache, use_cache=True)
        self.head_cache = head.cache
        return out.last_hidden_state[:, -1], head.last_hidden_state[:, -1]


def _prompt_embeds(model: FlowOmni, task: str, text: str | None, speech_mel: torch.Tensor | None) -> torch.Tensor:
    group_dim, device = model.config.group_dim, model.mel_mean.device
    if task in SPEECH_IN:
        if speech_mel is None:
            raise ValueError(f"task {task!r} needs speech_mel (F, n_mels)")
        vectors = model.encode_speech(speech_mel[None].float().to(device))[0]
        prompt = prompt_streams(task, group_dim, speech_positions=vectors.shape[0])
    elif not text:
        raise ValueError(f"task {task!r} needs text")
    else:
        prompt = prompt_streams(task, group_dim, model.tokenizer.encode(text))
    e = model.embed(prompt.text[None].to(device), prompt.state[None].to(device), prompt.frames[None].to(device))
    if task in SPEECH_IN:
        e = e + model.place_speech(e, prompt.speech_slot[None].to(device), [vectors])
    return e


def _next_text(model: FlowOmni, hidden: torch.Tensor, forced: list[int] | None, emitted: int) -> int:
    if forced is not None:
        return forced[emitted] if emitted < len(forced) else EOT
    logits = model.text_logits(hidden)[0]
    logits[[i for i in range(len(SPECIALS)) if i not in (EOT, PAD)]] = float("-inf")
    return int(logits.argmax())


@torch.inference_mode()
def stream(model: FlowOmni, task: str, text: str | None = None, speech_mel: torch.Tensor | None = None,
           options: GenerationOptions | None = None) -> Iterator[StepEvent]:
    """Yield one :class:`StepEvent` per LLM step until the text has ended and the speech has stopped.

    ``text`` is the prompt for ``tts`` / ``t2t`` (for ``tts`` it is also forced into the text stream);
    ``speech_mel`` is the raw log-mel (F, n_mels) of the spoken prompt for ``asr`` / ``s2s``.
    """
    options = options or GenerationOptions()
    device = model.mel_mean.device
    generator = torch.Generator(device=device).manual_seed(options.seed)
    forced = model.tokenizer.encode(text) if task == "tts" else None
    speaks, delay = task in SPEECH_OUT, model.config.delay
    decoder = _Decoder(model, options.use_cache)
    hidden, cond = decoder(_prompt_embeds(model, task, text, speech_mel))
    text_done, speech_done = False, not speaks
    emitted, groups = 0, 0
    for step in range(options.max_groups + delay + options.max_text_tokens + 2):
        token = PAD if text_done else _next_text(model, hidden, forced, emitted)
        emitted += token not in (EOT, PAD)
        text_done = text_done or token == EOT or emitted >= options.max_text_tokens
        state, group = STATE_PAD, None
        if not speech_done and speaks:
            state = _next_state(model, hidden, step, delay, groups, options.max_groups)
            speech_done = state == STATE_STOP
            if state == STATE_GEN:
                group = model.sample_group(cond, options.flow_steps, options.temperature, generator)
                groups += 1
        yield StepEvent(step, model.tokenizer.decode([token]), None if group is None else _frames(model, group))
        if text_done and speech_done:
            return
        groups_in = group if group is not None else torch.zeros(1, model.config.group_dim, device=device)
        e = model.embed(torch.tensor([[token]], device=device), torch.tensor([[state]], device=device), groups_in[None],
                        generator)
        hidden, cond = decoder(e)


def _next_state(model: FlowOmni, hidden: torch.Tensor, step: int, delay: int, groups: int, cap: int) -> int:
    """The layout fixes the delay and ``start``; the model chooses ``generating`` vs ``stop`` after one group."""
    if step < delay:
        return STATE_PAD
    if step == delay:
        return STATE_START
    if groups == 0:
        return STATE_GEN
    if groups >= cap:
        return STATE_STOP
    logits = model.state_head(hidden)[0]
    return STATE_STOP if logits[STATE_STOP] > logits[STATE_GEN] else STATE_GEN


def _frames(model: FlowOmni, group: torch.Tensor) -> torch.Tensor:
    """A sampled group as frames on the CPU, where the vocoders and callers read them."""
    frames = model.groups_to_frames(group[0][None])
    return (model.denormalize_mel(frames) if model.config.output == "mel" else frames.long()).cpu()


def generate(model: FlowOmni, task: str, text: str | None = None, speech_mel: torch.Tensor | None = None,
             options: GenerationOptions | None = None) -> GenerationResult:
    """Run :func:`stream` to the end and gather its text and frames."""
    events = list(stream(model, task, text, speech_mel, options))
    frames = [e.frames for e in events if e.frames is not None]
    empty = torch.zeros(0, model.config.n_mels) if model.config.output == "mel" else torch.zeros(0, dtype=torch.long)
    stopped = task in SPEECH_OUT and len(frames) < (options or GenerationOptions()).max_groups
    return GenerationResult("".join(e.text for e in events), torch.cat(frames) if frames else empty, len(events),
                            stopped, events)
