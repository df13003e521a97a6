"""A fixed set of jobs covering every job kind and every zoo model, and the sha256 of each output file.

``tests/test_job_outputs.py`` checks that every job still gives byte-identical outputs. Float kernels differ by
CPU (AVX-512 kernels vectorise and sum in another order than AVX2 ones), so the jobs run in a fresh interpreter
with :data:`PINNED_ENV` and oneDNN switched off: then every x86-64 CPU with AVX2 and FMA gives the same bytes.

How ``tests/data/job_outputs.json`` was made: the first hashes (1876e9e, before the one-folder-per-family
restructuring) were taken unpinned, and a CPU with AVX-512 and AMX gave other bytes for 7 of the 13 jobs. So the
jobs were run on that CPU on the pre-restructuring tree (1876e9e in a git worktree, ``PYTHONPATH`` pointing at it)
and on HEAD (ef4ab2e): all 13 gave the same hashes on both, pinned and unpinned alike, and the pinned ones are
recorded. The pinned run gave the same bytes under QEMU's emulation of an Intel Haswell and an AMD EPYC Rome
(ATen finds AVX2 at most there; MKL, on the AMD one, no Intel CPU). ``gdt-group`` now spells its step count
``num_inference_steps`` (the base knew only ``steps``, now a deprecated alias): same bytes.
Regenerate (only when a change of outputs is intended) with ``python -m tests.job_outputs --write``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import soundfile
import torch

from workers.execute import run_spec_locally
from workers.jobspec import JobSpec

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
HASHES = Path(__file__).parent / "data" / "job_outputs.json"

# Read when torch loads, hence the fresh interpreter. Found by experiment: each one changes some outputs.
PINNED_ENV: dict[str, str] = {
    # ATen's own kernels (elementwise maths, reductions, softmax): the AVX2 build, even where AVX-512 is there.
    "ATEN_CPU_CAPABILITY": "avx2",
    # MKL's matmuls and FFTs: the code branch that gives the same results on every Intel and AMD CPU.
    "MKL_CBWR": "COMPATIBLE",
}

# name -> (job without inputs, inputs: example file name or "<earlier job>/<output file>")
JOBS: dict[str, tuple[dict, dict[str, str]]] = {
    "wav-tok": ({"kind": "audio.tokenize", "model": "wavtokenizer-tiny"}, {"audio": "hello.wav"}),
    "wav-detok": ({"kind": "audio.detokenize", "model": "wavtokenizer-tiny"}, {"tokens": "wav-tok/tokens.safetensors"}),
    "textok-tok": ({"kind": "image.tokenize", "model": "textok-tiny",
                    "params": {"caption": "a small white cross in the center, on a striped plum background"}},
                   {"image": "shapes.png"}),
    "textok-detok": ({"kind": "image.detokenize", "model": "textok-tiny"},
                     {"tokens": "textok-tok/tokens.safetensors"}),
    "karl-tok": ({"kind": "image.tokenize", "model": "karl-tiny", "params": {"target_error": 0.05}},
                 {"image": "shapes.png"}),
    "karl-detok": ({"kind": "image.detokenize", "model": "karl-tiny"}, {"tokens": "karl-tok/tokens.safetensors"}),
    "xar-gen": ({"kind": "image.generate", "model": "xar-tiny",
                 "params": {"class": 0, "num_images": 2, "num_inference_steps": 3}}, {}),
    "sd-gen": ({"kind": "image.generate", "model": "sd-shapes-tiny",
                "params": {"prompt": "a red circle and a blue square", "num_inference_steps": 3}}, {}),
    "sd-plain": ({"kind": "image.generate", "model": "sd-shapes-tiny",
                  "params": {"prompt": "a red circle and a blue square", "num_inference_steps": 3,
                             "token_merge": False}}, {}),
    "gdt-group": ({"kind": "image.generate_group", "model": "gdt-tiny",
                   "params": {"prompts": ["a red circle", "a red square", "a red triangle"],
                              "num_inference_steps": 3}},
                  {"reference": "shapes.png"}),
    "speak": ({"kind": "speech.generate", "model": "flow-omni-tiny",
               "params": {"text": "the boy likes a big red ball", "max_seconds": 3.0}}, {}),
    "speak-gl": ({"kind": "speech.generate", "model": "flow-omni-tiny",
                  "params": {"text": "the boy likes a big red ball", "max_seconds": 3.0, "vocoder": "griffin-lim"}},
                 {}),
    "chat": ({"kind": "speech.chat", "model": "flow-omni-tiny", "params": {"max_seconds": 3.0}},
             {"audio": "hello.wav"}),
}


def unpinnable_reason() -> str | None:
    """Why this machine cannot give the recorded bytes (None if it can): the pins need x86-64 with AVX2 and FMA."""
    if platform.machine() not in ("x86_64", "AMD64"):
        return f"the pinned kernels are x86-64 ones; this machine is {platform.machine()}"
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return "no /proc/cpuinfo to check the CPU for AVX2 and FMA"
    missing = [flag for flag in ("avx2", "fma") if flag not in flags]
    return f"this CPU lacks {', '.join(missing)}" if missing else None


def run_pinned(workdir: Path) -> dict[str, dict[str, str]]:
    """:func:`run_all` in a fresh interpreter under :data:`PINNED_ENV`, on the shipped weights only."""
    env = {**os.environ, **PINNED_ENV}
    env.pop("MEDIAFORGE_MODELS_DIR", None)  # another zoo (the service fixtures' one) would shadow the shipped models
    out = workdir / "hashes.json"
    proc = subprocess.run([sys.executable, "-m", "tests.job_outputs", "--in-process", str(workdir), str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"the pinned job run exited {proc.returncode}:\n{proc.stderr[-4000:]}")
    return json.loads(out.read_text())


def run_all(workdir: Path) -> dict[str, dict[str, str]]:
    """Run every job in order (later jobs read earlier outputs); sha256 of each output file by job name.

    Gives the recorded bytes only under :data:`PINNED_ENV` (see :func:`run_pinned`).
    """
    if torch.backends.cpu.get_cpu_capability() != "AVX2":
        raise RuntimeError(f"ATen runs its {torch.backends.cpu.get_cpu_capability()} kernels, not the pinned AVX2")
    torch.set_num_threads(1)  # MKL's reproducibility holds for a fixed thread count
    # oneDNN's convolutions and LSTMs pick their kernels by CPU; ATen's own run on MKL, which MKL_CBWR pins.
    # (ONEDNN_MAX_CPU_ISA=AVX2 would cap them, but its AVX2 LSTM crashes under the QEMU used to check the pins.)
    torch.backends.mkldnn.enabled = False
    hashes: dict[str, dict[str, str]] = {}
    for name, (job, inputs) in JOBS.items():
        files = {key: str(EXAMPLES / src) if "/" not in src else str(workdir / src) for key, src in inputs.items()}
        spec = JobSpec(kind=job["kind"], model=job["model"], inputs=files, params=job.get("params", {}))
        written = run_spec_locally(spec, workdir / name)
        hashes[name] = {p.name: content_hash(p) for p in sorted(written)}
    return hashes


def content_hash(path: Path) -> str:
    """sha256 of a file's bytes; of the samples and rate for a WAV (libsndfile stamps float WAVs with the time)."""
    if path.suffix != ".wav":
        return hashlib.sha256(path.read_bytes()).hexdigest()
    samples, rate = soundfile.read(path, dtype="float32")
    return hashlib.sha256(samples.tobytes() + str(rate).encode()).hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write", action="store_true", help=f"record the hashes in {HASHES}")
    parser.add_argument("--in-process", nargs=2, type=Path, metavar=("WORKDIR", "OUT"),
                        help="run the jobs in this interpreter and write their hashes to OUT (what run_pinned runs)")
    args = parser.parse_args()
    if args.in_process:
        workdir, out = args.in_process
        out.write_text(json.dumps(run_all(workdir)))
        return
    if reason := unpinnable_reason():
        parser.error(f"cannot pin the kernels: {reason}")
    with tempfile.TemporaryDirectory() as tmp:
        hashes = run_pinned(Path(tmp))
    text = json.dumps(hashes, indent=1, sort_keys=True) + "\n"
    if args.write:
        HASHES.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
