"""Per-step PNG plots of results and of comparisons (`trajcache plot`, `score --plot`, `compare --plot`).

One figure per metric and view: a curve per layout over report steps, with the 95% band of the
mean (the distribution's ci_low / ci_high) where the results have one. Files are written with the
Agg backend, so plotting needs no display. A (metric, view) without any value is not drawn.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display; set before pyplot is imported

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from .compare import ResultsComparison, RunComparison  # noqa: E402
from .results import MetricResult, Results  # noqa: E402
from .trajectories import LAYOUTS, VIEWS  # noqa: E402


def plot_results(results: Results, out_dir: Path) -> list[Path]:
    """Write `<metric>.<view>.png` per metric and view into `out_dir`; returns the files written."""
    written = []
    for name, m in results.metrics.items():
        for v, view in enumerate(VIEWS):
            if np.isnan(m.values[v]).all():
                continue
            fig, ax = plt.subplots(figsize=(7, 4.2))
            _curves(ax, m, v, np.arange(results.steps), "", ("-", "o"))
            ax.set_title(f"{name}  (view {view}, run {_short(results.run)})")
            written.append(_save(fig, ax, Path(out_dir) / f"{file_stem(name)}.{view}.png"))
    return written


def plot_comparison(comparison: ResultsComparison, out_dir: Path) -> list[Path]:
    """Write `compare.<metric>.<view>.png`: A (solid) and B (dashed) per layout, with their bands.

    A one-step side (an imported baseline) is drawn as points at the other side's last step, the
    step it was compared with.
    """
    steps_a, steps_b = comparison.steps
    last = max(steps_a, steps_b) - 1
    x_a = np.arange(steps_a) if steps_a > 1 or steps_b == 1 else np.array([last])
    x_b = np.arange(steps_b) if steps_b > 1 or steps_a == 1 else np.array([last])
    written = []
    for name in comparison.metrics:
        a, b = comparison.a.metrics[name], comparison.b.metrics[name]
        for v, view in enumerate(VIEWS):
            if np.isnan(a.values[v]).all() and np.isnan(b.values[v]).all():
                continue
            fig, ax = plt.subplots(figsize=(7, 4.2))
            _curves(ax, a, v, x_a, "A ", ("-", "o"))
            _curves(ax, b, v, x_b, "B ", ("--", "s"))
            ax.set_title(f"{name}  (view {view}; A {_short(comparison.a.run)}, B {_short(comparison.b.run)})")
            written.append(_save(fig, ax, Path(out_dir) / f"compare.{file_stem(name)}.{view}.png"))
    return written


def plot_run_comparison(comparison: RunComparison, out_dir: Path) -> list[Path]:
    """Write `compare.token_agreement.png`: per split, the fraction of equal canvas positions per step."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for i, (name, split) in enumerate(comparison.splits.items()):
        if split.agreement is not None:
            ax.plot(np.arange(split.agreement.shape[0]), split.agreement, color=f"C{i % 10}", label=name)
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel("token agreement")
    ax.set_title(f"canvas agreement per step (A {comparison.a_fingerprint[:12]}, B {comparison.b_fingerprint[:12]})")
    return [_save(fig, ax, Path(out_dir) / "compare.token_agreement.png")]


def file_stem(name: str) -> str:
    """A filesystem-safe stem for a metric name (`a@b` -> `a_at_b-<hash>`); distinct names stay distinct.

    A name that needed changing gets a short hash of the original, so `a@b` and a metric really
    called `a_at_b` cannot overwrite each other.
    """
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", name.replace("@", "_at_")).lstrip(".") or "_"
    if safe == name:
        return name
    return f"{safe}-{hashlib.sha256(name.encode()).hexdigest()[:6]}"


def _curves(ax: Axes, m: MetricResult, v: int, x: np.ndarray, prefix: str, style: tuple[str, str]) -> None:
    """One line per layout of view `v` (a marker when there is a single step), with the 95% band."""
    low, high = m.distribution.get("ci_low"), m.distribution.get("ci_high")
    for j, layout in enumerate(LAYOUTS):
        values = m.values[v, j]  # (S,)
        if np.isnan(values).all():
            continue
        color = f"C{j % 10}"
        marker = style[1] if x.shape[0] == 1 else None
        ax.plot(x, values, style[0], color=color, marker=marker, label=f"{prefix}{layout}")
        if low is None or high is None:
            continue
        if x.shape[0] == 1:
            ax.errorbar(x, values, yerr=[values - low[v, j], high[v, j] - values], fmt="none", ecolor=color, capsize=4)
        else:
            ax.fill_between(x, low[v, j], high[v, j], color=color, alpha=0.15, linewidth=0)


def _save(fig: Figure, ax: Axes, path: Path) -> Path:
    ax.set_xlabel("report step")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small", ncol=2)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _short(run: dict[str, object]) -> str:
    return str(run.get("fingerprint", "?"))[:12]
