"""Membership-inference metrics: Min-K% score, ROC AUC and privleak.

Definitions of open-unlearning `src/evals/metrics/mia/min_k.py`, `mia/utils.py` (AUC via
sklearn's `roc_auc_score`) and `privacy.py` (privleak, MUSE convention). Arrays have items on
axis 0 and any trailing cell axes; token-level inputs carry positions on the last axis.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.stats import rankdata

from ..errors import ConfigError, DataError

FloatArray = NDArray[np.float64]

# Upstream adds this to the denominator of privleak so that AUC_ref = 1 gives a large finite value.
_PRIVLEAK_EPS = 1e-10


def min_k_score(token_logp: ArrayLike, k: float = 0.4) -> FloatArray:
    """-mean of the num_k lowest token log-probs, num_k = max(1, int(n * k)) (Min-K% Prob).

    `token_logp` (N, ..., L) holds log p of each answer token, NaN where a position does not count.
    k = 0.4 is TOFU's configured value. An item with n = 0 counted positions scores 0, as upstream
    scores an empty item.
    """
    if not 0.0 < k <= 1.0:
        raise ConfigError(f"min-k fraction k={k!r} is out of range; choose 0 < k <= 1 (TOFU uses 0.4)")
    logp = np.asarray(token_logp, dtype=np.float64)
    if logp.ndim == 0:
        raise DataError("token_logp is a scalar; expected (N, ..., L) with positions on the last axis")
    n = np.count_nonzero(~np.isnan(logp), axis=-1)  # (N, ...)
    num_k = np.maximum(1, np.floor(n * k).astype(np.int64))  # (N, ...)
    if logp.shape[-1] == 0:
        return np.zeros(n.shape)
    lowest_sums = np.cumsum(np.sort(logp, axis=-1), axis=-1)  # (N, ..., L), NaN sorted last
    picked = np.take_along_axis(lowest_sums, (num_k - 1)[..., None], axis=-1)[..., 0]  # (N, ...)
    return np.where(n > 0, -picked / num_k, 0.0)


def auc(member_scores: ArrayLike, nonmember_scores: ArrayLike) -> FloatArray:
    """ROC AUC of scores with members labelled 0 and non-members 1, per trailing cell.

    Equals sklearn's `roc_auc_score(labels, scores)`: the probability that a non-member outscores a
    member, ties counting 1/2, computed as Mann-Whitney U / (N * M) from average ranks.
    """
    members = np.asarray(member_scores, dtype=np.float64)  # (N, ...)
    nonmembers = np.asarray(nonmember_scores, dtype=np.float64)  # (M, ...)
    if members.ndim == 0 or nonmembers.ndim == 0 or members.shape[1:] != nonmembers.shape[1:]:
        raise DataError(
            f"AUC scores have shapes {members.shape} and {nonmembers.shape}; expected (N, ...) and "
            "(M, ...) with the same trailing cell axes"
        )
    if members.shape[0] == 0 or nonmembers.shape[0] == 0:
        raise DataError(
            f"AUC needs both classes; got {members.shape[0]} members and {nonmembers.shape[0]} "
            "non-members; score a non-empty forget and holdout split"
        )
    if np.isnan(members).any() or np.isnan(nonmembers).any():
        raise DataError("AUC scores contain NaN; every member and non-member needs a score")
    n_members, n_nonmembers = members.shape[0], nonmembers.shape[0]
    ranks = rankdata(np.concatenate([members, nonmembers], axis=0), axis=0)  # (N + M, ...)
    u = ranks[n_members:].sum(axis=0) - n_nonmembers * (n_nonmembers + 1) / 2.0  # (...)
    return np.asarray(u / (n_members * n_nonmembers), dtype=np.float64)


def privleak(auc: ArrayLike, auc_ref: ArrayLike) -> FloatArray:
    """((1 - auc) - (1 - auc_ref)) / (1 - auc_ref + 1e-10) * 100, in percent (open-unlearning).

    The 1 - x flip follows MUSE's AUC convention: 0 means the model leaks as much as the reference
    (retain) model. The range is [-100, +inf): as auc_ref nears 1 the value reaches the thousands
    (open-unlearning issue #167).
    """
    value = np.asarray(auc, dtype=np.float64)
    ref = np.asarray(auc_ref, dtype=np.float64)
    for name, array in (("auc", value), ("auc_ref", ref)):
        if np.any((array < 0) | (array > 1)):
            raise DataError(f"{name} has a value outside [0, 1]; pass ROC AUCs from auc()")
    return ((1.0 - value) - (1.0 - ref)) / ((1.0 - ref) + _PRIVLEAK_EPS) * 100.0
