"""TOFU's published per-item eval logs as a trajcache results file (`trajcache import-logs`).

An autoregressive baseline has one "step": its values sit in view `full`, layout `steps`, step 0,
and every other cell is empty (NaN, written as null), so `compare` can set a baseline against a
diffusion run's last step. The dataset values are exactly `tofu_log_metrics` (TOFU's aggregation);
per-item values come from the same formula functions, so `compare` can bootstrap over items.
"""

from __future__ import annotations

import hashlib
import inspect
import sys
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from . import tofu_logs
from .metrics.aggregate import distribution
from .results import MetricResult, Results
from .tofu_logs import SPLIT_FILES, UTILITY_COMPONENTS, item_values, read_eval_logs, tofu_log_metrics
from .trajectories import LAYOUTS, VIEWS

FloatArray = NDArray[np.float64]

IMPORT_NOTE = "imported from TOFU eval logs: one step, values only in view 'full', layout 'steps'"
FORGET_METRICS = ("forget_Q_A_Prob", "forget_Q_A_ROUGE", "forget_truth_ratio")


def logs_fingerprint(folder: Path) -> str:
    """sha256 over the four log files (name, then bytes, in SPLIT_FILES order): the logs' identity."""
    digest = hashlib.sha256()
    for name in SPLIT_FILES.values():
        digest.update(name.encode() + b"\0")
        digest.update((folder / name).read_bytes())
    return digest.hexdigest()


def import_tofu_logs(folder: Path, reference: Path | None = None) -> Results:
    """Results of the TOFU metrics of `folder`; `reference` (the retain model's logs) adds forget_quality."""
    folder = Path(folder)
    logs = read_eval_logs(folder)  # reads and validates first: a missing file raises DataError
    ref_logs = read_eval_logs(Path(reference)) if reference is not None else None
    values = tofu_log_metrics(logs, ref_logs)  # the dataset values, as TOFU's aggregation computes them
    items = item_values(logs)
    names = [*FORGET_METRICS, *UTILITY_COMPONENTS, "model_utility", *(["forget_quality"] if ref_logs else [])]
    metrics = {name: _metric(name, values[name], items.get(name)) for name in names}
    run = {"path": str(folder), "fingerprint": logs_fingerprint(folder)}
    ref = {"path": str(reference), "fingerprint": logs_fingerprint(Path(reference))} if reference is not None else None
    return Results(run, ref, 1, metrics, (IMPORT_NOTE,))


def _metric(name: str, value: float, per_item: FloatArray | None) -> MetricResult:
    """One metric in the (V, Y, 1) grid: the value at (full, steps, 0), NaN in every other cell."""
    spec = {"metric": name, "version": 1, "code": _CODE, "module": __name__, "source": "tofu_eval_logs"}
    values = _cell(np.float64(value))
    if per_item is None:  # dataset-level (forget_quality, model_utility): no per-item values
        return MetricResult(name, spec, values)
    stats = {stat: _cell(v) for stat, v in distribution(per_item).items()}
    grid = np.full((per_item.shape[0], len(VIEWS), len(LAYOUTS), 1), np.nan)  # (N, V, Y, 1)
    grid[:, VIEWS.index("full"), LAYOUTS.index("steps"), 0] = per_item
    # Ids are positions in TOFU's index order (the reader sorts the logs' keys), so imports pair up.
    ids = [str(i) for i in range(per_item.shape[0])]
    return MetricResult(name, spec, values, stats, (ids, grid))


def _cell(value: np.floating | FloatArray) -> FloatArray:
    grid = np.full((len(VIEWS), len(LAYOUTS), 1), np.nan)  # (V, Y, 1)
    grid[VIEWS.index("full"), LAYOUTS.index("steps"), 0] = value
    return grid


def _source_hash() -> str:
    """Hash of the code that turns logs into values, so results name the code they came from."""
    digest = hashlib.sha256(inspect.getsource(tofu_logs).encode())
    digest.update(inspect.getsource(sys.modules[__name__]).encode())
    return digest.hexdigest()[:16]


_CODE = _source_hash()
