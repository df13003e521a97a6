"""ToMe's cost over the plain diffusers pipeline at equal denoising steps, printed as a time ratio.

Run: ``python benchmarks/tome_overhead.py [--model sd-shapes-tiny] [--steps 25]``. Both runs use the same
model, prompt, seed and step count, measured in the same process on one thread. Three settings: the plain
pipeline, token merging + end-token substitution only (no optimisation), and full ToMe (the paper's
defaults: semantic binding and entropy updates in the first 7 steps). The ratio is wall time / plain.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from pipelines.tome.pipeline import ToMeStableDiffusionPipeline
from pipelines.zoo import resolve_model

PROMPT = "a red circle and a blue square"


def _seconds(pipe: ToMeStableDiffusionPipeline, steps: int, repeats: int, **kwargs) -> float:
    def once() -> None:
        pipe(PROMPT, num_inference_steps=steps, output_type="latent", generator=torch.Generator().manual_seed(0),
             **kwargs)

    once()  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        once()
    return (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="sd-shapes-tiny")
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    ref = resolve_model(args.model)
    pipe = ToMeStableDiffusionPipeline.from_pretrained(ref.path)
    pipe.set_progress_bar_config(disable=True)
    tome = json.loads((ref.path / "config.json").read_text()).get("tome", {})
    plain = _seconds(pipe, args.steps, args.repeats, token_merge=False)
    print(f"{ref.name}, {args.steps} steps, 1 thread: plain pipeline {plain:.3f} s/image")
    for name, extra in (("token merge + ETS only", {"tome_control_steps": (0, 0)}), ("full ToMe", {})):
        seconds = _seconds(pipe, args.steps, args.repeats, **{**tome, **extra})
        print(f"  {name:24s} {seconds:.3f} s/image; ratio vs plain {seconds / plain:.2f}x")


if __name__ == "__main__":
    main()
