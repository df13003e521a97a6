"""WavTokenizer speed on this CPU: encode + decode of 10 s at 24 kHz (paper-75), as real-time factor and GFLOP/s.

Everything is measured in the same run: the machine's fp32 matmul peak (a large ``torch.mm``), our inference path
(``encode`` / ``decode``: inference mode, weight norm folded once, the encoder's convolutions clip by clip as
channels-last 2-D convolutions, reflect padding from flipped slices and none for 1x1 convs, cached ISTFT
envelope) and a naive reference path on the same weights (no inference mode, plain ``conv1d``, weight norm
recomputed on every call, ``F.pad`` reflect padding before every conv, envelope rebuilt every call),
printed as a ratio after checking that both give identical codes and audio. Then batched encode of 8 clips
against 8 one-at-a-time calls, per clip. Official implementation measured on a 2-core VM with torch threads = 2
(shared/specs/audio.md, section 2): encode 0.36 s + decode 0.57 s per 10 s, RTF about 0.10.

Run: ``nice -n -5 python benchmarks/wavtokenizer_speed.py [--preset paper-75] [--threads 2] [--runs 5]``.
Weights are random (speed does not depend on them). The machine may be shared: the load average is printed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import time
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

import tokenizers_media.nn.conv as conv_module
from tokenizers_media.audio.wavtokenizer import WavTokenizer
from tokenizers_media.nn.conv import WeightNormConv1d
from tokenizers_media.nn.seanet import SLSTM
from tokenizers_media.nn.vocos import ISTFT


def matmul_peak(sizes: tuple[int, ...] = (2048, 4096), seconds: float = 2.0) -> float:
    """Sustained fp32 GFLOP/s of square ``torch.mm``: the best half-second window over ``sizes``.

    A reference, not a hard ceiling: oneDNN's direct convolutions can beat this GEMM (the decoder's k3 convs do).
    """
    best = 0.0
    for size in sizes:
        a, b = torch.randn(size, size), torch.randn(size, size)
        torch.mm(a, b)
        start = time.perf_counter()
        while time.perf_counter() - start < seconds / len(sizes):
            runs, window = 0, time.perf_counter()
            while time.perf_counter() - window < 0.5:
                torch.mm(a, b)
                runs += 1
            best = max(best, 2 * size**3 * runs / (time.perf_counter() - window) / 1e9)
    return best


def median_seconds(*fns: Callable[[], object], runs: int) -> list[float]:
    """Median wall time of each function, the functions taking turns run after run.

    Interleaved because this shared VM drifts by tens of percent over a minute: timing one path after the other
    compared the machine's moods, not the code (the same decode measured 0.63 s and 0.90 s in one run).
    """
    for fn in fns:
        fn()  # warm-up (allocator, oneDNN primitive caches)
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(runs):
        for fn, spent in zip(fns, times, strict=True):
            start = time.perf_counter()
            fn()
            spent.append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]


def count_gflop(fn: Callable[[], object], model: WavTokenizer, lstm_steps: int = 0) -> float:
    """GFLOP by torch's counter, plus the LSTM (which it does not count): 2 x 8 H^2 per step and layer."""
    with FlopCounterMode(display=False) as counter:
        fn()
    lstm = sum(2 * 8 * m.lstm.hidden_size**2 * m.lstm.num_layers * lstm_steps
               for m in model.modules() if isinstance(m, SLSTM))
    return (counter.get_total_flops() + lstm) / 1e9


def reference_reflect_pad(x: torch.Tensor, left: int, right: int) -> torch.Tensor:
    """EnCodec-style padding: ``F.pad(mode="reflect")`` always, a copy even when nothing is padded."""
    length, needed = x.shape[-1], max(left, right)
    extra = max(0, needed - length + 1)
    padded = F.pad(F.pad(x, (0, extra)), (left, right), mode="reflect")
    return padded[..., : padded.shape[-1] - extra]


@contextlib.contextmanager
def reference_ops() -> Iterator[None]:
    """Inside: no inference mode and the plain reflect padding. Grad mode stays on (the reference model's
    parameters require none, so nothing is recorded): that keeps SEANet on its training route, plain ``conv1d``
    over the whole batch, instead of the channels-last inference path."""
    fast = conv_module._reflect_pad
    conv_module._reflect_pad = reference_reflect_pad
    try:
        with torch.enable_grad():
            yield
    finally:
        conv_module._reflect_pad = fast


def naive(model: WavTokenizer) -> WavTokenizer:
    """The same module run the plain way: kernels re-derived from weight_g/weight_v, envelopes rebuilt.

    Run it inside :func:`reference_ops`.
    """
    model.requires_grad_(False)
    for module in model.modules():  # instance attributes shadow the caching methods
        if isinstance(module, WeightNormConv1d):
            module.weight = module.compute_weight
        if isinstance(module, ISTFT):
            module.envelope = module.compute_envelope
    return model


def build(preset: str) -> WavTokenizer:
    torch.manual_seed(0)
    model = WavTokenizer.from_preset(preset).eval()
    codebook = model.feature_extractor.quantizer.codebook
    with torch.no_grad():  # random codes at the encoder's scale: k-means (200 iterations) is not timed here
        latents = model.feature_extractor.encoder(0.1 * torch.randn(1, 1, 10 * model.hop_length))
        codebook.embed.copy_(latents.std() * torch.randn_like(codebook.embed))
        codebook.inited.fill_(1.0)
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="paper-75")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, load average {os.getloadavg()}")

    peak = matmul_peak()
    print(f"fp32 matmul peak (best square torch.mm, 2048 and 4096): {peak:.1f} GFLOP/s")

    model = build(args.preset)
    samples = int(args.seconds * model.sample_rate)
    wav = 0.1 * torch.randn(1, samples)
    codes = model.encode(wav)
    frames = codes.shape[-1]
    enc_gflop = count_gflop(lambda: model.encode(wav), model, lstm_steps=frames)
    dec_gflop = count_gflop(lambda: model.decode(codes), model)

    # Our inference path and the naive path on the same weights, after checking outputs are identical.
    audio = model.decode(codes)
    reference = naive(build(args.preset))

    def ref_encode(x: torch.Tensor) -> torch.Tensor:
        with reference_ops():
            latents = reference.feature_extractor.encoder(x[:, None])
            return reference.feature_extractor.quantizer.encode(latents)[:, None]

    def ref_decode(c: torch.Tensor) -> torch.Tensor:
        with reference_ops():
            return reference.decode_features(reference.codes_to_features(c))

    same_codes = torch.equal(ref_encode(wav), codes)
    with reference_ops():
        ref_latents = reference.feature_extractor.encoder(wav[:, None])
    latent_diff = float((model.encode_latents(wav) - ref_latents).abs().max() / ref_latents.abs().max())
    audio_diff = float((ref_decode(codes) - audio).abs().max())
    t_enc, t_ref_enc = median_seconds(lambda: model.encode(wav), lambda: ref_encode(wav), runs=args.runs)
    t_dec, t_ref_dec = median_seconds(lambda: model.decode(codes), lambda: ref_decode(codes), runs=args.runs)

    rtf, ref_rtf = (t_enc + t_dec) / args.seconds, (t_ref_enc + t_ref_dec) / args.seconds
    print(f"{args.preset}, {args.seconds:g} s clip, {frames} frames")
    print(f"  ours : encode {t_enc:.3f} s ({enc_gflop:.1f} GFLOP, {enc_gflop / t_enc:.1f} GFLOP/s = "
          f"{enc_gflop / t_enc / peak:.0%} of peak), decode {t_dec:.3f} s ({dec_gflop:.1f} GFLOP, "
          f"{dec_gflop / t_dec:.1f} GFLOP/s = {dec_gflop / t_dec / peak:.0%} of peak), RTF {rtf:.3f}")
    print(f"  naive: encode {t_ref_enc:.3f} s, decode {t_ref_dec:.3f} s, RTF {ref_rtf:.3f}; "
          f"speed-up x{ref_rtf / rtf:.2f}; identical codes: {same_codes}, encoder output max |diff| "
          f"{latent_diff:.1e} of its peak, audio max |diff| {audio_diff:.1e}")
    print("  official (spec section 2, unloaded 2-core VM): encode 0.36 s, decode 0.57 s, RTF ~0.10")

    # 3. Batched encode of equal clips vs one at a time, per clip.
    clips = 0.1 * torch.randn(args.batch, samples)
    t_one, t_batch = median_seconds(lambda: [model.encode(clip[None]) for clip in clips],
                                    lambda: model.encode(clips), runs=max(1, args.runs // 2))
    print(f"encode {args.batch} x {args.seconds:g} s: one at a time {t_one / args.batch:.3f} s/clip, batched "
          f"{t_batch / args.batch:.3f} s/clip (x{t_one / t_batch:.2f})")


if __name__ == "__main__":
    main()
