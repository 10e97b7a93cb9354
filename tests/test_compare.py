"""compare: results files cell by cell (tolerance, NaN rules, step alignment, paired bootstrap) and
runs (shared items, canvas agreement, divergence, label log-probs), through the library and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import bootstrap
from typer.testing import CliRunner

from cli.main import app
from trajcache.compare import DEFAULT_TOL, compare_paths, compare_results, compare_runs, paired_bootstrap
from trajcache.errors import ConfigError, MissingInputError, ResultsError, StoreError, UnknownMetricError
from trajcache.metrics.aggregate import distribution
from trajcache.results import MetricResult, Results, write_results
from trajcache.store import FieldSpec, SplitLayout, create_run, open_run
from trajcache.trajectories import LAYOUTS, VIEWS

V, Y = len(VIEWS), len(LAYOUTS)
FP_A, FP_B = "a" * 64, "b" * 64
runner = CliRunner()


def _metric(name: str, items: np.ndarray, *, version: int = 1, keep_items: bool = True, ids: list[str] | None = None) -> MetricResult:
    """A metric from per-item values (N, V, Y, S), as `score` builds it."""
    spec = {"metric": name, "version": version, "code": f"code-v{version}", "module": "tests"}
    ids = ids or [f"item{i}" for i in range(items.shape[0])]
    per_item = (ids, items) if keep_items else None
    return MetricResult(name, spec, np.nanmean(items, axis=0), distribution(items), per_item)


def _results(metrics: dict[str, MetricResult], fingerprint: str = FP_A) -> Results:
    steps = next(iter(metrics.values())).values.shape[-1]
    return Results({"path": "run.zarr", "fingerprint": fingerprint}, None, steps, metrics)


def _items(seed: int, n: int = 12, steps: int = 4) -> np.ndarray:
    return np.random.default_rng(seed).uniform(size=(n, V, Y, steps))  # (N, V, Y, S)


def _write(results: Results, path: Path) -> Path:
    write_results(results, path)
    return path


@pytest.fixture
def pair() -> tuple[Results, Results]:
    """A and B with three metrics; B's `rouge` differs at one cell (view eos, fixation_end, step 2)."""
    base = {name: _items(seed) for seed, name in enumerate(("probability", "rouge", "truth_ratio"))}
    changed = {k: v.copy() for k, v in base.items()}
    changed["rouge"][:, 1, 2, 2] += 0.5
    a = _results({k: _metric(k, v) for k, v in base.items()})
    b = _results({k: _metric(k, v) for k, v in changed.items()})
    return a, b


# ----------------------------------------------------------------------------- results


def test_identical_results_do_not_exceed(pair: tuple[Results, Results]) -> None:
    a, _ = pair
    c = compare_results(a, a)
    assert not c.exceeds and c.same_run and c.tol == DEFAULT_TOL
    for m in c.metrics.values():
        assert m.max_abs_diff == 0 and not m.exceeding.any() and m.compared.all()
        np.testing.assert_array_equal(m.diff, 0)


def test_changed_metric_is_flagged_and_only_it(pair: tuple[Results, Results]) -> None:
    c = compare_results(*pair)
    assert c.exceeds
    assert [n for n, m in c.metrics.items() if m.exceeding.any()] == ["rouge"]
    rouge = c.metrics["rouge"]
    assert np.argwhere(rouge.exceeding).tolist() == [[1, 2, 2]]
    assert rouge.diff[1, 2, 2] == pytest.approx(0.5) and rouge.max_abs_diff == pytest.approx(0.5)


def test_cli_changed_metric_exits_1_and_names_it(pair: tuple[Results, Results], tmp_path: Path) -> None:
    a, b = _write(pair[0], tmp_path / "a.json"), _write(pair[1], tmp_path / "b.json")
    same = runner.invoke(app, ["compare", str(a), str(a)])
    assert same.exit_code == 0, same.output
    result = runner.invoke(app, ["compare", str(a), str(b), "--json"])
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert {n: m["n_exceeding"] for n, m in doc["metrics"].items()} == {"probability": 0, "rouge": 1, "truth_ratio": 0}
    assert doc["metrics"]["rouge"]["exceeding"]["eos"]["fixation_end"] == [False, False, True, False]
    assert doc["metrics"]["rouge"]["diff"]["eos"]["fixation_end"][2] == pytest.approx(0.5)
    table = runner.invoke(app, ["compare", str(a), str(b)])
    assert table.exit_code == 1 and "1 cells differ" in table.output and "rouge" in table.output


def test_tolerance_is_inclusive_and_defaults_to_1e9(pair: tuple[Results, Results]) -> None:
    a, _ = pair
    shifted = _results({k: MetricResult(k, m.spec, m.values + 2e-10, m.distribution) for k, m in a.metrics.items()})
    assert not compare_results(a, shifted).exceeds
    bigger = _results({k: MetricResult(k, m.spec, m.values + 1e-6, m.distribution) for k, m in a.metrics.items()})
    assert compare_results(a, bigger).exceeds
    assert not compare_results(a, bigger, tol=1e-5).exceeds
    exact = _results({"m": MetricResult("m", {}, np.full((V, Y, 1), 0.75))})
    quarter = _results({"m": MetricResult("m", {}, np.full((V, Y, 1), 0.5))})
    assert not compare_results(exact, quarter, tol=0.25).exceeds  # |0.5 - 0.75| == 0.25 exactly
    with pytest.raises(ConfigError, match="--tol -1"):
        compare_results(a, a, tol=-1)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(-1e3, 1e3), min_size=V * Y * 2, max_size=V * Y * 2),
    st.lists(st.floats(-1e3, 1e3), min_size=V * Y * 2, max_size=V * Y * 2),
    st.floats(0, 10),
)
def test_exceeding_is_abs_difference_above_tol(xs: list[float], ys: list[float], tol: float) -> None:
    a, b = (np.array(v).reshape(V, Y, 2) for v in (xs, ys))
    m = compare_results(_results({"m": MetricResult("m", {}, a)}), _results({"m": MetricResult("m", {}, b)}), tol=tol).metrics["m"]
    np.testing.assert_array_equal(m.exceeding, np.abs(b - a) > tol)
    assert m.max_abs_diff == pytest.approx(np.abs(b - a).max())


def test_nan_rules() -> None:
    a = np.zeros((V, Y, 3))
    b = np.zeros((V, Y, 3))
    a[0, 0, 0] = b[0, 0, 0] = np.nan  # NaN vs NaN: equal
    b[0, 1, 1] = np.nan  # a number vs NaN: a difference, whatever the tolerance
    a[1, 3, 2] = b[1, 3, 2] = np.inf  # inf vs inf: equal
    b[1, 0, 0] = 0.1
    m = compare_results(_results({"m": MetricResult("m", {}, a)}), _results({"m": MetricResult("m", {}, b)}), tol=np.inf).metrics["m"]
    assert np.argwhere(m.exceeding).tolist() == [[0, 1, 1]]
    assert m.nan_mismatches == 1
    assert m.max_abs_diff == pytest.approx(0.1)  # over cells where both have a number
    assert m.diff[0, 0, 0] == 0 and m.diff[1, 3, 2] == 0 and np.isnan(m.diff[0, 1, 1])


def test_metrics_in_one_file_only_are_listed(pair: tuple[Results, Results], tmp_path: Path) -> None:
    a, b = pair
    extra = _results({**b.metrics, "privleak": _metric("privleak", _items(9))})
    fewer = _results({k: v for k, v in a.metrics.items() if k != "probability"})
    c = compare_results(fewer, extra)
    assert c.only_in_a == () and c.only_in_b == ("probability", "privleak")
    assert set(c.metrics) == {"rouge", "truth_ratio"}
    out = runner.invoke(app, ["compare", str(_write(fewer, tmp_path / "a.json")), str(_write(extra, tmp_path / "b.json"))])
    assert "only in B" in out.output and "probability, privleak" in out.output


def test_metric_selection(pair: tuple[Results, Results]) -> None:
    c = compare_results(*pair, metrics=["probability"])
    assert list(c.metrics) == ["probability"] and not c.exceeds
    with pytest.raises(UnknownMetricError, match="'nope'.*available: probability, rouge, truth_ratio"):
        compare_results(*pair, metrics=["nope"])


def test_provenance_differences_are_stated(pair: tuple[Results, Results]) -> None:
    a, b = pair
    newer = _results({**b.metrics, "rouge": _metric("rouge", b.metrics["rouge"].per_item[1], version=2)}, fingerprint=FP_B)  # type: ignore[index]
    c = compare_results(a, newer)
    assert c.notes()[0] == f"different runs: A {FP_A[:12]} vs B {FP_B[:12]}"
    assert c.metrics["rouge"].spec_changes == {"version": (1, 2), "code": ("code-v1", "code-v2")}
    assert c.metrics["probability"].spec_changes == {}
    moved = _results({"rouge": MetricResult("rouge", {**a.metrics["rouge"].spec, "module": "plugin"}, a.metrics["rouge"].values)})
    assert compare_results(_results({"rouge": a.metrics["rouge"]}), moved).metrics["rouge"].spec_changes == {}  # only version/code count
    assert compare_results(a, b).notes() == [f"same run {FP_A[:12]}"]


def test_step_counts_must_match_unless_one_side_has_one_step() -> None:
    four, six = (_results({"m": _metric("m", _items(0, steps=s))}) for s in (4, 6))
    with pytest.raises(ResultsError, match="A has 4 steps and B 6"):
        compare_results(four, six)
    one = np.full((V, Y, 1), np.nan)
    one[0, 0, 0] = six.metrics["m"].values[0, 0, -1] + 0.01
    c = compare_results(_results({"m": MetricResult("m", {}, one)}, FP_B), six)
    assert c.aligned is not None and "A has 1 step: compared with B's last step (5)" in c.notes()[1]
    m = c.metrics["m"]
    assert m.compared.sum() == 1 and m.compared[0, 0, 0]  # only the cells the one-step side has
    assert np.argwhere(m.exceeding).tolist() == [[0, 0, 0]]
    assert m.diff[0, 0, 0] == pytest.approx(-0.01)
    flipped = compare_results(six, _results({"m": MetricResult("m", {}, one)}, FP_B))
    assert "B has 1 step: compared with A's last step (5)" in flipped.notes()[1]


def test_bootstrap_is_seeded_and_covers_the_true_difference() -> None:
    rng = np.random.default_rng(7)
    a = rng.normal(size=(200, V, Y, 3))
    b = a + 0.3 + rng.normal(scale=0.5, size=a.shape)  # true mean difference 0.3 in every cell
    low, high = paired_bootstrap(a, b)
    assert ((low < 0.3) & (0.3 < high)).mean() > 0.85  # a 95% interval, over 24 cells
    assert (high - low).max() < 0.25
    low2, high2 = paired_bootstrap(a, b)
    np.testing.assert_array_equal(low, low2)
    np.testing.assert_array_equal(high, high2)
    assert not np.array_equal(low, paired_bootstrap(a, b, seed=1)[0])


def test_bootstrap_agrees_with_scipy_percentile_interval() -> None:
    rng = np.random.default_rng(3)
    a = rng.uniform(size=(150, 1))
    b = a + rng.normal(0.1, 0.2, size=a.shape)
    low, high = paired_bootstrap(a, b, resamples=4000)
    ref = bootstrap((a[:, 0], b[:, 0]), lambda x, y: np.mean(y - x), paired=True, method="percentile", n_resamples=4000, random_state=0).confidence_interval
    assert low[0] == pytest.approx(ref.low, abs=0.01) and high[0] == pytest.approx(ref.high, abs=0.01)


def test_bootstrap_edge_cases() -> None:
    a = np.arange(10.0)[:, None]  # (N, 1)
    low, high = paired_bootstrap(a, a + 2.0)  # a constant difference has no spread
    assert low[0] == pytest.approx(2.0) and high[0] == pytest.approx(2.0)
    b = a + 1.0
    b[:5] = np.nan  # items without a value are left out; an all-NaN cell has no interval
    low, high = paired_bootstrap(np.hstack([a, a]), np.hstack([b, np.full_like(a, np.nan)]))
    assert low[0] == pytest.approx(1.0) and np.isnan(low[1]) and np.isnan(high[1])


def test_bootstrap_pairs_items_by_id_and_only_for_one_run() -> None:
    rng = np.random.default_rng(0)
    a_items = rng.uniform(size=(30, V, Y, 2))
    b_items = a_items + 0.2
    ids = [f"q{i}" for i in range(30)]
    order = rng.permutation(30)
    a = _results({"m": _metric("m", a_items, ids=ids)})
    b = _results({"m": _metric("m", b_items[order], ids=[ids[i] for i in order])})
    interval = compare_results(a, b).metrics["m"].interval
    assert interval is not None and interval.items == 30 and interval.seed == 0
    np.testing.assert_allclose(interval.low, 0.2) and np.testing.assert_allclose(interval.high, 0.2)
    other_run = _results({"m": _metric("m", b_items)}, fingerprint=FP_B)
    assert compare_results(a, other_run).metrics["m"].interval is None
    no_items = _results({"m": _metric("m", b_items, keep_items=False)})
    assert compare_results(a, no_items).metrics["m"].interval is None


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: (d / "x.json").write_text("not json") and d / "x.json", "is not JSON"),
        (lambda d: (d / "x.json").write_text('{"a": 1}') and d / "x.json", "is not a trajcache results file"),
        (lambda d: d / "missing.json", "does not exist"),
        (lambda d: (d / "folder").mkdir() or d / "folder", "is a results file and B"),
    ],
)
def test_malformed_inputs_exit_2_with_one_line(pair: tuple[Results, Results], tmp_path: Path, make, message: str) -> None:  # type: ignore[no-untyped-def]
    good = _write(pair[0], tmp_path / "good.json")
    result = runner.invoke(app, ["compare", str(good), str(make(tmp_path))])
    assert result.exit_code == 2
    assert message in result.output and result.output.count("\n") == 1


def test_step_mismatch_exits_2(tmp_path: Path) -> None:
    four, six = (_write(_results({"m": _metric("m", _items(0, steps=s))}), tmp_path / f"{s}.json") for s in (4, 6))
    result = runner.invoke(app, ["compare", str(four), str(six)])
    assert result.exit_code == 2 and "A has 4 steps and B 6" in result.output


# ----------------------------------------------------------------------------- runs

S, L = 3, 4


def _layout(hashes: list[str], roles: list[str], shard_size: int = 2, steps: int = S, **sampler: object) -> SplitLayout:
    fields = (FieldSpec("tokens", "int32", (L,)), FieldSpec("fixation", "int16", (L,)), FieldSpec("label_logp", "float32", (steps, L, len(roles))))
    attrs = {"item_ids": [f"id-{h}" for h in hashes], "item_hashes": hashes, "roles": roles, "S": steps, "L": L, "sampler": {"steps": steps, "temperature": 0.0, **sampler}}
    return SplitLayout("forget", len(hashes), fields, attrs, shard_size)


def _store(path: Path, fingerprint: str, layout: SplitLayout, tables: dict[str, np.ndarray], shards: int | None = None) -> Path:
    writer = create_run(path, fingerprint, {}, [layout])
    for shard in range(layout.n_shards if shards is None else shards):
        rows = layout.shard_items(shard)
        writer.write_shard("forget", shard, {k: v[rows.start : rows.stop] for k, v in tables.items()})
    if shards is None:
        writer.finalize()
    return path


@pytest.fixture
def runs(tmp_path: Path) -> tuple[Path, Path]:
    """A holds items h0 h1 h2, B holds h2 h0 h9. h0 diverges at step 1, h2 never does.

    Canvases of h0 (M = masked):  t=0 A 5 M M M | B 5 M M M   t=1 A 5 6 7 M | B 5 6 M M
    t=2 A 5 6 7 8 | B 5 6 9 8, so agreement = [(4+4)/8, (3+4)/8, (3+4)/8] = [1, 0.875, 0.875].
    """
    logp_a = np.random.default_rng(0).normal(size=(3, S, L, 2)).astype(np.float32)
    a = {"tokens": np.array([[5, 6, 7, 8], [1, 1, 1, 1], [1, 2, 3, 4]], np.int32), "fixation": np.array([[0, 1, 1, 2], [0, 0, 0, 0], [0, 0, 1, 2]], np.int16), "label_logp": logp_a}
    logp_b = np.full((3, S, L, 2), np.nan, np.float32)
    logp_b[1, ..., 0] = logp_a[0, ..., 0]  # h0, role answer
    logp_b[0, ..., 0] = logp_a[2, ..., 0]  # h2, role answer
    logp_b[1, 2, 3, 0] += 0.25  # the largest difference on a common item and role
    logp_b[0, 0, 0, 0] = np.nan  # a label absent on one side is not compared
    logp_b[..., 1] = 100.0  # perturbed_0: A does not record it
    b = {"tokens": np.array([[1, 2, 3, 4], [5, 6, 9, 8], [0, 0, 0, 0]], np.int32), "fixation": np.array([[0, 0, 1, 2], [0, 1, 2, 2], [0, 0, 0, 0]], np.int16), "label_logp": logp_b}
    path_a = _store(tmp_path / "a.zarr", FP_A, _layout(["h0", "h1", "h2"], ["answer", "paraphrase"]), a)
    path_b = _store(tmp_path / "b.zarr", FP_B, _layout(["h2", "h0", "h9"], ["answer", "perturbed_0"], temperature=0.5), b)
    return path_a, path_b


def test_runs_report_divergence(runs: tuple[Path, Path]) -> None:
    c = compare_paths(*runs)
    assert not c.exceeds and c.tol is None  # a report: no check without an explicit --tol
    s = c.splits["forget"]  # type: ignore[union-attr]
    assert s.items == (3, 3) and s.common == 2 and s.roles == ("answer",)
    np.testing.assert_allclose(s.agreement, [1.0, 0.875, 0.875])
    assert s.first_divergence.tolist() == [1, -1]  # type: ignore[union-attr]
    assert s.divergence() == {"min": 1, "median": 1.0, "never": 1}
    assert s.max_logp_diff == pytest.approx(0.25, abs=1e-6)
    assert s.sampler_changes == {"temperature": (0.0, 0.5)}


def test_runs_tol_is_checked_only_when_given(runs: tuple[Path, Path]) -> None:
    assert compare_paths(*runs, tol=0.1).exceeds
    assert not compare_paths(*runs, tol=0.3).exceeds
    assert runner.invoke(app, ["compare", *map(str, runs)]).exit_code == 0
    assert runner.invoke(app, ["compare", *map(str, runs), "--tol", "0.1"]).exit_code == 1


def test_cli_runs_table_and_json(runs: tuple[Path, Path], tmp_path: Path) -> None:
    table = runner.invoke(app, ["compare", *map(str, runs), "--plot", str(tmp_path / "plots")])
    assert table.exit_code == 0, table.output
    assert "forget" in table.output and "temperature" in table.output and "t0: 1.000  t1: 0.875  t2: 0.875" in table.output
    assert (tmp_path / "plots" / "compare.token_agreement.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    doc = json.loads(runner.invoke(app, ["compare", *map(str, runs), "--json", "--plot", str(tmp_path / "plots")]).stdout)
    assert doc["kind"] == "runs" and doc["splits"]["forget"]["agreement"] == [1.0, 0.875, 0.875]
    assert doc["splits"]["forget"]["first_divergence"] == {"min": 1, "median": 1.0, "never": 1}
    assert runner.invoke(app, ["compare", *map(str, runs), "--metrics", "x"]).exit_code == 2


def test_same_run_agrees_everywhere(runs: tuple[Path, Path]) -> None:
    c = compare_runs(open_run(runs[0]), open_run(runs[0]), tol=0.0)
    s = c.splits["forget"]
    assert not c.exceeds and s.common == 3 and s.max_logp_diff == 0
    np.testing.assert_array_equal(s.agreement, 1.0)
    assert s.divergence() == {"min": None, "median": None, "never": 3}


def test_incomplete_run_compares_committed_items_and_says_so(runs: tuple[Path, Path], tmp_path: Path) -> None:
    layout = _layout(["h2", "h9", "h0"], ["answer", "perturbed_0"])
    tables = {k: v for k, v in zip(("tokens", "fixation", "label_logp"), (np.zeros((3, L), np.int32), np.zeros((3, L), np.int16), np.zeros((3, S, L, 2), np.float32)))}
    partial = _store(tmp_path / "partial.zarr", FP_B, layout, tables, shards=1)  # h2 and h9 committed, h0 not
    for c, items in ((compare_paths(runs[0], partial), (3, 2)), (compare_paths(partial, runs[0]), (2, 3))):
        assert c.splits["forget"].items == items and c.splits["forget"].common == 1  # type: ignore[union-attr]
        assert any("is incomplete: only its committed items are compared" in note for note in c.notes)  # type: ignore[union-attr]


def test_runs_with_other_steps_are_reported_not_compared(runs: tuple[Path, Path], tmp_path: Path) -> None:
    layout = _layout(["h0"], ["answer"], shard_size=1, steps=5)
    tables = {"tokens": np.zeros((1, L), np.int32), "fixation": np.zeros((1, L), np.int16), "label_logp": np.zeros((1, 5, L, 1), np.float32)}
    other = _store(tmp_path / "five.zarr", FP_B, layout, tables)
    s = compare_paths(runs[0], other).splits["forget"]  # type: ignore[union-attr]
    assert s.common == 1 and s.agreement is None and "A 3 x 4, B 5 x 4" in (s.skipped or "")
    assert np.isnan(s.max_logp_diff) and s.sampler_changes == {"steps": (3, 5)}
    with pytest.raises(MissingInputError, match="share no label log-probs"):
        compare_paths(runs[0], other, tol=1.0)


def test_not_a_run_or_missing_attrs(runs: tuple[Path, Path], tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = runner.invoke(app, ["compare", str(runs[0]), str(tmp_path / "empty")])
    assert result.exit_code == 2 and "is not a trajcache run" in result.output
    bare = SplitLayout("forget", 1, (FieldSpec("tokens", "int32", (L,)),), {}, 1)
    path = _store(tmp_path / "bare.zarr", FP_B, bare, {"tokens": np.zeros((1, L), np.int32)})
    with pytest.raises(StoreError, match="lacks the attrs"):
        compare_paths(runs[0], path)
