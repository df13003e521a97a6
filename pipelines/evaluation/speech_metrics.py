"""Offline speech metrics for Flow-Omni (spec flow_omni.md §7): phone error rate, DTW mel distance, durations.

Generated speech is scored against the espeak-ng reference of the same text and voice: the judge's phonemes vs
the text's phonemes (PER), and the generated log-mel vs the reference log-mel aligned by dynamic time warping
(so a correct but slower or faster rendering is not punished frame by frame).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def edit_distance(hyp: Sequence, ref: Sequence) -> int:
    """Levenshtein distance (substitutions, insertions, deletions all cost 1)."""
    prev = list(range(len(ref) + 1))
    for i, h in enumerate(hyp, start=1):
        row = [i]
        for j, r in enumerate(ref, start=1):
            row.append(min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (h != r)))
        prev = row
    return prev[-1]


def phone_error_rate(hyps: Sequence[Sequence[str]], refs: Sequence[Sequence[str]]) -> float:
    """Corpus PER: total edits over total reference length (long utterances weigh more, as in WER tools)."""
    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses for {len(refs)} references")
    total = sum(len(r) for r in refs)
    if total == 0:
        raise ValueError("references hold no phonemes")
    return sum(edit_distance(h, r) for h, r in zip(hyps, refs, strict=True)) / total


def dtw_path(cost: np.ndarray) -> list[tuple[int, int]]:
    """Minimum-cost monotonic path from (0, 0) to (n-1, m-1) through a cost matrix (steps: diagonal, down,
    right). The accumulation runs one anti-diagonal at a time, so it is vectorised over each diagonal."""
    n, m = cost.shape
    acc = np.full((n + 1, m + 1), np.inf)
    acc[0, 0] = 0.0
    for k in range(2, n + m + 1):
        i = np.arange(max(1, k - m), min(n, k - 1) + 1)
        j = k - i
        best = np.minimum(np.minimum(acc[i - 1, j - 1], acc[i - 1, j]), acc[i, j - 1])
        acc[i, j] = cost[i - 1, j - 1] + best
    i, j, path = n, m, [(n - 1, m - 1)]
    while (i, j) != (1, 1):
        steps = ((i - 1, j - 1), (i - 1, j), (i, j - 1))
        i, j = min(steps, key=lambda s: acc[s])
        path.append((i - 1, j - 1))
    return path[::-1]


def dtw_mel_distance(gen: torch.Tensor, ref: torch.Tensor) -> float:
    """Mean |gen - ref| log-mel difference (per bin) along the DTW path between ``gen (F1, bins)`` and
    ``ref (F2, bins)``."""
    if gen.dim() != 2 or ref.dim() != 2 or gen.shape[1] != ref.shape[1]:
        raise ValueError(f"expected (F1, bins) and (F2, bins) log-mel, got {tuple(gen.shape)}, {tuple(ref.shape)}")
    if gen.shape[0] == 0 or ref.shape[0] == 0:
        raise ValueError("cannot align an empty mel")
    cost = (torch.cdist(gen.double()[None], ref.double()[None], p=1)[0] / gen.shape[1]).numpy()
    path = dtw_path(cost)
    rows, cols = zip(*path, strict=True)
    return float(cost[list(rows), list(cols)].mean())


def duration_ratio(gen_frames: int, ref_frames: int) -> float:
    """Generated length over reference length (1.0 = same duration)."""
    if ref_frames <= 0:
        raise ValueError(f"reference must have frames, got {ref_frames}")
    return gen_frames / ref_frames
