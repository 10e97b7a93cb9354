"""The analysis commands: `compare`, `plot` and `import-logs`. Parse, call the library, render."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import numpy as np
import typer
from rich.table import Table

from trajcache.compare import MetricDiff, ResultsComparison, RunComparison, compare_paths
from trajcache.results import read_results, write_results
from trajcache.tofu_import import import_tofu_logs
from trajcache.trajectories import LAYOUTS, VIEWS

from .render import console, err_console, kv_table, results_table, user_errors

DETAIL_ROWS = 40  # exceeding cells listed in the table; --json has every cell


def register(app: typer.Typer) -> None:
    """Add `compare`, `plot` and `import-logs` to the app."""
    app.command()(compare)
    app.command()(plot)
    app.command("import-logs")(import_logs)


def compare(
    a: Annotated[Path, typer.Argument(metavar="A", help="A results file (score -o) or a run (RUN.zarr).")],
    b: Annotated[Path, typer.Argument(metavar="B", help="Of the same kind as A.")],
    tol: Annotated[Optional[float], typer.Option(help="Largest allowed |B - A| (results: default 1e-9; runs: label log-probs, unchecked unless given).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the comparison as JSON.")] = False,
    plot: Annotated[Optional[Path], typer.Option(help="Write per-step PNG curves of A and B into this folder.")] = None,
    metrics: Annotated[Optional[str], typer.Option(help="Comma-separated metric names (results only; default: all).")] = None,
) -> None:
    """Diff two results files or two runs; exit 1 when a difference exceeds --tol."""
    names = tuple(n.strip() for n in metrics.split(",") if n.strip()) if metrics else None
    with user_errors():
        comparison = compare_paths(a, b, tol=tol, metrics=names)
        written = _plot(comparison, plot) if plot else []
    if as_json:
        typer.echo(json.dumps(comparison.to_dict(), indent=1, allow_nan=False))
    elif isinstance(comparison, ResultsComparison):
        _print_results(comparison)
    else:
        _print_runs(comparison)
    for path in written:
        (err_console if as_json else console).print(f"wrote {path}")  # stdout stays pure JSON
    raise typer.Exit(1 if comparison.exceeds else 0)


def plot(
    results: Annotated[Path, typer.Argument(help="A results file (score -o, import-logs -o).")],
    out: Annotated[Path, typer.Option("--out", help="Folder for the PNG files.")],
) -> None:
    """Per-step curves of every metric and view, one line per layout, with 95% bands."""
    from trajcache.report import plot_results

    with user_errors():
        written = plot_results(read_results(results), out)
    for path in written:
        console.print(f"wrote {path}")


def import_logs(
    folder: Annotated[Path, typer.Argument(help="A TOFU eval-log folder (eval_log.json, eval_log_forget.json, ...).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Results JSON to write.")],
    reference: Annotated[Optional[Path], typer.Option(help="The retain model's TOFU log folder: adds forget_quality.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing results file.")] = False,
) -> None:
    """Turn TOFU's published per-item eval logs into a one-step results file."""
    with user_errors():
        results = import_tofu_logs(folder, reference)
        write_results(results, output, overwrite=overwrite)
    console.print(results_table(results))
    console.print(f"wrote {output}")


def _plot(comparison: ResultsComparison | RunComparison, out: Path) -> list[Path]:
    from trajcache.report import plot_comparison, plot_run_comparison

    if isinstance(comparison, ResultsComparison):
        return plot_comparison(comparison, out)
    return plot_run_comparison(comparison, out)


def _print_results(c: ResultsComparison) -> None:
    for note in c.notes():
        console.print(f"[bold]note[/bold] {note}")
    table = Table(title=f"A {c.a_path}  vs  B {c.b_path}  (tol {c.tol:g})")
    for column in ("metric", "exceeding", "max |B-A|", "at", "A", "B", "B-A 95% CI"):
        table.add_column(column, justify="left" if column in ("metric", "at") else "right")
    for name, m in c.metrics.items():
        cell = _largest(m)
        where = "-" if cell is None else f"{VIEWS[cell[0]]}/{LAYOUTS[cell[1]]}/{_step(c, cell[2])}"
        a, b = ("-", "-") if cell is None else (_fmt(m.a[cell]), _fmt(m.b[cell]))
        style = "red" if m.exceeding.any() else None
        table.add_row(name, f"{int(m.exceeding.sum())}/{int(m.compared.sum())}", _fmt(m.max_abs_diff), where, a, b, _ci(m, cell), style=style)
    console.print(table)
    if c.exceeds:
        console.print(_detail(c))
    for name, m in c.metrics.items():
        if m.spec_changes:
            changes = ", ".join(f"{key} {a!r} -> {b!r}" for key, (a, b) in m.spec_changes.items())
            console.print(f"[yellow]{name}[/yellow] computed by other code: {changes}")
    for side, names in (("A", c.only_in_a), ("B", c.only_in_b)):
        if names:
            console.print(f"[yellow]only in {side}[/yellow] (not compared): {', '.join(names)}")


def _largest(m: MetricDiff) -> tuple[int, int, int] | None:
    """The compared cell with the largest |B - A| (a NaN mismatch first); None when all are equal."""
    score = np.where(m.compared, np.abs(m.diff), 0.0)  # (V, Y, S)
    score = np.where(np.isnan(score), np.inf, score)  # diff is NaN exactly on NaN mismatches
    if not (score > 0).any():
        return None
    v, y, s = np.unravel_index(int(np.argmax(score)), score.shape)
    return int(v), int(y), int(s)


def _detail(c: ResultsComparison) -> Table:
    """The exceeding cells of every metric, the first DETAIL_ROWS of them."""
    cells = [(name, m, (int(v), int(y), int(s))) for name, m in c.metrics.items() for v, y, s in np.argwhere(m.exceeding)]
    table = Table(title=f"{len(cells)} cells differ by more than {c.tol:g}")
    for column in ("metric", "view", "layout", "step", "A", "B", "B-A", "95% CI"):
        table.add_column(column, justify="left" if column in ("metric", "view", "layout") else "right")
    for name, m, cell in cells[:DETAIL_ROWS]:
        v, y, s = cell
        table.add_row(name, VIEWS[v], LAYOUTS[y], _step(c, s), _fmt(m.a[cell]), _fmt(m.b[cell]), _fmt(m.diff[cell]), _ci(m, cell))
    if len(cells) > DETAIL_ROWS:
        table.caption = f"... and {len(cells) - DETAIL_ROWS} more (--json lists every cell)"
    return table


def _print_runs(c: RunComparison) -> None:
    console.print(f"[bold]runs[/bold] A {c.a_path} ({c.a_fingerprint[:12]})  vs  B {c.b_path} ({c.b_fingerprint[:12]})")
    for note in c.notes:
        console.print(f"[bold]note[/bold] {note}")
    for name, s in c.splits.items():
        d = s.divergence()
        rows = [
            ("items A / B (committed)", f"{s.items[0]} / {s.items[1]}"),
            ("common items (content hash)", str(s.common)),
            ("label roles compared", ", ".join(s.roles) or "none"),
            ("token agreement by step", _by_step(s.agreement)),
            ("first divergence step", f"min {_fmt(d['min'])}, median {_fmt(d['median'])}; never: {_fmt(d['never'])} items"),
            ("max |label log-prob B-A|", _fmt(s.max_logp_diff)),
            ("sampler changes", "; ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in s.sampler_changes.items()) or "none"),
        ]
        if s.skipped:
            rows.append(("per-step tables not compared", s.skipped))
        console.print(kv_table(f"split {name}", rows))
    for side, names in (("A", c.only_in_a), ("B", c.only_in_b)):
        if names:
            console.print(f"[yellow]splits only in {side}[/yellow]: {', '.join(names)}")
    if c.tol is not None:
        verdict = "exceeds" if c.exceeds else "within"
        console.print(f"largest label log-prob difference {_fmt(c.max_logp_diff)} {verdict} --tol {c.tol:g}")


def _by_step(agreement: np.ndarray | None) -> str:
    """Agreement at up to 9 evenly spaced steps, always the first and the last (--json has all)."""
    if agreement is None:
        return "-"
    steps = np.unique(np.linspace(0, agreement.shape[0] - 1, min(9, agreement.shape[0])).round().astype(int))
    return "  ".join(f"t{t}: {agreement[t]:.3f}" for t in steps)


def _step(c: ResultsComparison, s: int) -> str:
    """The compared step as numbered in the longer file (the aligned last step, or s itself)."""
    return str(max(c.steps) - 1) if c.aligned else str(s)


def _ci(m: MetricDiff, cell: tuple[int, int, int] | None) -> str:
    if m.interval is None or cell is None:
        return "-"
    return f"[{_fmt(m.interval.low[cell])}, {_fmt(m.interval.high[cell])}]"


def _fmt(x: float | None) -> str:
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "-"
    return str(x) if isinstance(x, int) else f"{x:.6g}"
