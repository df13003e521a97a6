"""``mediaforge run KIND --model M [-p key=value]... INPUT... -o OUTDIR``: one job, in this process."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from api.cli.errors import fail
from pipelines.base import InputError
from pipelines.registry import get_pipeline_class
from pipelines.zoo import resolve_model
from workers.execute import run_spec_locally
from workers.jobspec import JobSpec

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


def run_command(
    kind: Annotated[str, typer.Argument(help="job kind, e.g. audio.tokenize")],
    model: Annotated[str, typer.Option("--model", "-m", help="zoo name or model directory")],
    outdir: Annotated[Path, typer.Option("--output", "-o", help="directory for the outputs")],
    inputs: Annotated[list[str] | None, typer.Argument(help="input files in the kind's order (or name=path); "
                                                             "none for generation kinds")] = None,
    params: Annotated[list[str] | None, typer.Option("--param", "-p", help="key=value (JSON values)")] = None,
    device: Annotated[str, typer.Option(help="torch device")] = "cpu",
    max_audio_seconds: Annotated[float, typer.Option(help="refuse longer audio inputs")] = 600.0,
) -> None:
    """Run one job in this process and write its outputs into OUTDIR."""
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
