"""The parallel-stream layout: a text stream and a speech-state stream side by side, one LLM position each.

Mini-Omni-style parallel decoding as described for Flow-Omni (spec flow_omni.md §1, §3): every position carries
one text token and one speech item. The speech item is a state (``pad``, ``start``, ``generating``, ``stop``) plus,
at ``generating`` positions, the frame group produced by the previous step (fed back through the pre-net), or, in
a spoken prompt, one speech-encoder vector. When the answer is spoken, the text leads: the speech stream waits
``delay`` positions, then says ``start``, then one frame group per position, then ``stop``.

Position ``j``'s hidden state predicts position ``j + 1``: its text token, its state and, when that state is
``generating``, its frame group. So the hidden state at ``start`` predicts the first group, and the last
``generating`` position predicts ``stop`` (the off-by-one of spec §8). Losses count only answer targets.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pipelines.flow_omni.text import EOT, PAD, TASK_TOKENS

STATE_PAD, STATE_START, STATE_GEN, STATE_STOP = 0, 1, 2, 3
NUM_STATES = 4
TASKS = ("asr", "tts", "s2s", "t2t")
"""Task formats: speech or text in (first letter) x speech or text out; ``tts`` echoes its text while speaking."""

SPEECH_IN = {"asr", "s2s"}
SPEECH_OUT = {"tts", "s2s"}


@dataclass
class Streams:
    """One sequence, all tensors of length ``L`` (the frame tensor ``(L, group_dim)``)."""

    text: torch.Tensor
    state: torch.Tensor
    frames: torch.Tensor
    """Frame group fed back at each ``generating`` position (zeros elsewhere), normalised mel."""
    speech_slot: torch.Tensor
    """True at the prompt positions that receive speech-encoder vectors (in order)."""
    prompt_length: int


def prompt_streams(task: str, group_dim: int, text_ids: list[int] | None = None,
                   speech_positions: int = 0) -> Streams:
    """The prompt: the task tag, then the text (ended by ``<eot>``) or ``speech_positions`` speech slots."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; tasks: {TASKS}")
    if task in SPEECH_IN:
        if speech_positions < 1 or text_ids:
            raise ValueError(f"task {task!r} takes speech (speech_positions >= 1) and no text")
        text = [TASK_TOKENS[task]] + [PAD] * speech_positions
        slot = [False] + [True] * speech_positions
    else:
        if not text_ids or speech_positions:
            raise ValueError(f"task {task!r} takes text and no speech")
        text = [TASK_TOKENS[task], *text_ids, EOT]
        slot = [False] * len(text)
    n = len(text)
    return Streams(torch.tensor(text), torch.full((n,), STATE_PAD), torch.zeros(n, group_dim),
                   torch.tensor(slot), n)


def answer_streams(task: str, text_ids: list[int], frame_groups: torch.Tensor | None, delay: int,
                   group_dim: int) -> Streams:
    """The answer: the text then ``<eot>`` and, for spoken answers, the delayed speech stream of ``frame_groups``."""
    text = [*text_ids, EOT]
    if task not in SPEECH_OUT:
        n = len(text)
        return Streams(torch.tensor(text), torch.full((n,), STATE_PAD), torch.zeros(n, group_dim),
                       torch.zeros(n, dtype=torch.bool), 0)
    if frame_groups is None or frame_groups.shape[0] < 1:
        raise ValueError(f"task {task!r} needs at least one frame group")
    groups = frame_groups.shape[0]
    state = [STATE_PAD] * delay + [STATE_START] + [STATE_GEN] * groups + [STATE_STOP]
    n = max(len(text), len(state))
    text += [PAD] * (n - len(text))
    state += [STATE_PAD] * (n - len(state))
    frames = torch.zeros(n, group_dim)
    frames[delay + 1 : delay + 1 + groups] = frame_groups
    return Streams(torch.tensor(text), torch.tensor(state), frames, torch.zeros(n, dtype=torch.bool), 0)


def concat(prompt: Streams, answer: Streams) -> Streams:
    return Streams(torch.cat([prompt.text, answer.text]), torch.cat([prompt.state, answer.state]),
                   torch.cat([prompt.frames, answer.frames]), torch.cat([prompt.speech_slot, answer.speech_slot]),
                   prompt.prompt_length)


@dataclass
class StreamBatch:
    """Right-padded streams ``(B, L)`` with targets shifted by one and the answer-only loss mask."""

    text: torch.Tensor
    state: torch.Tensor
    frames: torch.Tensor
    speech_slot: torch.Tensor
    attention_mask: torch.Tensor
    loss_mask: torch.Tensor
    """(B, L): position j's prediction of j + 1 is scored (j + 1 is an answer position)."""

    @property
    def text_target(self) -> torch.Tensor:
        return _shift(self.text, PAD)

    @property
    def state_target(self) -> torch.Tensor:
        return _shift(self.state, STATE_PAD)

    @property
    def frame_target(self) -> torch.Tensor:
        return torch.cat([self.frames[:, 1:], torch.zeros_like(self.frames[:, :1])], dim=1)

    @property
    def frame_mask(self) -> torch.Tensor:
        return self.loss_mask & (self.state_target == STATE_GEN)


def _shift(x: torch.Tensor, fill: int) -> torch.Tensor:
    return torch.cat([x[:, 1:], torch.full_like(x[:, :1], fill)], dim=1)


def collate(sequences: list[Streams]) -> StreamBatch:
    length = max(len(s.text) for s in sequences)
    batch, group_dim = len(sequences), sequences[0].frames.shape[1]
    text = torch.full((batch, length), PAD)
    state = torch.full((batch, length), STATE_PAD)
    frames = torch.zeros(batch, length, group_dim)
    slot = torch.zeros(batch, length, dtype=torch.bool)
    attention = torch.zeros(batch, length, dtype=torch.bool)
    loss = torch.zeros(batch, length, dtype=torch.bool)
    for i, s in enumerate(sequences):
        n = len(s.text)
        text[i, :n], state[i, :n], frames[i, :n], slot[i, :n] = s.text, s.state, s.frames, s.speech_slot
        attention[i, :n] = True
        loss[i, s.prompt_length - 1 : n - 1] = True
    return StreamBatch(text, state, frames, slot, attention, loss)
