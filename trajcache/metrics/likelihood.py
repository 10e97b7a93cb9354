"""Likelihood metrics from mean per-token NLLs: probability, normalised probability, truth ratio.

Inputs are per-item mean negative log-likelihoods of a label sequence (TOFU's `avg_loss`: the
mean over the answer tokens, EOS included), with items on axis 0 and any trailing cell axes,
e.g. (N,) for a TOFU log or (N, views, layouts, steps) for trajectories. Perturbed answers are
stacked on a last axis K. NaN means "this item has no value here" and propagates. Definitions follow
locuslab/open-unlearning `src/evals/metrics/utils.py` and TOFU's `aggregate_stat_eval.py`.
This module knows nothing of models, tokens or stores.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import logsumexp

from ..errors import DataError

FloatArray = NDArray[np.float64]


def _nll(name: str, values: ArrayLike) -> FloatArray:
    """float64 copy of an NLL array; a negative value means log-probs were passed by mistake."""
    array = np.asarray(values, dtype=np.float64)
    negative = array < 0
    if negative.any():
        raise DataError(
            f"{name} holds a negative NLL ({array[negative].flat[0]:.6g}); "
            "pass mean negative log-likelihoods (>= 0), not log-probabilities"
        )
    return array


def _correct_and_perturbed(
    nll_correct: ArrayLike, nll_perturbed: ArrayLike
) -> tuple[FloatArray, FloatArray]:
    correct = _nll("nll_correct", nll_correct)  # (N, ...)
    perturbed = _nll("nll_perturbed", nll_perturbed)  # (N, ..., K)
    if perturbed.ndim == 0 or perturbed.shape[:-1] != correct.shape or perturbed.shape[-1] == 0:
        raise DataError(
            f"nll_perturbed has shape {perturbed.shape}; expected {correct.shape} + (K,) with K >= 1, "
            "the perturbed answers stacked on a last axis"
        )
    return correct, perturbed


def probability(nll: ArrayLike) -> FloatArray:
    """exp(-nll): the length-normalised (geometric-mean per-token) probability, TOFU's `prob`."""
    return np.exp(-_nll("nll", nll))


def probability_normalised(nll_correct: ArrayLike, nll_perturbed: ArrayLike) -> FloatArray:
    """p_c / (p_c + sum_k p_k) with p = exp(-nll): TOFU's real-authors / world-facts "Prob".

    A sum, not a mean, over the K wrong answers (open-unlearning `probability_w_options`, without its
    1e-10 guard: TOFU's aggregation has none). Evaluated in log space, so it stays exact when every
    exp(-nll) underflows.
    """
    correct, perturbed = _correct_and_perturbed(nll_correct, nll_perturbed)
    everything = np.concatenate([correct[..., None], perturbed], axis=-1)  # (N, ..., 1 + K)
    return np.exp(-correct - logsumexp(-everything, axis=-1))


def truth_ratio(nll_correct: ArrayLike, nll_perturbed: ArrayLike) -> FloatArray:
    """tr = exp(nll_correct - mean_k nll_perturbed_k) = P_wrong / P_correct.

    P_wrong is the geometric mean over the K perturbed answers (open-unlearning `truth_ratio`).
    TOFU's logs store this value under `truth_ratio`; its aggregation script uses the reciprocal
    exp(mean_k nll_perturbed_k - nll_paraphrased), which the aggregators below account for.
    """
    correct, perturbed = _correct_and_perturbed(nll_correct, nll_perturbed)
    return np.exp(correct - perturbed.mean(axis=-1))


def _ratio(tr: ArrayLike) -> FloatArray:
    array = np.asarray(tr, dtype=np.float64)
    negative = array < 0
    if negative.any():
        raise DataError(
            f"truth ratio {array[negative].flat[0]:.6g} is negative; pass ratios from truth_ratio()"
        )
    return array


def truth_ratio_closer_to_1(tr: ArrayLike) -> FloatArray:
    """min(tr, 1/tr) per item: the forget-set aggregator (1 = the model cannot tell right from wrong).

    Symmetric in tr and 1/tr, so it is the same on TOFU's reciprocal ratio; tr = 0 or inf gives 0.
    """
    array = _ratio(tr)
    with np.errstate(divide="ignore", over="ignore"):  # 1/0 and 1/subnormal are inf: min picks tr
        return np.minimum(array, 1.0 / array)


def truth_ratio_true_better(tr: ArrayLike) -> FloatArray:
    """max(0, 1 - tr) per item: the retain / real-authors / world-facts aggregator."""
    return np.maximum(0.0, 1.0 - _ratio(tr))
