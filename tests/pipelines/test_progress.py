"""Every job kind's progress means something: each zoo job of tests/job_outputs.py, run on its tiny model,
reports fractions that only grow, stay in (0, 1], end at 1, and move in steps no larger than half the work where
the kind has several progress points (per denoising step, per batch item, per group of speech). Speech runs once
more at its default ``max_seconds`` (20 s), ten times the answer's length; a batch is spread over its items.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from tests.job_outputs import EXAMPLES, JOBS
from workers.execute import InputFile, encode_result, prepare_request
from workers.jobspec import JobSpec, resolve_job

MAX_JUMP = 0.5
CASES = {**JOBS,
         "speak-default": ({"kind": "speech.generate", "model": "flow-omni-tiny",
                            "params": {"text": "the boy likes a big red ball"}}, {}),
         "chat-default": ({"kind": "speech.chat", "model": "flow-omni-tiny"}, {"audio": "hello.wav"})}


@dataclass
class Runs:
    workdir: Path
    """Each case's outputs, in a folder named after it (later cases read earlier ones')."""
    fractions: dict[str, list[float]]


def run_case(name: str, workdir: Path, batch: int = 1) -> list[float]:
    """The fractions one case reports, run as ``batch`` copies of its request; its outputs go to workdir/name."""
    job, inputs = CASES[name]
    paths = {k: EXAMPLES / src if "/" not in src else workdir / src for k, src in inputs.items()}
    resolved = resolve_job(JobSpec(kind=job["kind"], model=job["model"], inputs={k: str(p) for k, p in paths.items()},
                                   params=job.get("params", {})))
    pipeline = resolved.pipeline_class.load(resolved.model.path)
    request = prepare_request(pipeline, {k: InputFile(p.name, p.read_bytes()) for k, p in paths.items()},
                              resolved.params)
    reported: list[float] = []
    (result, *_) = pipeline.run([request] * batch, progress=lambda fraction, _: reported.append(fraction))
    (workdir / name).mkdir(exist_ok=True)
    for out in encode_result(result):
        (workdir / name / out.filename).write_bytes(out.data)
    return reported


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Runs:
    torch.set_num_threads(1)
    workdir = tmp_path_factory.mktemp("progress")
    return Runs(workdir, {name: run_case(name, workdir) for name in CASES})


@pytest.mark.parametrize("name", CASES)
def test_progress_grows_to_one_in_small_steps(runs: Runs, name: str) -> None:
    reported = runs.fractions[name]
    assert reported, "no progress reported"
    assert all(0 < f <= 1 for f in reported), reported
    assert reported == sorted(reported), reported
    assert reported[-1] == 1.0
    if len(reported) > 1:
        assert max(b - a for a, b in zip([0.0, *reported], reported, strict=False)) <= MAX_JUMP, reported


@pytest.mark.parametrize("name", ["wav-detok", "karl-detok", "xar-gen", "sd-gen", "gdt-group", "speak"])
def test_a_batch_is_spread_over_its_items(runs: Runs, name: str) -> None:
    """Three requests in one batch: each item's share of the bar is a third, reached when that item is done."""
    alone = runs.fractions[name]
    reported = run_case(name, runs.workdir, batch=3)
    assert reported == pytest.approx([(n + f) / 3 for n in range(3) for f in alone]), reported
