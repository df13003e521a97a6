"""``mediaforge kinds [KIND]``: the job kinds, their inputs, params and models (what ``GET /v1/kinds`` answers)."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from api.cli.errors import fail
from api.routes.kinds import describe_kinds
from pipelines.registry import JOB_KINDS


def _limits(field: dict[str, Any]) -> str:
    bounds = [(key, sign) for key, sign in (("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="),
                                            ("exclusiveMaximum", "<"), ("maxLength", "length <="))
              if key in field]
    return ", ".join(f"{sign} {field[key]}" for key, sign in bounds)


def _params_table(title: str, schema: dict[str, Any]) -> Table:
    table = Table("param", "type", "default", "limits", "description", title=title)
    for name, field in schema.get("properties", {}).items():
        types = [branch.get("type", "?") for branch in field.get("anyOf", [field])]
        table.add_row(name, " | ".join(map(str, types)), json.dumps(field.get("default")), _limits(field),
                      field.get("description", ""))
    return table


def kinds_command(
    kind: Annotated[str | None, typer.Argument(help="one job kind, e.g. audio.tokenize (all when omitted)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the JSON GET /v1/kinds answers")] = False,
) -> None:
    """List the job kinds: inputs, the zoo models that serve each; with KIND, also its params."""
    if kind is not None and kind not in JOB_KINDS:
        raise fail(f"unknown job kind {kind!r}; known kinds: {sorted(JOB_KINDS)}")
    kinds = describe_kinds(*([kind] if kind else []))
    if as_json:
        doc = kinds[0].model_dump() if kind else {"kinds": [k.model_dump() for k in kinds]}
        typer.echo(json.dumps(doc, indent=2))
        return
    console = Console()
    table = Table("kind", "family", "inputs", "models", "description")
    for info in kinds:
        table.add_row(info.kind, info.family, ", ".join(f"{n} ({m})" for n, m in info.inputs.items()) or "-",
                      ", ".join(info.models) or "-", info.description)
    console.print(table)
    if kind:  # models of one kind may take different params (image.generate: a prompt, or a class)
        info = kinds[0]
        for model, schema in (info.params_schema_by_model or {"": info.params_schema}).items():
            console.print(_params_table(f"{info.kind} params" + (f" on {model}" if model else ""), schema))
