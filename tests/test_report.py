"""report: per-step PNG plots of results and comparisons, written as valid, non-trivial PNG files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from matplotlib.axes import Axes
from typer.testing import CliRunner

from cli.main import app
from trajcache.compare import compare_results
from trajcache.metrics.aggregate import distribution, mean_over_items
from trajcache.report import file_stem, plot_comparison, plot_results
from trajcache.results import MetricResult, Results, write_results
from trajcache.trajectories import LAYOUTS, VIEWS

PNG = b"\x89PNG\r\n\x1a\n"
V, Y = len(VIEWS), len(LAYOUTS)


def _results(steps: int, fingerprint: str = "f" * 64) -> Results:
    items = np.random.default_rng(steps).uniform(size=(10, V, Y, steps))  # (N, V, Y, S)
    items[:, VIEWS.index("eos")] = np.nan  # a view without any value is not drawn
    with_band = MetricResult("forget_Q_A_Prob@forget", {}, mean_over_items(items), distribution(items))
    no_band = MetricResult("model_utility", {}, mean_over_items(items))  # dataset level: no distribution
    return Results({"path": "run.zarr", "fingerprint": fingerprint}, None, steps, {m.name: m for m in (with_band, no_band)})


def _assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data.startswith(PNG) and len(data) > 5_000, path


def test_plot_results_writes_one_png_per_metric_and_view_with_values(tmp_path: Path) -> None:
    written = plot_results(_results(8), tmp_path / "plots")
    names = sorted(p.name for p in written)
    assert names == sorted([f"{file_stem('forget_Q_A_Prob@forget')}.full.png", "model_utility.full.png"])
    for path in written:
        _assert_png(path)


def test_titles_name_metric_view_and_short_fingerprint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    titles: list[str] = []
    monkeypatch.setattr(Axes, "set_title", lambda self, title, *a, **k: titles.append(title))
    plot_results(_results(3), tmp_path)
    assert titles == [f"{name}  (view full, run {'f' * 12})" for name in ("forget_Q_A_Prob@forget", "model_utility")]


def test_single_step_results_are_plotted(tmp_path: Path) -> None:
    for path in plot_results(_results(1), tmp_path):
        _assert_png(path)


@pytest.mark.parametrize("steps", [(6, 6), (1, 6), (6, 1)])
def test_plot_comparison(tmp_path: Path, steps: tuple[int, int]) -> None:
    comparison = compare_results(_results(steps[0]), _results(steps[1], "e" * 64))
    written = plot_comparison(comparison, tmp_path)
    assert sorted(p.name for p in written) == sorted(f"compare.{file_stem(n)}.full.png" for n in comparison.metrics)
    for path in written:
        _assert_png(path)


def test_file_stem() -> None:
    assert file_stem("model_utility") == "model_utility"
    at = file_stem("forget_Q_A_Prob@forget")
    assert at.startswith("forget_Q_A_Prob_at_forget-") and "@" not in at
    assert file_stem("a/b") != file_stem("a_b") and "/" not in file_stem("a/b")
    assert file_stem("..") != ".." and not file_stem("../x").startswith(".")


@given(st.text(min_size=1, max_size=30))
def test_file_stem_is_safe_and_injective_on_pairs(name: str) -> None:
    stem = file_stem(name)
    assert stem and all(c.isascii() and (c.isalnum() or c in "._-") for c in stem) and not stem.startswith(".")
    assert file_stem(name + "@") != stem


def test_cli_plot(tmp_path: Path) -> None:
    results = tmp_path / "r.json"
    write_results(_results(4), results)
    out = CliRunner().invoke(app, ["plot", str(results), "--out", str(tmp_path / "png")])
    assert out.exit_code == 0, out.output
    files = sorted((tmp_path / "png").iterdir())
    assert len(files) == 2
    for path in files:
        _assert_png(path)
    missing = CliRunner().invoke(app, ["plot", str(tmp_path / "nope.json"), "--out", str(tmp_path / "png")])
    assert missing.exit_code == 2 and "does not exist" in missing.output
