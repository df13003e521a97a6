"""Official KARL speed at the paper size (karl_small, VQGAN base) on this CPU.

Measured in one run on random weights (speed does not depend on the values):

1. The machine's fp32 matmul peak: a square ``--matmul`` matmul, best of 3.
2. Encode of a batch of ``--batch`` 256 x 256 images at budget ``--tokens`` in one call, vs the same images
   encoded one at a time; then decode of the batch. Images/s, latent tokens/s, and achieved GFLOP/s (FLOPs
   counted by ``torch.utils.flop_counter`` on one image: matmuls and convolutions) beside the peak.

Run: ``nice python benchmarks/karl_speed.py [--threads 1] [--batch 4]``. The machine may be shared: only numbers
measured in the same run compare.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

from tokenizers_media.image.karl_official import KARLOfficial


def _seconds(fn: Callable[[], object], runs: int = 1) -> float:
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def _flops(fn: Callable[[], object]) -> int:
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return counter.get_total_flops()


def matmul_peak(size: int) -> float:
    """Achieved fp32 GFLOP/s of one (size x size) @ (size x size) matmul, best of 3."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b  # warm-up
    return 2 * size**3 / _seconds(lambda: a @ b, runs=3) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--matmul", type=int, default=2048)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"threads {args.threads}, load average {os.getloadavg()[0]:.2f}, torch {torch.__version__}")
    peak = matmul_peak(args.matmul)
    print(f"matmul peak ({args.matmul}^3 fp32): {peak:.1f} GFLOP/s")

    torch.manual_seed(0)
    model = KARLOfficial.from_preset("paper-small").eval()
    images = torch.rand(args.batch, 3, 256, 256)
    with torch.inference_mode():
        enc1 = model.encode(images[:1], max_tokens=args.tokens)  # warm-up and the one-image FLOP counts
        enc_flops = _flops(lambda: model.encode(images[:1], max_tokens=args.tokens))
        dec_flops = _flops(lambda: model.decode(enc1.codes, enc1.mask))
        batched = _seconds(lambda: model.encode(images, max_tokens=args.tokens))
        single = sum(_seconds(lambda i=i: model.encode(images[i : i + 1], max_tokens=args.tokens))
                     for i in range(args.batch))
        enc = model.encode(images, max_tokens=args.tokens)
        decode = _seconds(lambda: model.decode(enc.codes, enc.mask))
    n, tokens = args.batch, args.batch * args.tokens
    print(f"encode, batch {n}, T={args.tokens} ({enc_flops / 1e9:.0f} GFLOP/image):")
    print(f"  batched     : {n / batched:6.3f} images/s  {tokens / batched:7.1f} tokens/s  "
          f"{n * enc_flops / batched / 1e9:6.1f} GFLOP/s ({n * enc_flops / batched / 1e9 / peak:.0%} of peak)")
    print(f"  one by one  : {n / single:6.3f} images/s  {tokens / single:7.1f} tokens/s  "
          f"(batched is {single / batched:.2f}x faster per image)")
    print(f"decode, batch {n} ({dec_flops / 1e9:.0f} GFLOP/image): {n / decode:6.3f} images/s  "
          f"{tokens / decode:7.1f} tokens/s  {n * dec_flops / decode / 1e9:6.1f} GFLOP/s "
          f"({n * dec_flops / decode / 1e9 / peak:.0%} of peak)")
    print(f"active tokens per image: {enc.mask.sum(1).tolist()}")


if __name__ == "__main__":
    main()
