"""Shapes-world throughput on one core: images/s at several sizes (target: >= 1000/s at 64 px).

Run: ``python benchmarks/shapes_world.py``. The baseline printed alongside is a plain ``torch.rand`` fill
of the same tensor, measured in the same run, so the ratio shows the cost of rasterisation itself.
"""

from __future__ import annotations

import time

import torch

from pipelines.data.shapes import ShapesWorld


def _rate(fn, images_per_call: int, repeats: int = 5) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return repeats * images_per_call / (time.perf_counter() - start)


def main() -> None:
    torch.set_num_threads(1)
    batch = 256
    for size in (32, 64, 128, 256):
        world = ShapesWorld(size)
        rate = _rate(lambda w=world, c=iter(range(10**6)): w.batch("train", next(c), batch), batch)
        base = _rate(lambda s=size: torch.rand(batch, 3, s, s), batch)
        print(f"{size:4d} px: {rate:8.0f} images/s (batch {batch}, 1 thread); torch.rand fill {base:9.0f}/s; "
              f"ratio {rate / base:.3f}")


if __name__ == "__main__":
    main()
