"""``mediaforge models``: the zoo, with the job kinds each model serves."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from pipelines.registry import kinds_for_model_class
from pipelines.zoo import list_models


def list_models_command() -> None:
    """List the models in the zoo and the job kinds they serve."""
    table = Table("name", "class", "job kinds", "path")
    for model in list_models():
        table.add_row(model.name, model.model_class, ", ".join(kinds_for_model_class(model.model_class)),
                      str(model.path))
    Console().print(table)
