"""A fixed set of jobs covering every job kind and every zoo model, and the sha256 of each output file.

The hashes in ``tests/data/job_outputs.json`` were recorded before the package was restructured into one folder
per model family; ``tests/test_job_outputs.py`` checks that every job still gives byte-identical outputs.
Regenerate (only when a change of outputs is intended) with ``python -m tests.job_outputs --write``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import tempfile
from pathlib import Path

import soundfile
import torch

from workers.execute import run_spec_locally
from workers.jobspec import JobSpec

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
HASHES = Path(__file__).parent / "data" / "job_outputs.json"

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
                   "params": {"prompts": ["a red circle", "a red square", "a red triangle"], "steps": 3}},
                  {"reference": "shapes.png"}),
    "speak": ({"kind": "speech.generate", "model": "flow-omni-tiny",
               "params": {"text": "the boy likes a big red ball", "max_seconds": 3.0}}, {}),
    "speak-gl": ({"kind": "speech.generate", "model": "flow-omni-tiny",
                  "params": {"text": "the boy likes a big red ball", "max_seconds": 3.0, "vocoder": "griffin-lim"}},
                 {}),
    "chat": ({"kind": "speech.chat", "model": "flow-omni-tiny", "params": {"max_seconds": 3.0}},
             {"audio": "hello.wav"}),
}


def run_all(workdir: Path) -> dict[str, dict[str, str]]:
    """Run every job in order (later jobs read earlier outputs); sha256 of each output file by job name."""
    torch.set_num_threads(1)
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
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        hashes = run_all(Path(tmp))
    text = json.dumps(hashes, indent=1, sort_keys=True) + "\n"
    if args.write:
        HASHES.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
