"""Terminal rendering for the CLI: progress bars, tables and one-line errors (rich via typer)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn
from rich.table import Table

from trajcache.errors import TrajcacheError
from trajcache.results import Results
from trajcache.trajectories import LAYOUTS, VIEWS

console = Console()
err_console = Console(stderr=True)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn a TrajcacheError into one line on stderr and exit code 2; anything else is a bug."""
    try:
        yield
    except TrajcacheError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


class SplitProgress:
    """One bar per split (items done, items/s, ETA); an instance is the library's `progress` callback."""

    def __init__(self, unit: str = "items") -> None:
        self._bars = Progress(
            TextColumn("{task.description:>14}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeRemainingColumn(),
            console=err_console,
        )
        self._tasks: dict[str, TaskID] = {}
        self._unit = unit

    def __enter__(self) -> SplitProgress:
        self._bars.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._bars.stop()

    def __call__(self, name: str, done: int, total: int) -> None:
        if name not in self._tasks:
            self._tasks[name] = self._bars.add_task(name, total=total, completed=done, rate="")
        task = self._tasks[name]
        self._bars.update(task, completed=done)
        speed = self._bars.tasks[task].speed
        self._bars.update(task, rate=f"{speed:6.1f} {self._unit}/s" if speed else "")


def results_table(results: Results, view: str = "full") -> Table:
    """Last step and mean over steps per metric and layout, for one view."""
    table = Table(title=f"{results.run['path']}  (view {view}, {results.steps} steps; last / mean over steps)")
    table.add_column("metric")
    for layout in LAYOUTS:
        table.add_column(layout, justify="right")
    v = VIEWS.index(view)  # type: ignore[arg-type]
    for name, m in results.metrics.items():
        mean = m.step_mean()
        table.add_row(name, *(f"{_fmt(m.values[v, j, -1])} / {_fmt(mean[v, j])}" for j in range(len(LAYOUTS))))
    return table


def kv_table(title: str, rows: list[tuple[str, str]]) -> Table:
    table = Table(title=title, show_header=False)
    table.add_column("key", style="bold")
    table.add_column("value")
    for key, value in rows:
        table.add_row(key, value)
    return table


def _fmt(x: float) -> str:
    return "-" if not np.isfinite(x) else f"{x:.4g}"
