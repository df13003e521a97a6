"""The one exit-code rule of every ``mediaforge`` command: 2 for a caller's mistake, 1 for a failure.

A caller's mistake is anything the caller can fix by changing the command line: a bad option or value (Click
already exits 2 for those), an unknown ``--set`` key, a missing input file, an unusable checkpoint or model they
named, a reused run directory without ``--resume``. Code raises ``ValueError`` (``InputError`` is one),
``FileNotFoundError`` or ``FileExistsError`` for these (``convert`` adds ``KeyError``: a key its checkpoint
lacks); :func:`caller_errors` turns them into one ``error: ...`` line and exit code 2. Any other exception is a
failure while running: it propagates with its traceback and Python exits 1 (as does ``batch`` when a job fails).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console

USAGE = 2
"""Exit code of a caller's mistake (Click's own code for a bad option)."""
FAILURE = 1
"""Exit code of a failure while running."""

CALLER_ERRORS: tuple[type[Exception], ...] = (ValueError, FileNotFoundError, FileExistsError)

console = Console(stderr=True)


def fail(message: str, code: int = USAGE) -> typer.Exit:
    """Print ``error: message`` on stderr and return the ``typer.Exit`` to raise."""
    # markup off: messages quote user values such as "[0, 4096)"; soft wrap keeps them on one line.
    console.print(f"error: {message}", style="red", markup=False, highlight=False, soft_wrap=True)
    return typer.Exit(code=code)


@contextmanager
def caller_errors(*extra: type[Exception]) -> Iterator[None]:
    """Exit 2 with one ``error:`` line for the exceptions that mean a caller's mistake (see the module doc), and
    for the ``extra`` ones a command knows to be the caller's too."""
    try:
        yield
    except (*CALLER_ERRORS, *extra) as err:
        # KeyError's str() is the repr of its key; its argument is the message.
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        raise fail(str(message)) from None
