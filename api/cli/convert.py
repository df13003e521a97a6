"""``mediaforge convert MODEL CKPT -o DIR``: official checkpoints -> mediaforge model directories."""

from __future__ import annotations

import typer

app = typer.Typer(help="Convert an official checkpoint into a mediaforge model directory.", no_args_is_help=True)
