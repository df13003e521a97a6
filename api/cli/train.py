"""``mediaforge train MODEL``: one sub-command per trainable model (the loops live in pipelines/training)."""

from __future__ import annotations

import typer

app = typer.Typer(help="Train a model from this repo's own data.", no_args_is_help=True)
