"""Reconstruction quality of an audio tokenizer on held-out espeak speech: mel distance, STOI, PESQ.

- mel distance: mean L1 between log mel spectrograms (the training mel loss, :class:`MelLoss`), lower is better;
- STOI (Taal et al. 2011, ``pystoi``) at the model's sample rate, 0..1, higher is better;
- wide-band PESQ (ITU-T P.862.2, ``pesq`` package) at 16 kHz, -0.5..4.5, higher is better; reported as
  unavailable when the package does not import.

The clips come from the ``eval`` split of :mod:`pipelines.data.speech` (sentences and a voice never used in
training), peak-normalised to -3 dB like the official validation data. Run
``python -m pipelines.evaluation.audio_quality MODEL_DIR`` to print a table comparing the model against the
untrained model of the same config and against silence.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torchaudio.functional as AF
from pystoi import stoi

from pipelines.data.crops import repeat_pad
from pipelines.data.speech import build_corpus
from tokenizers_media.audio.losses import MelLoss

logger = logging.getLogger(__name__)

EVAL_GAIN_DB = -3.0
PESQ_RATE = 16_000

Reconstructor = Callable[[torch.Tensor], torch.Tensor]
"""Maps a waveform ``(T,)`` to its reconstruction ``(T,)``."""


@dataclass(frozen=True)
class QualityReport:
    """Means over clips. ``pesq`` is ``None`` when the package is unavailable or PESQ fails on every clip."""

    mel_distance: float
    stoi: float
    pesq: float | None
    clips: int


def _pesq_function() -> Callable[..., float] | None:
    try:
        from pesq import pesq
    except ImportError as err:  # the C extension may fail to build on some machines
        logger.warning("pesq is unavailable (%s); PESQ will not be reported", err)
        return None
    return pesq


def eval_clips(count: int = 20, seed: int = 0, cache_dir: str | Path | None = None) -> list[torch.Tensor]:
    """Held-out speech clips ``(T_i,)`` at 24 kHz, each peak-normalised to ``EVAL_GAIN_DB``."""
    corpus = build_corpus("eval", count, seed=seed, cache_dir=cache_dir)
    gain = 10 ** (EVAL_GAIN_DB / 20)
    return [c * (gain / c.abs().max().clamp(min=1e-8)) for c in corpus.clips]


def evaluate(reconstruct: Reconstructor, clips: Sequence[torch.Tensor], sample_rate: int = 24_000) -> QualityReport:
    """Mean mel distance, STOI and PESQ of ``reconstruct`` over ``clips``."""
    if not clips:
        raise ValueError("evaluate needs at least one clip")
    mel_loss = MelLoss(sample_rate=sample_rate)
    pesq_fn = _pesq_function()
    mels, stois, pesqs = [], [], []
    for clip in clips:
        out = reconstruct(clip).detach().float()
        if out.shape != clip.shape:
            raise ValueError(f"reconstruction has shape {tuple(out.shape)}, expected {tuple(clip.shape)}")
        mels.append(float(mel_loss(out[None], clip[None])))
        ref, deg = clip.numpy().astype(np.float64), out.numpy().astype(np.float64)
        stois.append(float(stoi(ref, deg, sample_rate, extended=False)))
        if pesq_fn is not None:
            ref16 = AF.resample(clip, sample_rate, PESQ_RATE).numpy()
            deg16 = AF.resample(out, sample_rate, PESQ_RATE).numpy()
            try:
                pesqs.append(float(pesq_fn(PESQ_RATE, ref16, deg16, "wb")))
            except Exception as err:  # noqa: BLE001 -- pesq raises its own error types, e.g. on silence
                logger.warning("PESQ failed on a clip: %s", err)
    pesq_mean = float(np.mean(pesqs)) if pesqs else None
    return QualityReport(float(np.mean(mels)), float(np.mean(stois)), pesq_mean, len(clips))


def model_reconstructor(model: torch.nn.Module) -> Reconstructor:
    """Encode then decode with a WavTokenizer-like model (``encode`` / ``decode``), trimmed to the input length."""

    @torch.inference_mode()
    def run(clip: torch.Tensor) -> torch.Tensor:
        codes = model.encode(clip[None])
        return model.decode(codes)[0, : clip.shape[-1]]

    return run


def silence(clip: torch.Tensor) -> torch.Tensor:
    """Trivial baseline: the all-zero signal."""
    return torch.zeros_like(clip)


def format_table(rows: dict[str, QualityReport]) -> str:
    """Markdown table of reports, one row per system."""

    def fmt(value: float | None) -> str:
        return "n/a" if value is None or math.isnan(value) else f"{value:.3f}"

    lines = ["| system | mel distance (lower better) | STOI (higher better) | PESQ wb (higher better) |",
             "|---|---|---|---|"]
    lines += [f"| {name} | {fmt(r.mel_distance)} | {fmt(r.stoi)} | {fmt(r.pesq)} |" for name, r in rows.items()]
    return "\n".join(lines)


def compare_with_baselines(model_dir: str | Path, clips: int = 20, seed: int = 0) -> dict[str, QualityReport]:
    """The trained model in ``model_dir`` vs its untrained twin (same config, seed 0) vs silence."""
    from tokenizers_media.audio.wavtokenizer import WavTokenizer

    model = WavTokenizer.from_pretrained(model_dir)
    torch.manual_seed(0)
    untrained = WavTokenizer(model.config).eval()
    data = eval_clips(clips, seed=seed)
    # The untrained model's codebook is uninitialised; one train-mode pass on training speech runs its k-means
    # init (as a training run's first step would), so the baseline is not a degenerate single code.
    init = build_corpus("train", 8, seed=seed).clips
    with torch.no_grad():
        untrained.train()(torch.stack([repeat_pad(c, 24_000)[:24_000] for c in init]))
    untrained.eval()
    rate = model.sample_rate
    return {
        f"{Path(model_dir).name} (trained)": evaluate(model_reconstructor(model), data, rate),
        "same config, untrained": evaluate(model_reconstructor(untrained), data, rate),
        "silence": evaluate(silence, data, rate),
    }


if __name__ == "__main__":
    import typer

    def main(model_dir: Path, clips: int = typer.Option(20, help="held-out utterances to score")) -> None:
        """Print the quality table of MODEL_DIR on held-out espeak speech."""
        typer.echo(format_table(compare_with_baselines(model_dir, clips)))

    typer.run(main)
