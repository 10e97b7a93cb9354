"""Dataset-level aggregates over items: mean, distribution, forget quality, model utility.

Per-item inputs have items on axis 0 and any trailing cell axes ((N,) for a TOFU log,
(N, views, layouts, steps) for trajectories); every aggregate reduces axis 0 cell by cell.

The NaN rule: a NaN item value means "this item has no value in this cell" (e.g. a view that
keeps none of its positions; open-unlearning returns None there and drops the item). Aggregates
drop such items. A cell in which no item has a value aggregates to NaN, its documented "no value"
result, and `distribution` reports n = 0 for it; callers surface it rather than read a number into
it. An input with no items at all is an error: an empty split has no mean.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.stats import hmean, ks_2samp
from scipy.stats import t as student_t

from ..errors import DataError

FloatArray = NDArray[np.float64]

_CONFIDENCE = 0.95


def _items(name: str, values: ArrayLike) -> FloatArray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim == 0 or array.shape[0] == 0:
        raise DataError(
            f"{name} has shape {array.shape}; expected at least one item on axis 0 (an empty split "
            "has no aggregate)"
        )
    return array


def _nan_reduce(reduce: Callable[..., ArrayLike], array: FloatArray, **kwargs: float) -> FloatArray:
    """A numpy nan-reduction over axis 0; an all-NaN cell gives NaN by the module's rule."""
    with warnings.catch_warnings():
        # numpy warns ("All-NaN slice", "Mean of empty slice", "Degrees of freedom <= 0") exactly
        # for the cells that the module's rule defines as NaN.
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.asarray(reduce(array, axis=0, **kwargs), dtype=np.float64)


def mean_over_items(values: ArrayLike) -> FloatArray:
    """Mean over items (axis 0) of the items that have a value; NaN where none has (module rule)."""
    return _nan_reduce(np.nanmean, _items("values", values))


def distribution(values: ArrayLike) -> dict[str, FloatArray]:
    """Per-cell distribution over items: mean, std (ddof 0), median, p25, p75, min, max, 95% CI, n.

    The CI is mean +- t_{0.975, n-1} * s / sqrt(n) with s the ddof-1 standard deviation; with n = 1
    it collapses to the mean (no spread is known). `n` counts the items with a value (not NaN), as
    float64 like every other entry.
    """
    array = _items("values", values)  # (N, ...)
    n = np.count_nonzero(~np.isnan(array), axis=0)  # (...)
    mean = mean_over_items(array)
    sem = _nan_reduce(np.nanstd, array, ddof=1) / np.sqrt(np.maximum(n, 1))  # (...), NaN for n < 2
    t_quantile = student_t.ppf(0.5 + _CONFIDENCE / 2, np.maximum(n - 1, 1))  # (...)
    half_width = np.where(n > 1, t_quantile * sem, np.where(n == 1, 0.0, np.nan))
    # One sort for the three quantiles; the NaN-aware path only where some item lacks a value.
    quantile = np.nanquantile if np.isnan(array).any() else np.quantile
    p25, median, p75 = _nan_reduce(quantile, array, q=[0.25, 0.5, 0.75])  # (3, ...)
    return {
        "mean": mean,
        "std": _nan_reduce(np.nanstd, array),
        "median": median,
        "p25": p25,
        "p75": p75,
        "min": _nan_reduce(np.nanmin, array),
        "max": _nan_reduce(np.nanmax, array),
        "ci_low": np.asarray(mean - half_width),
        "ci_high": np.asarray(mean + half_width),
        "n": n.astype(np.float64),
    }


def forget_quality(tr: ArrayLike, tr_ref: ArrayLike) -> FloatArray:
    """KS two-sample p-value between per-item truth ratios and the reference (retain) model's.

    `scipy.stats.ks_2samp(tr, tr_ref).pvalue` per trailing cell, as TOFU and open-unlearning
    (`ks_test`). KS depends only on the order of the values, so TOFU's reciprocal ratio gives the
    same p-value. Items without a value are dropped per cell; a cell where either side has none is NaN.
    """
    values = _items("tr", tr)  # (N, ...)
    ref = _items("tr_ref", tr_ref)  # (M, ...)
    if values.shape[1:] != ref.shape[1:]:
        raise DataError(
            f"forget_quality got truth ratios of shapes {values.shape} and {ref.shape}; the trailing "
            "cell axes must match (same views, layouts and steps in run and reference)"
        )
    empty = np.all(np.isnan(values), axis=0) | np.all(np.isnan(ref), axis=0)  # (...)
    # Empty cells get a placeholder sample so that scipy does not warn; their result is set to NaN.
    values = np.where(empty, 0.0, values)
    ref = np.where(empty, 0.0, ref)
    pvalue = np.asarray(ks_2samp(values, ref, axis=0, nan_policy="omit").pvalue, dtype=np.float64)
    return np.where(empty, np.nan, pvalue)


def model_utility(components: Sequence[ArrayLike]) -> FloatArray:
    """Harmonic mean of the components, cell by cell (TOFU: the 9 retain/ra/wf aggregates).

    `scipy.stats.hmean`, as TOFU and open-unlearning (`hm_aggregate`): a zero component gives 0;
    a negative one is an error (the harmonic mean is undefined); NaN propagates.
    """
    if len(components) == 0:
        raise DataError("model_utility got no components; pass the 9 TOFU utility aggregates")
    arrays = [np.asarray(c, dtype=np.float64) for c in components]
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1:
        raise DataError(f"model_utility components have different shapes {sorted(shapes)}; pass one shape")
    stacked = np.stack(arrays, axis=0)  # (components, ...)
    if np.any(stacked < 0):
        raise DataError(
            f"model_utility component value {stacked[stacked < 0].flat[0]:.6g} is negative; "
            "the harmonic mean needs values >= 0"
        )
    return np.asarray(hmean(stacked, axis=0), dtype=np.float64)
