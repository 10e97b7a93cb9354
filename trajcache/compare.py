"""Compare two results files or two recorded runs (DESIGN §8): `compare_paths` is the entry point.

Results: every metric cell (view, layout, step) of A against B, with a tolerance, and a paired
bootstrap interval of the difference when both files keep per-item values of the same run. Runs:
the items both recorded and how far their denoising trajectories agree. This module reads results
files and stores and returns plain comparison objects; rendering is the CLI's and report.py's job.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .errors import ConfigError, MissingInputError, ResultsError, StoreError, UnknownMetricError
from .results import MetricResult, Results, read_results
from .store import Run, open_run
from .trajectories import LAYOUTS, VIEWS

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]
IntArray = NDArray[np.int64]

DEFAULT_TOL = 1e-9  # results of the same code on the same run agree to float64 rounding
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 0  # fixed, so that a comparison prints the same interval every time
CONFIDENCE = 0.95
SPEC_KEYS = ("version", "code")  # what tells two implementations of a metric apart (registry spec)


@dataclass(frozen=True)
class Interval:
    """Paired bootstrap percentile interval of mean_items(B - A) per compared cell."""

    low: FloatArray  # (V, Y, S')
    high: FloatArray  # (V, Y, S')
    items: int  # items present in both files, matched by id
    resamples: int
    seed: int


@dataclass(frozen=True)
class MetricDiff:
    """One metric of A against B on the compared steps S' (all steps, or the one aligned step).

    `compared` marks the cells that take part: all of them, except in step-aligned mode, where the
    one-step side's empty cells (an import fills only view `full`, layout `steps`) have no counterpart.
    NaN in both is equal; NaN against a number is a difference whatever the tolerance.
    """

    name: str
    a: FloatArray  # (V, Y, S')
    b: FloatArray  # (V, Y, S')
    compared: BoolArray  # (V, Y, S')
    exceeding: BoolArray  # (V, Y, S') compared cells that differ by more than the tolerance
    spec_changes: dict[str, tuple[Any, Any]]  # SPEC_KEYS that differ -> (A's, B's)
    interval: Interval | None

    @property
    def diff(self) -> FloatArray:
        """B - A per cell; 0 where both are equal (NaN and NaN, inf and inf), NaN where one is NaN."""
        with np.errstate(invalid="ignore"):
            return np.where(_equal(self.a, self.b), 0.0, self.b - self.a)

    @property
    def max_abs_diff(self) -> float:
        """Largest |B - A| over compared cells where both have a number; NaN when there is none."""
        both = self.compared & ~np.isnan(self.a) & ~np.isnan(self.b)
        return float(np.max(np.abs(self.diff[both]))) if both.any() else math.nan

    @property
    def nan_mismatches(self) -> int:
        """Compared cells where exactly one side has no value."""
        return int(np.count_nonzero(self.compared & (np.isnan(self.a) != np.isnan(self.b))))


@dataclass(frozen=True)
class ResultsComparison:
    """A results file against another: per-metric differences and what differs in provenance."""

    a_path: Path
    b_path: Path
    a: Results
    b: Results
    tol: float
    aligned: str | None  # how steps were matched, when one side has a single step
    metrics: dict[str, MetricDiff]
    only_in_a: tuple[str, ...]
    only_in_b: tuple[str, ...]

    @property
    def steps(self) -> tuple[int, int]:
        return self.a.steps, self.b.steps

    @property
    def same_run(self) -> bool:
        return bool(self.a.run.get("fingerprint") == self.b.run.get("fingerprint"))

    @property
    def exceeds(self) -> bool:
        return any(m.exceeding.any() for m in self.metrics.values())

    def notes(self) -> list[str]:
        """What the reader must know before the numbers: run identity and step alignment."""
        fa, fb = self.a.run.get("fingerprint", "?"), self.b.run.get("fingerprint", "?")
        notes = [f"same run {fa[:12]}" if self.same_run else f"different runs: A {fa[:12]} vs B {fb[:12]}"]
        ra, rb = (r.get("fingerprint") if r else None for r in (self.a.reference, self.b.reference))
        if ra != rb:
            notes.append(f"different references: A {str(ra)[:12]} vs B {str(rb)[:12]}")
        if self.aligned:
            notes.append(self.aligned)
        return notes

    def to_dict(self) -> dict[str, Any]:
        sides = {side: {"path": str(path), "run": r.run, "reference": r.reference, "steps": r.steps} for side, path, r in (("a", self.a_path, self.a), ("b", self.b_path, self.b))}
        return {
            "kind": "results", **sides, "notes": self.notes(), "tol": _tol_json(self.tol), "exceeds": self.exceeds,
            "views": list(VIEWS), "layouts": list(LAYOUTS), "metrics": {name: _metric_dict(m) for name, m in self.metrics.items()},
            "only_in_a": list(self.only_in_a), "only_in_b": list(self.only_in_b),
        }


def compare_results(
    a: Results,
    b: Results,
    *,
    tol: float = DEFAULT_TOL,
    metrics: Sequence[str] | None = None,
    paths: tuple[Path, Path] = (Path("A"), Path("B")),
) -> ResultsComparison:
    """Compare every metric both files hold (or the named `metrics`), cell by cell, within `tol`."""
    _check_tol(tol)
    for side, results in zip("AB", (a, b)):
        _check_steps(side, results)
    select_a, select_b, aligned = _align_steps(a.steps, b.steps)
    names = _selected(a, b, metrics)
    paired = a.run.get("fingerprint") == b.run.get("fingerprint")
    diffs = {
        name: _metric_diff(a.metrics[name], b.metrics[name], select_a, select_b, aligned is not None, tol, paired)
        for name in names
        if name in a.metrics and name in b.metrics
    }
    return ResultsComparison(
        a_path=paths[0],
        b_path=paths[1],
        a=a,
        b=b,
        tol=tol,
        aligned=aligned,
        metrics=diffs,
        only_in_a=tuple(n for n in names if n not in b.metrics),
        only_in_b=tuple(n for n in names if n not in a.metrics),
    )


def _check_tol(tol: float) -> None:
    if not tol >= 0:  # also refuses NaN
        raise ConfigError(f"--tol {tol} is invalid; pass a number >= 0")


def _check_steps(side: str, results: Results) -> None:
    for name, m in results.metrics.items():
        if m.values.shape != (len(VIEWS), len(LAYOUTS), results.steps):
            raise ResultsError(
                f"{side}: metric {name!r} has values of shape {m.values.shape}, not (views, layouts, steps) = "
                f"{(len(VIEWS), len(LAYOUTS), results.steps)}; the results file is malformed"
            )


def _align_steps(steps_a: int, steps_b: int) -> tuple[slice, slice, str | None]:
    """Steps compared on each side: all of them, or a one-step file against the other's last step."""
    if steps_a == steps_b:
        return slice(None), slice(None), None
    if steps_a == 1:
        note = f"A has 1 step: compared with B's last step ({steps_b - 1}), on the cells A has values for"
        return slice(None), slice(steps_b - 1, steps_b), note
    if steps_b == 1:
        note = f"B has 1 step: compared with A's last step ({steps_a - 1}), on the cells B has values for"
        return slice(steps_a - 1, steps_a), slice(None), note
    raise ResultsError(
        f"A has {steps_a} steps and B {steps_b}; compare results of runs with the same step count "
        "(or a one-step file, e.g. from import-logs, against any run)"
    )


def _selected(a: Results, b: Results, metrics: Sequence[str] | None) -> list[str]:
    """The metric names to compare, in A's order then B's; an unknown requested name is an error."""
    every = list(dict.fromkeys([*a.metrics, *b.metrics]))
    if metrics is None:
        return every
    unknown = [n for n in metrics if n not in every]
    if unknown:
        raise UnknownMetricError(f"metrics {unknown} are in neither file; available: {', '.join(every)}")
    return list(dict.fromkeys(metrics))


def _metric_diff(
    a: MetricResult, b: MetricResult, select_a: slice, select_b: slice, aligned: bool, tol: float, paired: bool
) -> MetricDiff:
    va, vb = a.values[..., select_a], b.values[..., select_b]  # (V, Y, S')
    one_step = va if a.values.shape[-1] == 1 else vb
    compared = ~np.isnan(one_step) if aligned else np.ones(va.shape, dtype=bool)
    with np.errstate(invalid="ignore"):
        exceeding = compared & ~_equal(va, vb) & ~(np.abs(vb - va) <= tol)
    changes = {k: (a.spec.get(k), b.spec.get(k)) for k in SPEC_KEYS if a.spec.get(k) != b.spec.get(k)}
    interval = _interval(a, b, select_a, select_b) if paired else None
    return MetricDiff(a.name, va, vb, compared, exceeding, changes, interval)


def _equal(a: FloatArray, b: FloatArray) -> BoolArray:
    return np.asarray((a == b) | (np.isnan(a) & np.isnan(b)), dtype=bool)


def _interval(a: MetricResult, b: MetricResult, select_a: slice, select_b: slice) -> Interval | None:
    """Paired bootstrap over the items both files keep per-item values for (matched by id)."""
    if a.per_item is None or b.per_item is None:
        return None
    (ids_a, items_a), (ids_b, items_b) = a.per_item, b.per_item
    row_b = {item: i for i, item in enumerate(ids_b)}
    common = [(i, row_b[item]) for i, item in enumerate(ids_a) if item in row_b]
    if not common:
        return None
    rows_a, rows_b = (np.array(rows) for rows in zip(*common))
    low, high = paired_bootstrap(items_a[rows_a][..., select_a], items_b[rows_b][..., select_b])
    return Interval(low, high, len(common), BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED)


def paired_bootstrap(
    a: FloatArray, b: FloatArray, *, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED
) -> tuple[FloatArray, FloatArray]:
    """95% percentile interval of mean over items of (b - a); a, b (N, ...) hold the same items.

    Items are resampled with replacement (numpy Generator seeded with `seed`), the same resample for
    every cell. An item with NaN on either side has no difference in that cell and is left out of its
    mean (the aggregate NaN rule); a cell where no resampled item has one gets NaN.
    """
    if a.shape != b.shape or a.shape[0] == 0:
        raise ResultsError(f"paired bootstrap needs two arrays of the same items; got shapes {a.shape} and {b.shape}")
    n = a.shape[0]
    d = (b - a).reshape(n, -1)  # (N, C)
    valid = ~np.isnan(d)
    rng = np.random.default_rng(seed)
    weights = rng.multinomial(n, np.full(n, 1.0 / n), size=resamples).astype(np.float64)  # (R, N)
    sums = weights @ np.where(valid, d, 0.0)  # (R, C)
    counts = weights @ valid.astype(np.float64)  # (R, C)
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN cells: NaN by the rule above
        means = np.where(counts > 0, sums / counts, np.nan)  # (R, C)
        tail = 100 * (1 - CONFIDENCE) / 2
        low, high = np.nanpercentile(means, [tail, 100 - tail], axis=0)  # (C,) each
    return low.reshape(a.shape[1:]), high.reshape(a.shape[1:])


def _grid(values: NDArray[Any]) -> dict[str, dict[str, list[Any]]]:
    """(V, Y, S) -> {view: {layout: [S]}}, non-finite floats as null (JSON has no NaN)."""
    def cell(x: Any) -> Any:
        return bool(x) if isinstance(x, np.bool_) else (float(x) if math.isfinite(x) else None)

    return {v: {y: [cell(x) for x in values[i, j]] for j, y in enumerate(LAYOUTS)} for i, v in enumerate(VIEWS)}


def _number(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _tol_json(tol: float | None) -> float | str | None:
    """The tolerance as JSON: a number, "inf" (JSON has no infinity), or null when none was given."""
    return tol if tol is None or math.isfinite(tol) else str(tol)


def _metric_dict(m: MetricDiff) -> dict[str, Any]:
    i = m.interval
    interval = None if i is None else {"low": _grid(i.low), "high": _grid(i.high), "items": i.items, "resamples": i.resamples, "seed": i.seed}
    return {
        "a": _grid(m.a), "b": _grid(m.b), "diff": _grid(m.diff), "compared": _grid(m.compared), "exceeding": _grid(m.exceeding),
        "max_abs_diff": _number(m.max_abs_diff), "n_exceeding": int(m.exceeding.sum()), "nan_mismatches": m.nan_mismatches,
        "spec_changes": {k: list(v) for k, v in m.spec_changes.items()}, "bootstrap": interval,
    }


@dataclass(frozen=True)
class SplitComparison:
    """One split both runs recorded, compared on the committed items they share (by content hash).

    The canvas after step t holds the final token where fixation <= t and the mask elsewhere
    (DESIGN §5); `agreement[t]` is the fraction of equal canvas positions over common items.
    """

    name: str
    items: tuple[int, int]  # committed items of A and B
    common: int
    roles: tuple[str, ...]  # label roles both record, compared by name
    sampler_changes: dict[str, tuple[Any, Any]]  # sampler key -> (A's, B's)
    agreement: FloatArray | None  # (S,)
    first_divergence: IntArray | None  # (common,) first step whose canvases differ; -1 = never
    max_logp_diff: float  # largest |label log-prob A - B| where both are finite; NaN if none
    skipped: str | None = None  # why the per-step tables were not compared

    def divergence(self) -> dict[str, float | int | None]:
        """min / median first divergence step over items that diverge, and how many never do."""
        if self.first_divergence is None:
            return {"min": None, "median": None, "never": None}
        steps = self.first_divergence[self.first_divergence >= 0]
        found = steps.size > 0
        return {
            "min": int(steps.min()) if found else None,
            "median": float(np.median(steps)) if found else None,
            "never": int(np.count_nonzero(self.first_divergence < 0)),
        }


@dataclass(frozen=True)
class RunComparison:
    """Two recorded runs: per split in common, shared items and how their trajectories agree."""

    a_path: Path
    b_path: Path
    a_fingerprint: str
    b_fingerprint: str
    splits: dict[str, SplitComparison]
    only_in_a: tuple[str, ...]
    only_in_b: tuple[str, ...]
    tol: float | None  # only given explicitly: a run comparison is a report, not a check
    notes: tuple[str, ...]

    @property
    def max_logp_diff(self) -> float:
        found = [s.max_logp_diff for s in self.splits.values() if not math.isnan(s.max_logp_diff)]
        return max(found) if found else math.nan

    @property
    def exceeds(self) -> bool:
        return self.tol is not None and self.max_logp_diff > self.tol

    def to_dict(self) -> dict[str, Any]:
        splits = {
            name: {
                "items": list(s.items), "common": s.common, "roles": list(s.roles),
                "sampler_changes": {k: list(v) for k, v in s.sampler_changes.items()},
                "agreement": None if s.agreement is None else [float(x) for x in s.agreement],
                "first_divergence": s.divergence(), "max_logp_diff": _number(s.max_logp_diff), "skipped": s.skipped,
            }
            for name, s in self.splits.items()
        }
        return {
            "kind": "runs", "a": {"path": str(self.a_path), "fingerprint": self.a_fingerprint},
            "b": {"path": str(self.b_path), "fingerprint": self.b_fingerprint}, "notes": list(self.notes),
            "tol": _tol_json(self.tol), "exceeds": self.exceeds, "max_logp_diff": _number(self.max_logp_diff),
            "splits": splits, "only_in_a": list(self.only_in_a), "only_in_b": list(self.only_in_b),
        }


def compare_runs(a: Run, b: Run, *, tol: float | None = None, chunk_items: int = 32) -> RunComparison:
    """Compare two runs split by split; with `tol`, the largest label log-prob difference is checked."""
    if tol is not None:
        _check_tol(tol)
    common = [name for name in a.splits if name in b.splits]
    splits = {name: _compare_split(name, a, b, chunk_items) for name in common}
    notes = tuple(f"{side} {run.path} is incomplete: only its committed items are compared" for side, run in (("A", a), ("B", b)) if not run.complete)
    comparison = RunComparison(
        a.path, b.path, a.fingerprint, b.fingerprint, splits,
        tuple(n for n in a.splits if n not in b.splits), tuple(n for n in b.splits if n not in a.splits), tol, notes,
    )
    if tol is not None and math.isnan(comparison.max_logp_diff):
        raise MissingInputError(f"--tol {tol} was given but {a.path} and {b.path} share no label log-probs to check (no common split, item or role with equal S and L)")
    return comparison


def _compare_split(name: str, a: Run, b: Run, chunk_items: int) -> SplitComparison:
    la, lb = _split_attrs(a, name), _split_attrs(b, name)
    committed_b = b.committed(name)
    row_b = {h: i for i, h in enumerate(lb["item_hashes"]) if committed_b[i]}
    committed_a = a.committed(name)
    pairs = [(i, row_b[h]) for i, h in enumerate(la["item_hashes"]) if committed_a[i] and h in row_b]
    roles = tuple(r for r in la["roles"] if r in lb["roles"])
    sampler = {k: (la["sampler"].get(k), lb["sampler"].get(k)) for k in sorted(set(la["sampler"]) | set(lb["sampler"])) if la["sampler"].get(k) != lb["sampler"].get(k)}
    counts = (int(committed_a.sum()), int(committed_b.sum()))
    skipped = _why_skipped(la, lb, pairs)
    if skipped:
        return SplitComparison(name, counts, len(pairs), roles, sampler, None, None, math.nan, skipped)
    ja = [la["roles"].index(r) for r in roles]
    jb = [lb["roles"].index(r) for r in roles]
    equal, first, logp = np.zeros(int(la["S"])), [], math.nan
    for start in range(0, len(pairs), chunk_items):
        rows_a, rows_b = (np.array(rows) for rows in zip(*pairs[start : start + chunk_items]))
        ta = a.read_many(name, ("tokens", "fixation", "label_logp"), rows_a)
        tb = b.read_many(name, ("tokens", "fixation", "label_logp"), rows_b)
        same = _canvas(ta, int(la["S"])) == _canvas(tb, int(la["S"]))  # (n, S, L)
        equal += same.sum(axis=(0, 2))
        differs = ~same.all(axis=2)  # (n, S)
        first.append(np.where(differs.any(axis=1), differs.argmax(axis=1), -1))
        logp = np.fmax(logp, _max_logp_diff(ta["label_logp"][..., ja], tb["label_logp"][..., jb]))
    agreement = equal / (len(pairs) * int(la["L"]))  # (S,)
    return SplitComparison(name, counts, len(pairs), roles, sampler, agreement, np.concatenate(first), float(logp))


def _split_attrs(run: Run, split: str) -> dict[str, Any]:
    """The split attrs `record` writes that a comparison reads; a run without them is refused."""
    attrs = run.splits[split].attrs
    missing = [k for k in ("item_hashes", "roles", "S", "L", "sampler") if k not in attrs]
    if missing:
        raise StoreError(f"{run.path}: split {split!r} lacks the attrs {missing} that `trajcache record` writes; compare runs recorded by trajcache")
    return attrs


def _why_skipped(la: dict[str, Any], lb: dict[str, Any], pairs: list[tuple[int, int]]) -> str | None:
    if not pairs:
        return "no committed item in common (by content hash)"
    if (la["S"], la["L"]) != (lb["S"], lb["L"]):
        return f"steps x positions differ (A {la['S']} x {la['L']}, B {lb['S']} x {lb['L']}): per-step tables do not line up"
    return None


def _canvas(tables: dict[str, np.ndarray], steps: int) -> IntArray:
    """Canvas after each step: the final token where fixation <= t, else -1 (masked): (n, S, L)."""
    t = np.arange(steps)[None, :, None]  # (1, S, 1)
    return np.where(tables["fixation"][:, None, :] <= t, tables["tokens"][:, None, :], -1)


def _max_logp_diff(a: np.ndarray, b: np.ndarray) -> float:
    """Largest |a - b| where both are finite (labels absent on either side are NaN); NaN if none."""
    both = np.isfinite(a) & np.isfinite(b)  # (n, S, L, J)
    return float(np.abs(a[both].astype(np.float64) - b[both]).max()) if both.any() else math.nan


def compare_paths(a: Path, b: Path, *, tol: float | None = None, metrics: Sequence[str] | None = None) -> ResultsComparison | RunComparison:
    """Compare two results files or two runs (directories); a mix, or a missing path, is an error."""
    kinds = []
    for side, path in (("A", a), ("B", b)):
        if not path.exists():
            raise ConfigError(f"{side}: {path} does not exist; pass two results files (score -o) or two runs (RUN.zarr)")
        kinds.append("run" if path.is_dir() else "results file")
    if kinds[0] != kinds[1]:
        raise ConfigError(f"A {a} is a {kinds[0]} and B {b} a {kinds[1]}; compare two results files or two runs")
    if kinds[0] == "results file":
        return compare_results(read_results(a), read_results(b), tol=DEFAULT_TOL if tol is None else tol, metrics=metrics, paths=(a, b))
    if metrics is not None:
        raise ConfigError("--metrics selects metrics of results files; two runs are compared on their tables")
    return compare_runs(open_run(a), open_run(b), tol=tol)
