"""The ``mediaforge`` command: one Typer app, one module per sub-command group."""

from __future__ import annotations

import typer

from api.cli import batch, convert, models, run, serve, train, worker
from api.cli import eval as eval_cli

app = typer.Typer(help="mediaforge: generative media jobs (tokenize, detokenize, generate).",
                  no_args_is_help=True, pretty_exceptions_enable=False)
app.command("models")(models.list_models_command)
app.command("run")(run.run_command)
app.command("batch")(batch.batch_command)
app.command("serve")(serve.serve_command)
app.command("worker")(worker.worker_command)
app.add_typer(train.app, name="train")
app.add_typer(convert.app, name="convert")
app.add_typer(eval_cli.app, name="eval")


def main() -> None:
    app()
