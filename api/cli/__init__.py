"""The ``mediaforge`` command: one Typer app, one module per sub-command group."""

from __future__ import annotations

import typer

from api.cli import batch, convert, kinds, models, run, serve, worker
from api.cli.lazy import lazy_typer

app = typer.Typer(help="mediaforge: generative media jobs (tokenize, detokenize, generate).",
                  no_args_is_help=True, pretty_exceptions_enable=False)
app.command("models")(models.list_models_command)
app.command("kinds")(kinds.kinds_command)
app.command("run")(run.run_command)
app.command("batch")(batch.batch_command)
app.command("serve")(serve.serve_command)
app.command("worker")(worker.worker_command)
app.add_typer(lazy_typer("api.cli.train:app", "Train a model from this repo's own data."), name="train")
app.add_typer(convert.app, name="convert")
app.add_typer(lazy_typer("api.cli.eval:app", "Evaluate a model with an offline metric."), name="eval")


def main() -> None:
    app()
