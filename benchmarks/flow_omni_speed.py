"""Flow-Omni speed: real-time factor, time to first audio and frames/s, with and without the KV cache.

Measured in one run on the same weights (``flow-omni-tiny`` from the zoo when present, else a random tiny
model), speaking the same sentences with the same seed:

1. generation with the KV caches (the LLM and the output transformer each run one new position per step) vs the
   baseline that recomputes the whole prefix every step; the frames are checked to agree first;
2. the served path: streamed generation + chunked vocoding (``vocoder-tiny`` when present, else Griffin-Lim):
   time to first audio and real-time factor (wall seconds / seconds of audio);
3. Euler steps per frame group: 10 (default) vs 3.

Run: ``nice python benchmarks/flow_omni_speed.py [--threads 1] [--runs 3]``. The load average is printed: the
machine may be shared, so only ratios measured in one run mean anything.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from pipelines.flow_omni.generate import GenerationOptions, generate
from pipelines.flow_omni.model import FlowOmni
from pipelines.flow_omni.speech_generate import SpeechGenerateParams, SpeechGeneratePipeline
from pipelines.zoo import list_models

SENTENCES = ("the boy likes a big red ball", "what is four plus five", "a small green boat sees the old dog")
MAX_GROUPS = 60
"""Cap per sentence (2.4 s of audio at r = 3) so that an untrained model costs the same as a trained one."""


def load_model() -> tuple[FlowOmni, str]:
    zoo = {m.name: m for m in list_models()}
    if "flow-omni-tiny" in zoo:
        return FlowOmni.from_pretrained(zoo["flow-omni-tiny"].path), "flow-omni-tiny"
    torch.manual_seed(0)
    return FlowOmni.from_preset("tiny").eval(), "random tiny"


def timed_generation(model: FlowOmni, use_cache: bool, flow_steps: int | None, runs: int) -> tuple[float, int]:
    """Median seconds to speak all sentences, and the frames produced."""
    times, frames = [], 0
    for _ in range(runs):
        start, frames = time.perf_counter(), 0
        for text in SENTENCES:
            options = GenerationOptions(max_groups=MAX_GROUPS, use_cache=use_cache, flow_steps=flow_steps)
            frames += generate(model, "tts", text, options=options).frames.shape[0]
        times.append(time.perf_counter() - start)
    return statistics.median(times), frames


def check_cache_agrees(model: FlowOmni) -> float:
    options = dict(max_groups=20, seed=0)
    a = generate(model, "tts", SENTENCES[0], options=GenerationOptions(**options)).frames
    b = generate(model, "tts", SENTENCES[0], options=GenerationOptions(**options, use_cache=False)).frames
    if a.shape != b.shape:
        raise SystemExit(f"cached and recomputed generation disagree in length: {a.shape} vs {b.shape}")
    return float((a - b).abs().max())


def served(model: FlowOmni, vocoder: str, runs: int) -> tuple[float, float]:
    """Median time to first audio and real-time factor of the speech.generate pipeline."""
    pipeline = SpeechGeneratePipeline(model)
    first, rtf = [], []
    for _ in range(runs):
        for text in SENTENCES:
            params = SpeechGenerateParams(text=text, vocoder=vocoder, max_seconds=MAX_GROUPS * 3 / 75)
            start = time.perf_counter()
            spoken = pipeline.speak("tts", params, None, text=text)
            wall = time.perf_counter() - start
            first.append(spoken.first_audio_seconds or wall)
            rtf.append(wall / max(1e-9, spoken.audio.samples.numel() / spoken.audio.sample_rate))
    return statistics.median(first), statistics.median(rtf)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, name = load_model()
    vocoder = "vocoder-tiny" if any(m.name == "vocoder-tiny" for m in list_models()) else "griffin-lim"
    print(f"model: {name}; vocoder: {vocoder}; threads {args.threads}; load average {os.getloadavg()[0]:.2f}")
    print(f"cached vs recomputed frames: max |diff| {check_cache_agrees(model):.2e}")
    with torch.inference_mode():
        cached, frames = timed_generation(model, True, None, args.runs)
        full, _ = timed_generation(model, False, None, args.runs)
        fast, fast_frames = timed_generation(model, True, 3, args.runs)
    print(f"frames/s with KV cache      {frames / cached:8.1f}  ({frames} frames in {cached:.2f} s)")
    print(f"frames/s recomputing prefix {frames / full:8.1f}  -> cache speed-up x{full / cached:.2f}")
    print(f"frames/s, 3 Euler steps     {fast_frames / fast:8.1f}  -> x{cached / fast * fast_frames / frames:.2f} "
          "vs 10 steps")
    print(f"real time = {model.config.mel_spec.frame_rate:.0f} frames/s -> generation runs at "
          f"x{frames / cached / model.config.mel_spec.frame_rate:.2f} real time")
    first, rtf = served(model, vocoder, max(1, args.runs // 2))
    print(f"served (stream + chunked {vocoder}): time to first audio {first * 1000:.0f} ms, real-time factor "
          f"{rtf:.3f}")


if __name__ == "__main__":
    main()
