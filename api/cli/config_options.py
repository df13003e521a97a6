"""Typer options built from a frozen config dataclass, so a default lives in one place: the dataclass.

:func:`config_command` wraps a command ``def cmd(config, ..., **own_options)``: the command line gets one option
per field named in the command's table (type and default read from the dataclass, help from the table), plus
``--config FILE.json`` and repeatable ``--set key=value`` for any field, and the command receives the built,
validated config. Later sources win: dataclass defaults (or, for a command given ``presets``, the config of
the ``--preset`` chosen), then ``--config``, then the options given, then ``--set``. Typer reads a command's
parameters from ``inspect.signature``, so the wrapper carries a built ``__signature__``. Unknown keys and bad
values exit 2 naming them (:mod:`api.cli.errors`).

A field that is not a plain ``int``/``float``/``str``/``bool`` (optionally ``| None``) shows as a string option:
tuples as comma lists (``--kinds a,b``), anything else through the table's ``parse`` (``--perturb alpha=1``).
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import json
import textwrap
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints

import typer

from api.cli.errors import caller_errors
from pipelines.training.run_dir import config_from_dict

PLAIN = (int, float, str, bool)
"""Field types that become typed options as they are."""
PREFIX = "cfg_"
"""Python names of field parameters: keeps a field (flow-omni's ``output``) apart from a command's own option."""


@dataclass(frozen=True)
class Opt:
    """How one field shows on the command line when ``--field-name`` with the field's type is not enough."""

    help: str | None = None
    """``None``: the field's docstring in the dataclass (the string literal under it)."""
    flag: str | None = None
    """Option declaration, e.g. ``--tokens`` or ``--text/--no-text``; default ``--field-name`` (bools:
    ``--field-name/--no-field-name``)."""
    parse: Callable[[str], Any] | None = None
    """Turns the option's string into the field's value (a zoo lookup, ``PerturbOptions.parse``)."""
    hidden: bool = False


Fields = dict[str, "str | Opt | None"]
"""Field name -> help text, an :class:`Opt`, or ``None`` for the field's docstring."""


@dataclass(frozen=True)
class OptionGroup:
    """Options shared by a family of commands (``-o``, ``--threads``...), handed to the command as one object."""

    params: Sequence[inspect.Parameter]
    build: Callable[..., Any]
    """Called with the group's option values (by parameter name) once the config is built."""


THREADS = 1
"""torch CPU threads of every train and eval command (one default for all: runs share small CPU machines)."""


def threads_option() -> inspect.Parameter:
    """``--threads N`` as the commands built here take it."""
    return inspect.Parameter("threads", inspect.Parameter.KEYWORD_ONLY, annotation=int,
                             default=typer.Option(THREADS, help="torch CPU threads (0: torch's default)."))


def set_threads(threads: int) -> None:
    """``torch.set_num_threads`` unless 0 (torch's default)."""
    import torch

    if threads:
        torch.set_num_threads(threads)


def _unoptional(hint: Any) -> tuple[Any, bool]:
    """``X | None`` -> ``(X, True)``; anything else -> ``(hint, False)``."""
    if get_origin(hint) in (Union, types.UnionType):
        args = [a for a in get_args(hint) if a is not type(None)]
        if len(args) == 1 and len(get_args(hint)) == 2:
            return args[0], True
    return hint, False


def _is_tuple(hint: Any) -> bool:
    return get_origin(hint) is tuple


def parse_value(name: str, hint: Any, raw: str) -> Any:
    """A command-line string as the value of field ``name`` (type ``hint``); ``ValueError`` names the field."""
    base, optional = _unoptional(hint)
    if optional and raw.lower() in ("none", "null"):
        return None
    try:
        if base is str:
            return raw
        if base is bool:
            if raw.lower() not in ("true", "false", "1", "0"):
                raise ValueError("expected true or false")
            return raw.lower() in ("true", "1")
        if base in (int, float):
            return base(raw)
        if _is_tuple(base) and not raw.lstrip().startswith("["):
            return _parse_tuple(base, raw)
        return json.loads(raw)
    except ValueError as err:
        raise ValueError(f"{name}: bad value {raw!r} ({err})") from None


def _parse_tuple(hint: Any, raw: str) -> tuple[Any, ...]:
    args = get_args(hint)
    items = [item.strip() for item in raw.split(",") if item.strip()]
    if len(args) == 2 and args[1] is Ellipsis:
        types_ = [args[0]] * len(items)
    else:
        types_ = list(args)
        if len(items) != len(types_):
            raise ValueError(f"expected {len(types_)} comma-separated values, got {len(items)}")
    return tuple(t(item) if t in PLAIN else item for t, item in zip(types_, items, strict=True))


def format_value(value: Any) -> Any:
    """A field default as its option shows it (tuples as comma lists)."""
    if isinstance(value, tuple) and all(isinstance(v, int | float | str) for v in value):
        return ",".join(str(v) for v in value)
    return value


def _check_type(name: str, hint: Any, value: Any) -> None:
    """Plain fields must hold their type (a JSON ``--config`` can say ``"steps": "ten"``)."""
    base, optional = _unoptional(hint)
    if (value is None and optional) or base not in PLAIN:
        return
    ok = isinstance(value, base) and not (base is not bool and isinstance(value, bool))
    if base is float and isinstance(value, int) and not isinstance(value, bool):
        ok = True
    if not ok:
        raise ValueError(f"{name}: expected {base.__name__}, got {value!r}")


def field_docs(cls: type) -> dict[str, str]:
    """The docstring under each field (``name: type = value`` then a string), first paragraph, base classes
    first so a subclass's own text wins; classes without source (``make_dataclass``) have none."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        try:
            body = ast.parse(textwrap.dedent(inspect.getsource(klass))).body[0]
        except (OSError, TypeError, SyntaxError):
            continue
        statements = getattr(body, "body", [])
        for first, second in zip(statements, statements[1:], strict=False):
            if (isinstance(first, ast.AnnAssign) and isinstance(first.target, ast.Name)
                    and isinstance(second, ast.Expr) and isinstance(second.value, ast.Constant)
                    and isinstance(second.value.value, str)):
                paragraph = inspect.cleandoc(second.value.value).split("\n\n")[0]
                docs[first.target.id] = " ".join(paragraph.replace("``", "").split())
    return docs


def _preset_values(name: str, presets: Mapping[str, Any]) -> str:
    """`` Presets: xar 600, gdt 800.`` where the presets disagree on field ``name`` (--help shows one default)."""
    values = {preset: format_value(getattr(config, name)) for preset, config in presets.items()}
    if len(set(map(str, values.values()))) < 2:
        return ""
    return " Presets: " + ", ".join(f"{preset} {value}" for preset, value in values.items()) + "."


def field_options(cls: type, fields: Fields, presets: Mapping[str, Any] | None = None) -> list[inspect.Parameter]:
    """One keyword parameter with a ``typer.Option`` default per field in ``fields``, in the table's order; with
    ``presets``, a field's help lists each preset's value where they differ."""
    hints = get_type_hints(cls)
    defaults = {f.name: f for f in dataclasses.fields(cls)}
    docs = field_docs(cls)
    params = []
    for name, spec in fields.items():
        if name not in defaults:
            raise TypeError(f"{cls.__name__} has no field {name!r}")
        opt = spec if isinstance(spec, Opt) else Opt(spec)
        if opt.help is None:
            if name not in docs:
                raise TypeError(f"{cls.__name__}.{name} has no docstring: give the option a help text")
            opt = dataclasses.replace(opt, help=docs[name])
        if presets:
            opt = dataclasses.replace(opt, help=opt.help + _preset_values(name, presets))
        base, optional = _unoptional(hints[name])
        field = defaults[name]
        if field.default is not dataclasses.MISSING:
            default = format_value(field.default)
        elif field.default_factory is not dataclasses.MISSING:
            default = format_value(field.default_factory())
        else:
            default = ...
        kind = base if base in PLAIN and opt.parse is None else str
        flag = opt.flag or ("--{0}/--no-{0}" if kind is bool else "--{0}").format(name.replace("_", "-"))
        annotation = kind | None if optional or default is None else kind
        params.append(inspect.Parameter(PREFIX + name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation,
                                        default=typer.Option(default, *flag.split(" "), help=opt.help,
                                                             hidden=opt.hidden)))
    return params


def _config_file_param(cls: type) -> list[inspect.Parameter]:
    names = ", ".join(f.name for f in dataclasses.fields(cls))
    return [
        inspect.Parameter("config_file", inspect.Parameter.KEYWORD_ONLY, annotation=Path | None,
                          default=typer.Option(None, "--config", exists=True, dir_okay=False,
                                               help=f"JSON object of {cls.__name__} fields, read before the "
                                                    "options.")),
        inspect.Parameter("set_items", inspect.Parameter.KEYWORD_ONLY, annotation=list[str] | None,
                          default=typer.Option(None, "--set", metavar="KEY=VALUE",
                                               help=f"Set any field (repeatable, applied last): {names}.")),
    ]


def _preset_param(cls: type, presets: Mapping[str, Any]) -> inspect.Parameter:
    """``--preset NAME``, defaulting to the preset that is the dataclass defaults (the ones --help shows)."""
    default = next((name for name, config in presets.items() if config == cls()), None)
    if default is None:
        raise TypeError(f"none of the presets {sorted(presets)} is {cls.__name__}(): the defaults --help shows "
                        "must be one preset's")
    return inspect.Parameter(
        "config_preset", inspect.Parameter.KEYWORD_ONLY, annotation=str,
        default=typer.Option(default, "--preset", help=f"Preset the fields start from ({', '.join(presets)}); "
                             f"--config, the options and --set override its values. The defaults shown are the "
                             f"{default} preset's; the help of a field the presets disagree on lists them all."))


def build_config(cls: type, fields: Fields, given: dict[str, Any], config_file: Path | None,
                 set_items: Sequence[str], base: Any | None = None) -> Any:
    """The config from ``base`` (a preset's config; default: the dataclass defaults), the JSON file, the options
    ``given`` and ``--set`` items."""
    hints = get_type_hints(cls)
    values: dict[str, Any] = {} if base is None else dataclasses.asdict(base)
    if config_file is not None:
        loaded = json.loads(config_file.read_text())
        if not isinstance(loaded, dict):
            raise ValueError(f"--config {config_file}: expected a JSON object of {cls.__name__} fields")
        unknown = sorted(set(loaded) - set(hints))
        if unknown:
            raise ValueError(f"--config {config_file}: unknown keys {unknown}; {cls.__name__} has {sorted(hints)}")
        values.update(loaded)
    for name, raw in given.items():
        spec = fields[name]
        parse = spec.parse if isinstance(spec, Opt) else None
        if parse is not None:
            values[name] = parse(raw)
        elif isinstance(raw, str) and _is_tuple(_unoptional(hints[name])[0]):
            values[name] = parse_value(name, hints[name], raw)
        else:
            values[name] = raw
    for item in set_items:
        key, sep, raw = item.partition("=")
        if not sep or key not in hints:
            raise ValueError(f"--set {item!r}: unknown key {key!r}; {cls.__name__} has {sorted(hints)}")
        values[key] = parse_value(key, hints[key], raw)
    for name, value in values.items():
        _check_type(name, hints[name], value)
    return config_from_dict(cls, values)


def _given(ctx: typer.Context, names: Sequence[str]) -> set[str]:
    """Which of these parameters the command line (or an environment variable) set, not their defaults."""
    sources = {n: ctx.get_parameter_source(n) for n in names}
    return {n for n, source in sources.items() if source is not None and source.name != "DEFAULT"}


def config_command(cls: type, fields: Fields, group: OptionGroup | None = None,
                   presets: Mapping[str, Any] | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorate ``cmd(config, [group object,] **own)``: options of ``fields`` of ``cls``, the group's options,
    ``--config``/``--set`` and the command's own options; errors building the config (or raised as a caller's
    mistake by the command, see :mod:`api.cli.errors`) exit 2.

    ``presets`` (name -> config of ``cls``, one of them ``cls()``): a ``--preset NAME`` option whose config the
    other sources override, for a config class that has presets but no field naming one.
    """

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        own = list(inspect.signature(func).parameters.values())[2 if group else 1:]
        group_params = list(group.params) if group else []
        preset_params = [_preset_param(cls, presets)] if presets else []
        params = [*group_params, *own, *preset_params, *field_options(cls, fields, presets),
                  *_config_file_param(cls)]
        field_names = [PREFIX + name for name in fields]

        @functools.wraps(func)
        def command(ctx: typer.Context, **kwargs: Any) -> Any:
            options = {name: kwargs.pop(name) for name in field_names}
            given = {name.removeprefix(PREFIX): options[name] for name in _given(ctx, field_names)}
            grouped = {p.name: kwargs.pop(p.name) for p in group_params}
            with caller_errors():
                base = _preset(presets, kwargs.pop("config_preset")) if presets else None
                config = build_config(cls, fields, given, kwargs.pop("config_file"), kwargs.pop("set_items") or [],
                                      base)
                head = (config, group.build(**grouped)) if group else (config,)
                return func(*head, **kwargs)

        context = inspect.Parameter("ctx", inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context)
        params = [context, *(p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in params)]
        command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in params}
        command.config_class = cls  # type: ignore[attr-defined]  # what the options are read from (tests, docs)
        return command

    return decorate


def _preset(presets: Mapping[str, Any], name: str) -> Any:
    if name not in presets:
        raise ValueError(f"--preset {name!r}: unknown preset; presets are {', '.join(presets)}")
    return presets[name]


def default_of(func: Callable[..., Any], name: str) -> Any:
    """The default of parameter ``name`` of ``func`` (an option that passes it through keeps it in one place)."""
    return inspect.signature(func).parameters[name].default

