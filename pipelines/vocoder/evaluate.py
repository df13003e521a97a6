"""Mel vocoder quality on held-out espeak speech, side by side with the Griffin-Lim baseline.

Each reference clip is turned into log-mel frames (:class:`LogMel`, the vocoder's input), vocoded, and the output
compared with the reference: STOI and PESQ-WB and the training mel distance through
:func:`pipelines.evaluation.audio_quality.evaluate`, plus the L1 between the output's 80-bin log-mel and the input
frames (what a vocoder must preserve) and the real-time factor (vocoding seconds / audio seconds, current thread count).

Two held-out sets, sentences never used in training (``make_sentences('eval', ...)``): Flow-Omni's answer voice
(``en-us``, speed 165, pitch 50, the voice the vocoder will speak in) and ``HELD_OUT_VOICE``, a voice no training
clip uses. ``python -m pipelines.vocoder.evaluate MODEL_DIR`` prints the table.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from pipelines.data.dialogue import ANSWER_PITCH, ANSWER_SPEED, ANSWER_VOICE
from pipelines.data.speech import HELD_OUT_VOICE, make_sentences, synthesize
from pipelines.evaluation.audio_quality import EVAL_GAIN_DB, QualityReport, evaluate
from tokenizers_media.speech.griffin_lim import griffin_lim
from tokenizers_media.speech.mel import LogMel, MelSpec
from tokenizers_media.speech.vocoder import MelVocoder, Vocode


@dataclass(frozen=True)
class VocoderScores:
    """Means over clips; ``log_mel_l1`` is in the vocoder's own 80-bin natural-log mel (lower is better)."""

    quality: QualityReport
    log_mel_l1: float
    rtf: float


def eval_voice_clips(voice: str, count: int, seed: int = 0) -> list[torch.Tensor]:
    """``count`` held-out sentences spoken by ``voice`` (answer voice: its fixed speed and pitch; otherwise a
    fixed mid speed), peak-normalised to ``EVAL_GAIN_DB`` like :func:`pipelines.evaluation.audio_quality.eval_clips`."""
    speed, pitch = (ANSWER_SPEED, ANSWER_PITCH) if voice == ANSWER_VOICE else (160, 50)
    gain = 10 ** (EVAL_GAIN_DB / 20)
    clips = [synthesize(text, voice, speed, pitch) for text in make_sentences("eval", count, seed)]
    return [c * (gain / c.abs().max().clamp(min=1e-8)) for c in clips]


def score_vocoder(vocode: Vocode, clips: Sequence[torch.Tensor], spec: MelSpec = MelSpec()) -> VocoderScores:
    """Vocode each clip's log-mel and score the output against the clip."""
    log_mel = LogMel(spec)
    l1s, seconds = [], 0.0

    def reconstruct(clip: torch.Tensor) -> torch.Tensor:
        nonlocal seconds
        frames = log_mel(clip[None])
        start = time.perf_counter()
        out = vocode(frames)
        seconds += time.perf_counter() - start
        l1s.append(float((log_mel(out) - frames).abs().mean()))
        return out[0, : clip.shape[-1]]

    quality = evaluate(reconstruct, clips, spec.sample_rate)
    audio_seconds = sum(len(c) for c in clips) / spec.sample_rate
    return VocoderScores(quality, sum(l1s) / len(l1s), seconds / audio_seconds)


def compare_with_griffin_lim(model: MelVocoder, clips_per_voice: int = 10,
                             seed: int = 0) -> dict[tuple[str, str], VocoderScores]:
    """``{(voice set, system): scores}`` for the model and Griffin-Lim (32 iterations) on both held-out sets."""
    spec = model.config.mel_spec
    systems: dict[str, Vocode] = {"trained vocoder": model.vocode,
                                  "Griffin-Lim (32 it.)": lambda m: griffin_lim(m, spec)}
    rows = {}
    for voice_name, voice in ((f"answer voice {ANSWER_VOICE}", ANSWER_VOICE),
                              (f"held-out voice {HELD_OUT_VOICE}", HELD_OUT_VOICE)):
        clips = eval_voice_clips(voice, clips_per_voice, seed)
        for system, vocode in systems.items():
            rows[voice_name, system] = score_vocoder(vocode, clips, spec)
    return rows


def format_table(rows: dict[tuple[str, str], VocoderScores]) -> str:
    """Markdown table, one row per (voice set, system)."""
    lines = ["| voice set | system | STOI ↑ | PESQ-WB ↑ | log-mel L1 (80-bin input mel) ↓ | "
             "mel distance (100-bin training loss) ↓ | RTF ↓ |",
             "|---|---|---|---|---|---|---|"]
    for (voice, system), s in rows.items():
        pesq = "n/a" if s.quality.pesq is None else f"{s.quality.pesq:.3f}"
        lines.append(f"| {voice} | {system} | {s.quality.stoi:.3f} | {pesq} | {s.log_mel_l1:.3f} | "
                     f"{s.quality.mel_distance:.3f} | {s.rtf:.4f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    import typer

    def main(model_dir: Path, clips: int = typer.Option(10, help="held-out sentences per voice set")) -> None:
        """Print MODEL_DIR's vocoder-vs-Griffin-Lim table on held-out espeak speech."""
        torch.set_num_threads(1)
        typer.echo(format_table(compare_with_griffin_lim(MelVocoder.from_pretrained(model_dir), clips)))

    typer.run(main)
