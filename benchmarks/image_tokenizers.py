"""Image tokenizer speed on this CPU: encode + decode images/s at batch 1 and 32, with GFLOPs per image.

The machine's fp32 matmul peak is measured in the same run (a square matmul of the models' width class), so
each line prints the achieved GFLOP/s as a fraction of it -- the gap to peak, not a bare number.

Run: ``python benchmarks/image_tokenizers.py [--cases textok-tiny,textok-paper-B] [--batches 1,32]
[--threads N]``. Weights are random (speed does not depend on them). TexTok's caption embedding (frozen
MiniLM) is timed separately per caption, since a service may cache it; the tokenizer timings take the
embedding as given.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from pipelines.data.shapes import ShapesWorld
from tokenizers_media.image.karl import KARL
from tokenizers_media.image.textok import TexTok
from tokenizers_media.text.encoders import TextEmbedding

CAPTION_TOKENS = 30
"""MiniLM word pieces of a typical shapes-world caption (2 objects), used for FLOP counts."""


@dataclass
class Case:
    """A model at one size: ``make(batch)`` returns a zero-argument encode+decode call for that batch;
    ``flops_per_image()`` counts one image's encode+decode FLOPs (on the meta device where possible)."""

    name: str
    make: Callable[[int], Callable[[], object]]
    flops_per_image: Callable[[], float]


def matmul_peak(threads: int, size: int = 1024, seconds: float = 1.0) -> float:
    """Sustained fp32 GFLOP/s of a (size x size) @ (size x size) matmul."""
    torch.set_num_threads(threads)
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    runs, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        runs += 1
    return 2 * size**3 * runs / (time.perf_counter() - start) / 1e9


def textok_case(preset: str) -> Case:
    model = TexTok.from_preset(preset).eval()
    size = model.config.image_size

    def make(batch: int) -> Callable[[], object]:
        scenes = ShapesWorld(size).batch("eval", 0, batch)
        images, text = scenes.images, model.embed_text(scenes.captions)

        @torch.inference_mode()
        def run() -> object:
            return model.decode(model.encode(images, text).latents, text)

        return run

    def flops_per_image() -> float:
        # Count on the meta device: no memory, no compute, so the paper-size config costs nothing here.
        with torch.device("meta"):
            meta = TexTok.from_preset(preset).eval()
            image = torch.empty(1, 3, size, size)
            text = TextEmbedding(torch.empty(1, CAPTION_TOKENS, meta.config.text_dim),
                                 torch.ones(1, CAPTION_TOKENS, dtype=torch.bool))
        return count_flops(lambda: meta.decode(meta.encode(image, text).latents, text))

    return Case(f"textok-{preset}", make, flops_per_image)


def karl_case(preset: str) -> Case:
    """KARL at its full budget (max_tokens) and target 0.05; random weights halt nothing, the worst case."""
    model = KARL.from_preset(preset).eval()

    def make(batch: int) -> Callable[[], object]:
        images = ShapesWorld(model.config.image_size).batch("eval", 0, batch).images

        @torch.inference_mode()
        def run() -> object:
            enc = model.encode(images, target_error=0.05)
            return model.decode(enc.codes, enc.lengths)

        return run

    def flops_per_image() -> float:
        # On the meta device, full budget, nothing halted; the VQ nearest-code search (T x 4096 x 12 MACs,
        # < 0.1% of the total) is left out since its range check needs real values.
        with torch.device("meta"):
            meta = KARL.from_preset(preset).eval()
            c = meta.config
            image, bins = torch.empty(1, 3, c.image_size, c.image_size), torch.zeros(1, dtype=torch.long)
            lengths = torch.full((1,), c.max_tokens)

        def round_trip() -> object:
            return meta.decode_latents(meta.encode_latents(image, bins, c.max_tokens).latents, lengths)

        return count_flops(round_trip)

    return Case(f"karl-{preset}", make, flops_per_image)


CASES: dict[str, Callable[[], Case]] = {
    "textok-tiny": lambda: textok_case("tiny"),
    "textok-paper-B": lambda: textok_case("paper-B"),
    "karl-tiny": lambda: karl_case("tiny"),
    "karl-paper-small": lambda: karl_case("paper-small"),
}


def measure(run: Callable[[], object], min_seconds: float = 2.0, max_runs: int = 20) -> float:
    """Seconds per call (after one warm-up call)."""
    run()
    runs, start = 0, time.perf_counter()
    while runs < max_runs and (runs == 0 or time.perf_counter() - start < min_seconds):
        run()
        runs += 1
    return (time.perf_counter() - start) / runs


def count_flops(run: Callable[[], object]) -> float:
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        run()
    return float(counter.get_total_flops())


def caption_seconds(captions: int = 32) -> float:
    """Frozen MiniLM: seconds per caption (batch of ``captions``)."""
    model = TexTok.from_preset("tiny")
    texts = ShapesWorld(64).batch("eval", 1, captions).captions
    with torch.inference_mode():
        return measure(lambda: model.embed_text(texts)) / captions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--batches", default="1,32")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    peak = matmul_peak(args.threads)
    print(f"CPU fp32 matmul peak (1024^3, {args.threads} threads): {peak:.1f} GFLOP/s")
    print(f"MiniLM caption embedding: {1e3 * caption_seconds():.1f} ms/caption (batch 32)")
    print(f"{'case':>16} {'batch':>5} {'images/s':>9} {'GFLOP/img':>10} {'GFLOP/s':>8} {'of peak':>8}")
    for name in args.cases.split(","):
        case = CASES[name]()
        per_image = case.flops_per_image() / 1e9  # compute is linear in the batch
        for batch in (int(b) for b in args.batches.split(",")):
            run = case.make(batch)
            seconds = measure(run, max_runs=1 if per_image > 50 else 20)
            achieved = per_image * batch / seconds
            print(f"{name:>16} {batch:5d} {batch / seconds:9.2f} {per_image:10.2f} {achieved:8.1f} "
                  f"{achieved / peak:8.1%}")


if __name__ == "__main__":
    main()
