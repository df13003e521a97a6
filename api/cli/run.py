"""``mediaforge run KIND --model M [-p key=value]... INPUT... -o OUTDIR``: one job, in this process.

``mediaforge run --workflow FILE.json -o OUTDIR``: a workflow (workers/workflows.py; input paths relative to the
file), checked whole before any step runs, its steps run here one after another in dependency order, each
step's outputs in ``OUTDIR/<step>/`` (a step reads its producers' files from there).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from api.cli.errors import fail
from pipelines.base import InputError, ProgressCallback
from pipelines.registry import get_pipeline_class
from pipelines.zoo import resolve_model
from workers.execute import run_spec_locally
from workers.jobspec import JobSpec, format_validation_error
from workers.workflows import WorkflowSpec, check_workflow

console = Console(stderr=True)


def parse_param(item: str) -> tuple[str, Any]:
    """``key=value``; the value is parsed as JSON when it can be (``steps=4`` -> 4), else kept as a string."""
    key, sep, raw = item.partition("=")
    if not sep or not key:
        raise InputError(f"-p expects key=value, got {item!r}")
    try:
        return key, json.loads(raw)
    except json.JSONDecodeError:
        return key, raw


def assign_inputs(input_names: list[str], given: list[str]) -> dict[str, str]:
    """Positional files fill the kind's inputs in order; ``name=path`` picks one explicitly."""
    named, positional = {}, []
    for item in given:
        key, sep, path = item.partition("=")
        if sep and key in input_names:
            named[key] = path
        else:
            positional.append(item)
    free = [n for n in input_names if n not in named]
    if len(positional) != len(free):
        raise InputError(f"expected {len(input_names)} input file(s) {input_names}, got {len(given)}: {given}")
    return {**named, **dict(zip(free, positional, strict=True))}


def run_workflow(path: Path, outdir: Path, device: str = "cpu", max_audio_seconds: float = 600.0,
                 progress: ProgressCallback | None = None) -> dict[str, list[Path]]:
    """Check the workflow in ``path`` whole, then run its steps in order; returns step -> files written."""
    try:
        spec = WorkflowSpec.model_validate_json(path.read_text())
    except ValidationError as err:
        raise InputError(f"{path}: invalid workflow: {format_validation_error(err)}") from None
    checked = check_workflow(spec, zoo_only=False)
    written: dict[str, list[Path]] = {}
    for name in checked.order:
        step = checked.steps[name].spec
        inputs = {field: str((path.parent / file).expanduser()) for field, file in step.files().items()}
        for field, ref in step.needs().items():
            produced = {p.stem: p for p in written[ref.step]}
            if ref.output not in produced:
                raise InputError(f"step {name!r} inputs.{field}: step {ref.step!r} wrote no output {ref.output!r}")
            inputs[field] = str(produced[ref.output])
        step_progress = None if progress is None else (lambda f, m, n=name: progress(f, f"{n}: {m}"))
        written[name] = run_spec_locally(step.job(inputs), outdir / name, device=device,
                                         max_audio_seconds=max_audio_seconds, progress=step_progress)
    return written


def run_command(
    outdir: Annotated[Path, typer.Option("--output", "-o", help="directory for the outputs")],
    kind: Annotated[str | None, typer.Argument(help="job kind, e.g. audio.tokenize")] = None,
    inputs: Annotated[list[str] | None, typer.Argument(help="input files in the kind's order (or name=path); "
                                                             "none for generation kinds")] = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="zoo name or model directory")] = None,
    params: Annotated[list[str] | None, typer.Option("--param", "-p", help="key=value (JSON values)")] = None,
    workflow: Annotated[Path | None, typer.Option(help="a workflow JSON file instead of KIND", exists=True,
                                                  dir_okay=False)] = None,
    device: Annotated[str, typer.Option(help="torch device")] = "cpu",
    max_audio_seconds: Annotated[float, typer.Option(help="refuse longer audio inputs")] = 600.0,
) -> None:
    """Run one job (KIND --model M) or a workflow (--workflow FILE.json) in this process; outputs into OUTDIR."""
    if workflow is not None:
        if kind is not None or model is not None or params:
            raise fail("--workflow takes no KIND, --model or --param: the workflow file names them per step")
        _run_workflow_command(workflow, outdir, device, max_audio_seconds)
        return
    if kind is None or model is None:
        raise fail("give KIND and --model (or --workflow FILE.json)")
    try:
        ref = resolve_model(model)
        pipeline_class = get_pipeline_class(kind, ref.model_class)
        spec = JobSpec(kind=kind, model=model, inputs=assign_inputs(list(pipeline_class.inputs), inputs or []),
                       params=dict(parse_param(p) for p in params or []))
        with Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                      console=console, transient=True) as bar:
            task = bar.add_task(kind, total=1.0)
            written = run_spec_locally(spec, outdir, device=device, max_audio_seconds=max_audio_seconds,
                                       progress=lambda frac, msg: bar.update(task, completed=frac, description=msg))
    except (InputError, FileNotFoundError) as err:
        raise fail(str(err)) from None
    for path in written:
        typer.echo(str(path))


def _run_workflow_command(path: Path, outdir: Path, device: str, max_audio_seconds: float) -> None:
    try:
        with Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                      console=console, transient=True) as bar:
            task = bar.add_task(path.name, total=1.0)
            written = run_workflow(path, outdir, device, max_audio_seconds,
                                   progress=lambda frac, msg: bar.update(task, completed=frac, description=msg))
    except (InputError, FileNotFoundError) as err:
        raise fail(str(err)) from None
    for paths in written.values():
        for file in paths:
            typer.echo(str(file))
