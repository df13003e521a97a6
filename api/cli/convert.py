"""``mediaforge convert MODEL CKPT -o DIR``: official checkpoints -> mediaforge model directories.

A checkpoint that cannot be converted (missing or unexpected keys, shapes that fit no size) is the caller's
input, so it exits 2 with one line naming the problem (``api.cli.errors``; a ``KeyError`` too: a key the
checkpoint lacks).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import typer

from api.cli.errors import caller_errors

app = typer.Typer(help="Convert an official checkpoint into a mediaforge model directory.", no_args_is_help=True)


def _output() -> Path:
    return typer.Option(..., "-o", "--output", "--output-dir", help="Model directory to write.")


def _ema() -> bool:
    return typer.Option(True, "--ema/--no-ema", help="convert the EMA weights when the checkpoint has them")


def _save(convert: Callable[..., Path], *args: object, **kwargs: object) -> None:
    """Run a converter; a checkpoint that does not fit (a key it lacks included) exits 2 naming the problem."""
    with caller_errors(KeyError):
        written = convert(*args, **kwargs)
    typer.echo(f"saved {written}")


@app.command("wavtokenizer")
def convert_wavtokenizer_command(
    checkpoint: Path = typer.Argument(..., help="official Lightning .ckpt or bare state-dict file"),
    output: Path = _output(),
    config: Path | None = typer.Option(None, "--config", help="official YAML config, cross-checked if given"),
) -> None:
    """Convert an official WavTokenizer checkpoint (75 or 40 tokens/s, inferred from the shapes)."""
    from tokenizers_media.audio.convert_wavtokenizer import convert_wavtokenizer

    _save(convert_wavtokenizer, checkpoint, output, config)


@app.command("xar")
def convert_xar_command(
    checkpoint: Path = typer.Argument(..., help="official xAR .pth (with model / model_ema) or bare state dict"),
    output: Path = _output(),
    ema: bool = _ema(),
) -> None:
    """Convert an official xAR-B/L/H checkpoint (size inferred from the shapes)."""
    from pipelines.xar.convert import convert_checkpoint

    _save(convert_checkpoint, checkpoint, output, use_ema=ema)


@app.command("karl")
def convert_karl_command(
    checkpoint: Path = typer.Argument(..., help="official KARL .pth (with ema / model and the pickled args)"),
    output: Path = _output(),
    ema: bool = _ema(),
) -> None:
    """Convert an official KARL checkpoint (VQGAN or VAE base, sizes inferred from the shapes)."""
    from pipelines.karl.convert import convert_checkpoint

    _save(convert_checkpoint, checkpoint, output, use_ema=ema)
