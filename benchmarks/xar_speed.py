"""xAR speed: paper-B velocity forward on this CPU vs a naive path, and xar-tiny sampling images/s.

Measured in the same run, on the same (random) weights:

1. ``velocity`` forward of paper-B (teacher-forced, 256 tokens, batch ``--batch``): our path (fused SDPA
   attention, inference mode) vs the naive fp32 reference path (explicit matmul-softmax attention, autograd
   on). Outputs are checked to agree before timing.
2. Sampling of a full image, entity by entity: with the KV cache (each entity runs only its own tokens; the
   previous entity is fed back once, clean) vs the naive path that recomputes the whole prefix with the
   teacher-forced pass at every flow step. Run for paper-B (``--paper-steps`` flow steps, batch 1) and for
   xar-tiny (zoo weights when present, else random) at 25 steps; results agree before timing.
3. On a CUDA machine: paper-B sampling images/s at batch 64 in bf16 (40 steps, CFG).

Run: ``nice python benchmarks/xar_speed.py [--threads 1] [--runs 2]``. The load average is printed: the
machine may be shared, so only ratios measured in one run mean anything.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import torch

from pipelines.xar.model import XAR
from pipelines.xar.pipeline import XARPipeline


def best_of(fn: Callable[[], object], runs: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times) if runs < 3 else statistics.median(times)


def perturb_adaln(model: XAR) -> XAR:
    """Random init zeroes adaLN (identity blocks); give it small weights so the agreement checks mean something."""
    for block in [*model.encoder_blocks, *model.decoder_blocks]:
        torch.nn.init.normal_(block.ada_lin[1].weight, std=0.02)
    return model


def velocity_forward(model: XAR, batch: int, runs: int) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, model.layout.num_tokens, model.config.latent_channels, generator=g)
    t = torch.rand(batch, model.layout.num_entities, generator=g)
    y = torch.arange(batch)

    def ours() -> torch.Tensor:
        model.set_attention_backend("sdpa")
        with torch.inference_mode():
            return model.velocity(x, t, y)

    def naive() -> torch.Tensor:
        model.set_attention_backend("math")
        return model.velocity(x, t, y)

    diff = (ours() - naive().detach()).abs().max().item()
    fast, slow = best_of(ours, runs), best_of(naive, runs)
    tokens = batch * model.layout.num_tokens
    print(f"paper-B velocity forward, batch {batch} (max |diff| {diff:.1e}):")
    print(f"  ours  (SDPA, inference mode): {fast * 1000:8.1f} ms  {tokens / fast:8.0f} tokens/s")
    print(f"  naive (fp32 math attention) : {slow * 1000:8.1f} ms  {tokens / slow:8.0f} tokens/s")
    print(f"  speed-up: {slow / fast:.2f}x")
    model.set_attention_backend("sdpa")


def sampling(name: str, pipe: XARPipeline, batch: int, steps: int, runs: int, guidance: float) -> None:
    def run(cache: bool) -> torch.Tensor:
        out = pipe(list(range(batch)), num_inference_steps=steps, guidance_scale=guidance, sampler="ode",
                   generator=torch.Generator().manual_seed(0), output_type="latent", use_kv_cache=cache)
        return out.latents

    diff = (run(True) - run(False)).abs().max().item()
    cached, naive = best_of(lambda: run(True), runs), best_of(lambda: run(False), runs)
    print(f"{name} sampling, batch {batch}, {steps} steps/entity, CFG {guidance} (max |diff| {diff:.1e}):")
    print(f"  KV cache : {batch / cached:8.2f} images/s")
    print(f"  naive    : {batch / naive:8.2f} images/s  (prefix recomputed every step)")
    print(f"  speed-up: {naive / cached:.2f}x")


def tiny_pipeline() -> tuple[str, XARPipeline]:
    from pipelines.zoo import list_models

    for ref in list_models():
        if ref.name == "xar-tiny":
            return "xar-tiny (zoo weights)", XARPipeline(XAR.from_pretrained(ref.path))
    torch.manual_seed(0)
    return "xar-tiny (random weights)", XARPipeline(perturb_adaln(XAR.from_preset("tiny")))


def gpu_sampling(batch: int = 64, steps: int = 40) -> None:
    model = XAR.from_preset("paper-B").cuda().eval()
    pipe = XARPipeline(model)

    def run() -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            pipe(list(range(batch)), num_inference_steps=steps, guidance_scale=2.7, output_type="latent")
        torch.cuda.synchronize()

    seconds = best_of(run, 2)
    print(f"GPU paper-B sampling, batch {batch}, bf16, {steps} steps, CFG: {batch / seconds:.1f} images/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--paper-steps", type=int, default=4)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"threads {args.threads}, load average {os.getloadavg()[0]:.1f}")
    torch.manual_seed(0)
    paper = perturb_adaln(XAR.from_preset("paper-B").eval())
    velocity_forward(paper, args.batch, args.runs)
    sampling("paper-B", XARPipeline(paper), 1, args.paper_steps, args.runs, guidance=1.0)
    name, pipe = tiny_pipeline()
    sampling(name, pipe, 8, 25, args.runs, guidance=2.0)
    if torch.cuda.is_available():
        gpu_sampling()


if __name__ == "__main__":
    main()
