"""Cost of group attention: one denoising step (a PixArt transformer forward) vs group size G at a fixed
total number of images, as ratios to running the same images independently (G = 1) in the same run.

Group attention turns B sequences of N tokens into B / G sequences of G * N tokens, so the attention FLOPs and
the score buffer grow linearly with G while the projections and MLPs stay the same. Memory: on CUDA the peak
allocated bytes are measured; on CPU (no allocator statistics) the attention-score bytes per layer are
computed, B / G * heads * (G * N)^2 * 4, the buffer a non-fused attention would hold.

Run: ``python benchmarks/gdt_attention.py [--images 16] [--latent 16] [--patch 2] [--width 128]
[--layers 4] [--repeats 5] [--threads 1] [--device cpu]``. Weights are random (speed does not depend on them).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from diffusers import PixArtTransformer2DModel

from pipelines.gdt.attention import install_group_attention


def step_time(model: PixArtTransformer2DModel, latents: torch.Tensor, captions: torch.Tensor, repeats: int
              ) -> float:
    """Median seconds of one forward (after one warm-up)."""
    t = torch.full((len(latents),), 500, device=latents.device)
    kwargs = {"added_cond_kwargs": {"resolution": None, "aspect_ratio": None}}
    times = []
    for _ in range(repeats + 1):
        if latents.is_cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        model(latents, encoder_hidden_states=captions, timestep=t, **kwargs)
        if latents.is_cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def peak_memory(model: PixArtTransformer2DModel, latents: torch.Tensor, captions: torch.Tensor) -> float | None:
    if not latents.is_cuda:
        return None
    torch.cuda.reset_peak_memory_stats()
    step_time(model, latents, captions, 1)
    return torch.cuda.max_memory_allocated() / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--latent", type=int, default=16, help="latent side")
    parser.add_argument("--patch", type=int, default=2)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    heads = 4
    model = PixArtTransformer2DModel(
        sample_size=args.latent, num_layers=args.layers, patch_size=args.patch, in_channels=4, out_channels=4,
        num_attention_heads=heads, attention_head_dim=args.width // heads, cross_attention_dim=args.width,
        caption_channels=384, norm_type="ada_norm_single").to(args.device).eval()
    latents = torch.randn(args.images, 4, args.latent, args.latent, device=args.device)
    captions = torch.randn(args.images, 12, 384, device=args.device)
    tokens = (args.latent // args.patch) ** 2
    print(f"{args.images} images, {tokens} tokens each, width {args.width}, {args.layers} layers, "
          f"{args.threads} thread(s), {args.device}")
    print(f"{'G':>3} {'seq len':>8} {'step ms':>9} {'time vs indep.':>15} {'score MB/layer':>15} "
          f"{'vs indep.':>10} {'peak MB':>8}")
    rows = {}
    with torch.inference_mode():
        for g in (1, 2, 4, 8):
            install_group_attention(model, g)
            seconds = step_time(model, latents, captions, args.repeats)
            score_mb = args.images // g * heads * (g * tokens) ** 2 * 4 / 2**20
            rows[g] = (seconds, score_mb, peak_memory(model, latents, captions))
    base_s, base_mb, _ = rows[1]
    for g, (seconds, score_mb, peak) in rows.items():
        peak_text = "n/a" if peak is None else f"{peak:.0f}"
        print(f"{g:>3} {g * tokens:>8} {seconds * 1e3:>9.1f} {seconds / base_s:>14.2f}x {score_mb:>15.2f} "
              f"{score_mb / base_mb:>9.1f}x {peak_text:>8}")


if __name__ == "__main__":
    main()
