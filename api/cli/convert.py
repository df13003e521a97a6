"""``mediaforge convert MODEL CKPT -o DIR``: official checkpoints -> mediaforge model directories."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(help="Convert an official checkpoint into a mediaforge model directory.", no_args_is_help=True)


@app.command("wavtokenizer")
def convert_wavtokenizer_command(
    checkpoint: Path = typer.Argument(..., help="official Lightning .ckpt or bare state-dict file"),
    output_dir: Path = typer.Option(..., "-o", "--output-dir", help="model directory to write"),
    config: Path | None = typer.Option(None, "--config", help="official YAML config, cross-checked if given"),
) -> None:
    """Convert an official WavTokenizer checkpoint (75 or 40 tokens/s, inferred from the shapes)."""
    from tokenizers_media.audio.convert_wavtokenizer import convert_wavtokenizer

    try:
        written = convert_wavtokenizer(checkpoint, output_dir, config)
    except (ValueError, FileNotFoundError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(code=1) from err
    typer.echo(f"saved {written}")


@app.command("xar")
def convert_xar_command(
    checkpoint: Path = typer.Argument(..., help="official xAR .pth (with model / model_ema) or bare state dict"),
    output_dir: Path = typer.Option(..., "-o", "--output-dir", help="model directory to write"),
    ema: bool = typer.Option(True, "--ema/--no-ema", help="convert the EMA weights when the checkpoint has them"),
) -> None:
    """Convert an official xAR-B/L/H checkpoint (size inferred from the shapes)."""
    from pipelines.xar.convert import convert_checkpoint

    try:
        written = convert_checkpoint(checkpoint, output_dir, use_ema=ema)
    except (ValueError, FileNotFoundError, KeyError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(code=1) from err
    typer.echo(f"saved {written}")


@app.command("karl")
def convert_karl_command(
    checkpoint: Path = typer.Argument(..., help="official KARL .pth (with ema / model and the pickled args)"),
    output_dir: Path = typer.Option(..., "-o", "--output-dir", help="model directory to write"),
    ema: bool = typer.Option(True, "--ema/--no-ema", help="convert the EMA weights when the checkpoint has them"),
) -> None:
    """Convert an official KARL checkpoint (VQGAN or VAE base, sizes inferred from the shapes)."""
    from pipelines.karl.convert import convert_checkpoint

    try:
        written = convert_checkpoint(checkpoint, output_dir, use_ema=ema)
    except (ValueError, FileNotFoundError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(code=1) from err
    typer.echo(f"saved {written}")
