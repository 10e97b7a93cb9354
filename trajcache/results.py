"""Results files (DESIGN §8): what `score` writes and `compare` reads.

A results file names the run (and reference) fingerprints and every metric's version and code hash,
so it can never be mistaken for a replay of other inputs or other code. Writing over an existing
file needs `overwrite=True`. Non-finite numbers are written as JSON null.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .errors import ResultsError
from .trajectories import LAYOUTS, VIEWS

Grid = dict[str, dict[str, list[float | None]]]  # view -> layout -> [S]


@dataclass(frozen=True)
class MetricResult:
    """One bound metric's values per (view, layout, step) and its provenance."""

    name: str
    spec: dict[str, Any]  # metric, version, code, module, splits, roles, args
    values: np.ndarray  # (V, Y, S)
    distribution: dict[str, np.ndarray] = field(default_factory=dict)  # stat -> (V, Y, S)
    per_item: tuple[list[str], np.ndarray] | None = None  # (item ids, (N, V, Y, S))
    warnings: tuple[str, ...] = ()

    def step_mean(self) -> np.ndarray:
        """Mean over steps per (view, layout), over the steps that have a value: (V, Y)."""
        finite = np.isfinite(self.values)
        counts = finite.sum(-1)
        sums = np.where(finite, self.values, 0.0).sum(-1)
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            **self.spec,
            "values": _grid(self.values),
            "last": _cells(self.values[..., -1]),
            "mean": _cells(self.step_mean()),
            "distribution": {k: _grid(v) for k, v in self.distribution.items()},
        }
        if self.per_item is not None:
            ids, values = self.per_item
            out["per_item"] = {"ids": ids, "values": {v: {y: [_list(values[n, i, j]) for n in range(len(ids))] for j, y in enumerate(LAYOUTS)} for i, v in enumerate(VIEWS)}}
        if self.warnings:
            out["warnings"] = list(self.warnings)
        return out

    @classmethod
    def from_json(cls, name: str, data: dict[str, Any]) -> MetricResult:
        try:
            values = _ungrid(data["values"])
            dist = {k: _ungrid(v) for k, v in data.get("distribution", {}).items()}
            per_item = None
            if "per_item" in data:
                pi = data["per_item"]
                arr = np.array([[[pi["values"][v][y][n] for y in LAYOUTS] for v in VIEWS] for n in range(len(pi["ids"]))], dtype=np.float64)
                per_item = (list(pi["ids"]), arr)
        except (KeyError, TypeError, ValueError) as exc:
            raise ResultsError(f"metric {name!r}: malformed values ({exc})") from None
        spec = {k: v for k, v in data.items() if k not in ("values", "last", "mean", "distribution", "per_item", "warnings")}
        return cls(name, spec, values, dist, per_item, tuple(data.get("warnings", ())))


@dataclass(frozen=True)
class Results:
    """A results file: run identity, steps, and the metrics."""

    run: dict[str, Any]  # {"path", "fingerprint"}
    reference: dict[str, Any] | None
    steps: int
    metrics: dict[str, MetricResult]
    warnings: tuple[str, ...] = ()
    skipped: dict[str, str] = field(default_factory=dict)  # metric -> why it was not computed

    def to_json(self) -> dict[str, Any]:
        return {
            "trajcache": __version__,
            "run": self.run,
            "reference": self.reference,
            "steps": self.steps,
            "views": list(VIEWS),
            "layouts": list(LAYOUTS),
            "metrics": {name: m.to_json() for name, m in self.metrics.items()},
            "skipped": self.skipped,
            "warnings": list(self.warnings),
        }


def write_results(results: Results, path: Path, *, overwrite: bool = False) -> None:
    """Write atomically (temp file + rename); refuse to replace a file unless `overwrite`."""
    if path.exists() and not overwrite:
        raise ResultsError(f"{path} exists; pass --overwrite to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".partial")
    with os.fdopen(fd, "w") as fh:
        json.dump(results.to_json(), fh, indent=1, allow_nan=False)
    os.replace(tmp, path)


def read_results(path: Path) -> Results:
    """Read a results file, with one clear error for anything that is not one."""
    if not path.is_file():
        raise ResultsError(f"results file {path} does not exist")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ResultsError(f"{path} is not JSON ({exc})") from None
    if not isinstance(data, dict) or "trajcache" not in data or not isinstance(data.get("metrics"), dict):
        raise ResultsError(f"{path} is not a trajcache results file (no 'trajcache'/'metrics' keys)")
    try:
        metrics = {name: MetricResult.from_json(name, m) for name, m in data["metrics"].items()}
        return Results(data["run"], data.get("reference"), int(data["steps"]), metrics, tuple(data.get("warnings", ())), data.get("skipped", {}))
    except (KeyError, TypeError, ValueError) as exc:
        raise ResultsError(f"{path}: malformed results ({exc})") from None


def _num(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def _list(values: np.ndarray) -> list[float | None]:
    return [_num(float(x)) for x in values]


def _grid(values: np.ndarray) -> Grid:
    return {v: {y: _list(values[i, j]) for j, y in enumerate(LAYOUTS)} for i, v in enumerate(VIEWS)}


def _cells(values: np.ndarray) -> dict[str, dict[str, float | None]]:
    return {v: {y: _num(float(values[i, j])) for j, y in enumerate(LAYOUTS)} for i, v in enumerate(VIEWS)}


def _ungrid(grid: Grid) -> np.ndarray:
    return np.array([[[np.nan if x is None else x for x in grid[v][y]] for y in LAYOUTS] for v in VIEWS], dtype=np.float64)
