"""Memorization metrics on token hits: exact memorization and extraction strength.

Input: `hits` (N, ..., L), 1.0 where the predicted token (argmax) equals the answer token, 0.0
where it differs, NaN at positions that do not count (padding, the excluded EOS position, positions
outside the view). Semantics of open-unlearning `src/evals/metrics/memorization.py` on
`tokenwise_vocab_logprobs` (answer positions minus the last one). Knows nothing of tokens or models.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..errors import DataError

FloatArray = NDArray[np.float64]


def _hits(values: ArrayLike) -> FloatArray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim == 0:
        raise DataError("hits is a scalar; expected (N, ..., L) with positions on the last axis")
    bad = ~(np.isnan(array) | (array == 0.0) | (array == 1.0))
    if bad.any():
        raise DataError(
            f"hits holds {array[bad].flat[0]!r}; expected 1.0 (match), 0.0 (mismatch) or NaN (not counted)"
        )
    return array


def exact_memorization(hits: ArrayLike) -> FloatArray:
    """Fraction of counted positions where the prediction is the answer token.

    An item with no counted position gets NaN ("no value"): open-unlearning returns None for it and
    drops it from the mean, as `mean_over_items` drops NaN.
    """
    array = _hits(hits)  # (N, ..., L)
    counted = np.count_nonzero(~np.isnan(array), axis=-1)  # (N, ...)
    total = np.nansum(array, axis=-1)  # (N, ...)
    with np.errstate(invalid="ignore"):
        return np.where(counted > 0, total / counted, np.nan)


def extraction_strength(hits: ArrayLike) -> FloatArray:
    """ES = 1 - k/n, k the first index from which every counted position is a hit (Carlini et al.).

    Counted positions must form a prefix 0..n-1 of the last axis. Replicates open-unlearning's loop
    exactly: it scans k = 0..n-1 and keeps k = n-1 when no suffix matches, so ES never falls below
    1/n; an item with n = 0 gets 0 (upstream's value, not NaN).
    """
    array = _hits(hits)  # (N, ..., L)
    counted = ~np.isnan(array)
    if np.any(~counted[..., :-1] & counted[..., 1:]):
        raise DataError(
            "extraction_strength needs the counted positions of each item to be a prefix of the last "
            "axis; found a counted position after a NaN one; mark only trailing positions as NaN"
        )
    n = np.count_nonzero(counted, axis=-1)  # (N, ...)
    positions = np.arange(array.shape[-1])  # (L,)
    last_miss = np.max(np.where(array == 0.0, positions, -1), axis=-1, initial=-1)  # (N, ...)
    k = np.minimum(last_miss + 1, n - 1)  # upstream's loop stops at n - 1
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, 1.0 - k / n, 0.0)
