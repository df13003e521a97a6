"""Command groups whose sub-commands are imported on first use.

``train`` and ``eval`` build their options from the config dataclasses, so their modules import every trainer
(torch, diffusers: seconds). A lazy group imports them only when one of its commands (or its ``--help``) runs,
so ``mediaforge run`` and ``mediaforge models`` start as fast as before.
"""

from __future__ import annotations

import importlib
from functools import cached_property
from typing import Any

import typer
from typer.core import TyperGroup


class LazyGroup(TyperGroup):
    """A group that delegates to the Typer app named by ``target`` (``"module:attribute"``)."""

    target = ""

    @cached_property
    def _loaded(self) -> TyperGroup:
        module, _, name = self.target.partition(":")
        return typer.main.get_group(getattr(importlib.import_module(module), name))

    def list_commands(self, ctx: typer.Context) -> list[str]:
        return self._loaded.list_commands(ctx)

    def get_command(self, ctx: typer.Context, cmd_name: str) -> Any:
        return self._loaded.get_command(ctx, cmd_name)


def lazy_typer(target: str, help: str) -> typer.Typer:
    """A Typer group for ``add_typer`` whose commands come from ``target`` when first needed."""
    group = type("LazyGroup", (LazyGroup,), {"target": target})
    return typer.Typer(cls=group, help=help, no_args_is_help=True)
