"""The one progress bar of every trainer: steps done, elapsed and remaining time, and the last step's losses."""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class TrainProgress:
    """A rich bar over ``total`` steps starting at ``completed`` (a resumed run); ``enabled=False`` draws nothing,
    so a trainer calls :meth:`update` the same way whether or not anyone watches."""

    def __init__(self, name: str, total: int, completed: int = 0, enabled: bool = True) -> None:
        self._bar = Progress(TextColumn(f"[bold]{name}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                             TimeRemainingColumn(), TextColumn("{task.fields[losses]}"), disable=not enabled)
        self._task = self._bar.add_task(name, total=total, completed=completed, losses="")

    def __enter__(self) -> TrainProgress:
        self._bar.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self._bar.stop()

    def update(self, steps_done: int, losses: Mapping[str, float]) -> None:
        """Move the bar to ``steps_done`` and show ``losses`` (3 significant digits)."""
        self._bar.update(self._task, completed=steps_done,
                         losses=" ".join(f"{name} {value:.3g}" for name, value in losses.items()))
