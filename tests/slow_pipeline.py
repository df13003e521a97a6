"""A test-only job: ``audio.tokenize`` on a ``SlowEcho`` model sleeps through progress points, so tests can
catch a job while it runs (cancel, SIGKILL). It joins the service the way every model does: one registry entry.

A model directory written with ``run_log`` makes the pipeline append one line per request it finished (the
request's sample count), so fault tests count how often each job really ran, from inside the model host.

Ray hosts import the class by name; processes that resolve jobs (API, Celery workers) call ``register()``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from pydantic import Field

from pipelines.base import Params, Pipeline, ProgressCallback, Request, Result
from pipelines.media import Tokens
from pipelines.registry import PIPELINES

MODEL_CLASS = "SlowEcho"
HOP = 320


class SlowEchoParams(Params):
    seconds: float = Field(1.0, ge=0.0, le=60.0)
    steps: int = Field(10, ge=1, le=1000)
    poison: bool = Field(False, description="fail inside run, after the checks: a request that breaks its batch")


class SlowEchoPipeline(Pipeline):
    kind = "audio.tokenize"
    params_model = SlowEchoParams
    inputs = {"audio": "audio"}

    def __init__(self, run_log: str | None = None) -> None:
        self.run_log = run_log

    @classmethod
    def load(cls, model_dir: Path, device: str | torch.device = "cpu") -> SlowEchoPipeline:
        return cls(json.loads((Path(model_dir) / "config.json").read_text()).get("run_log"))

    def run(self, requests: list[Request], progress: ProgressCallback | None = None) -> list[Result]:
        if any(r.params.poison for r in requests):
            raise ValueError("poisoned request")
        seconds = max(r.params.seconds for r in requests)
        steps = max(r.params.steps for r in requests)
        for i in range(steps):
            time.sleep(seconds / steps)
            if progress:
                progress((i + 1) / steps, f"step {i + 1}/{steps}")
        if self.run_log:
            with open(self.run_log, "a") as log:  # one small O_APPEND write per line: hosts may share the file
                log.write("".join(f"{r.inputs['audio'].samples.numel()}\n" for r in requests))
        return [{"tokens": Tokens({"codes": torch.zeros(1, 1, -(-r.inputs["audio"].samples.numel() // HOP),
                                                        dtype=torch.long)}, {"model": "slow-echo"})}
                for r in requests]


def write_model_dir(path: Path, run_log: Path | None = None) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    config = {"model_class": MODEL_CLASS} | ({"run_log": str(run_log)} if run_log else {})
    (path / "config.json").write_text(json.dumps(config))
    return path


def register() -> None:
    """The one registry entry that makes this model servable (undone by ``unregister`` at session end)."""
    PIPELINES[("audio.tokenize", MODEL_CLASS)] = f"{__name__}:SlowEchoPipeline"


def unregister() -> None:
    PIPELINES.pop(("audio.tokenize", MODEL_CLASS), None)
