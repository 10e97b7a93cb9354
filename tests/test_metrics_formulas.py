"""Metric formulas (likelihood, memorization, privacy, aggregate): hand cases, references, properties.

References are written independently of the vectorised code: Python loops that follow the upstream
(open-unlearning / TOFU / sklearn) definitions item by item.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy.stats import hmean, ks_2samp

from trajcache.errors import ConfigError, DataError
from trajcache.metrics.aggregate import distribution, forget_quality, mean_over_items, model_utility
from trajcache.metrics.likelihood import (
    probability,
    probability_normalised,
    truth_ratio,
    truth_ratio_closer_to_1,
    truth_ratio_true_better,
)
from trajcache.metrics.memorization import exact_memorization, extraction_strength
from trajcache.metrics.privacy import auc, min_k_score, privleak

NAN = np.nan
nlls = hnp.arrays(np.float64, hnp.array_shapes(min_dims=1, max_dims=3, max_side=4), elements=st.floats(0, 50))


# ---- independent per-item references -------------------------------------------------------------


def es_reference(hits: list[float]) -> float:
    """open-unlearning's extraction_strength loop on the counted prefix."""
    counted = [h for h in hits if not math.isnan(h)]
    n = len(counted)
    if n == 0:
        return 0.0
    k = 0
    for k in range(n):
        if all(h == 1.0 for h in counted[k:]):
            break
    return 1 - k / n


def min_k_reference(logp: list[float], k: float) -> float:
    values = sorted(v for v in logp if not math.isnan(v))
    if not values:
        return 0.0
    num_k = max(1, int(len(values) * k))
    return -sum(values[:num_k]) / num_k


def auc_reference(members: list[float], nonmembers: list[float]) -> float:
    """sklearn's roc_auc_score with labels members 0, non-members 1: pairwise, ties count 1/2."""
    wins = sum(1.0 if b > a else 0.5 if b == a else 0.0 for a, b in itertools.product(members, nonmembers))
    return wins / (len(members) * len(nonmembers))


# ---- likelihood ----------------------------------------------------------------------------------


def test_probability_hand() -> None:
    np.testing.assert_allclose(probability([0.0, math.log(2), NAN]), [1.0, 0.5, NAN])


def test_negative_nll_is_an_error() -> None:
    with pytest.raises(DataError, match="negative NLL"):
        probability([0.1, -0.2])
    with pytest.raises(DataError, match="nll_perturbed"):
        truth_ratio([0.1], [[0.2, -1.0]])


def test_probability_normalised_hand() -> None:
    # p_c = 1/2, wrong p = 1/4 and 1/4 (summed, not averaged) -> 1/2 / (1/2 + 1/2) = 1/2.
    result = probability_normalised([math.log(2)], [[math.log(4), math.log(4)]])
    np.testing.assert_allclose(result, [0.5], rtol=1e-15)


def test_probability_normalised_survives_underflow() -> None:
    # exp(-800) underflows to 0, so the naive ratio is 0/0; in log space it is 1 / (1 + e^-1).
    result = probability_normalised([800.0], [[801.0]])
    np.testing.assert_allclose(result, [1 / (1 + math.exp(-1))], rtol=1e-12)


@given(correct=nlls, k=st.integers(1, 4), data=st.data())
def test_probability_normalised_matches_naive_and_is_bounded(
    correct: np.ndarray, k: int, data: st.DataObject
) -> None:
    perturbed = data.draw(hnp.arrays(np.float64, correct.shape + (k,), elements=st.floats(0, 50)))
    result = probability_normalised(correct, perturbed)
    naive = np.exp(-correct) / (np.exp(-correct) + np.exp(-perturbed).sum(axis=-1))
    np.testing.assert_allclose(result, naive, rtol=1e-12)
    assert np.all((0 <= result) & (result <= 1))
    assert np.all((0 <= probability(correct)) & (probability(correct) <= 1))


def test_truth_ratio_hand_and_geometric_mean() -> None:
    # P_c = 1/2; wrong probs 1/4 and 1 -> geometric mean 1/2 -> tr = 1.
    np.testing.assert_allclose(truth_ratio([math.log(2)], [[math.log(4), 0.0]]), [1.0], rtol=1e-15)
    rng = np.random.default_rng(0)
    correct, perturbed = rng.uniform(0, 5, (6, 3)), rng.uniform(0, 5, (6, 3, 5))  # (N, cells), (N, cells, K)
    geometric = np.prod(np.exp(-perturbed), axis=-1) ** (1 / 5)
    np.testing.assert_allclose(truth_ratio(correct, perturbed), geometric / np.exp(-correct), rtol=1e-12)


def test_perturbed_shape_must_extend_correct() -> None:
    with pytest.raises(DataError, match=r"expected \(2,\) \+ \(K,\)"):
        truth_ratio([0.1, 0.2], [0.1, 0.2])
    with pytest.raises(DataError, match="K >= 1"):
        probability_normalised([0.1], np.zeros((1, 0)))


def test_truth_ratio_aggregators_hand() -> None:
    tr = np.array([0.0, 0.25, 1.0, 4.0, np.inf, NAN])
    np.testing.assert_array_equal(truth_ratio_closer_to_1(tr), [0.0, 0.25, 1.0, 0.25, 0.0, NAN])
    np.testing.assert_array_equal(truth_ratio_true_better(tr), [1.0, 0.75, 0.0, 0.0, 0.0, NAN])
    with pytest.raises(DataError, match="negative"):
        truth_ratio_closer_to_1([-1.0])


@given(hnp.arrays(np.float64, hnp.array_shapes(max_dims=3, max_side=5), elements=st.floats(0, 1e300)))
def test_truth_ratio_aggregators_bounded(tr: np.ndarray) -> None:
    for aggregated in (truth_ratio_closer_to_1(tr), truth_ratio_true_better(tr)):
        assert np.all((0 <= aggregated) & (aggregated <= 1))
    normal = tr[tr > 1e-300]  # its reciprocal does not overflow
    np.testing.assert_allclose(truth_ratio_closer_to_1(normal), truth_ratio_closer_to_1(1 / normal))


# ---- memorization ----------------------------------------------------------------------------------


def test_exact_memorization_hand() -> None:
    hits = np.array([[1, 0, 1, NAN], [1, 1, 1, 1], [NAN, NAN, NAN, NAN], [0, NAN, 0, NAN]])
    np.testing.assert_array_equal(exact_memorization(hits), [2 / 3, 1.0, NAN, 0.0])


def test_hits_must_be_zero_one_or_nan() -> None:
    with pytest.raises(DataError, match="0.5"):
        exact_memorization([[1.0, 0.5]])
    with pytest.raises(DataError, match="scalar"):
        extraction_strength(1.0)


@pytest.mark.parametrize(
    ("hits", "expected"),
    [
        ([1, 1, 1, 1], 1.0),  # whole answer extracted: k = 0
        ([0, 1, 1, 1], 3 / 4),  # suffix from k = 1
        ([1, 0, 1, 1], 2 / 4),
        ([1, 1, 1, 0], 1 / 4),  # no suffix matches: upstream's floor 1/n
        ([0, 0, 0, 0], 1 / 4),
        ([1, 1, 0, 1], 1 / 4),  # k = 3 = n - 1 also gives 1/n
        ([1, 0, NAN, NAN], 1 / 2),  # n = 2, last counted misses: floor 1/2
        ([0, 1, NAN, NAN], 1 / 2),
        ([1, NAN, NAN, NAN], 1.0),
        ([0, NAN, NAN, NAN], 1.0),  # n = 1: k = 0 is the only candidate, as upstream
        ([NAN, NAN, NAN, NAN], 0.0),  # n = 0: upstream's 0
    ],
)
def test_extraction_strength_hand(hits: list[float], expected: float) -> None:
    assert extraction_strength([hits])[0] == pytest.approx(expected, abs=1e-15)
    assert es_reference(hits) == pytest.approx(expected, abs=1e-15)


def test_extraction_strength_needs_a_counted_prefix() -> None:
    with pytest.raises(DataError, match="prefix"):
        extraction_strength([[1.0, NAN, 1.0]])


def test_extraction_strength_on_an_empty_position_axis() -> None:
    np.testing.assert_array_equal(extraction_strength(np.zeros((2, 3, 0))), np.zeros((2, 3)))


@st.composite
def prefix_hits(draw: st.DrawFn) -> np.ndarray:
    """(N, cells, L) hits whose counted positions form a prefix of random length."""
    n_items, cells, length = draw(st.integers(1, 5)), draw(st.integers(1, 4)), draw(st.integers(0, 7))
    bits = draw(hnp.arrays(np.float64, (n_items, cells, length), elements=st.sampled_from([0.0, 1.0])))
    counted = draw(hnp.arrays(np.int64, (n_items, cells), elements=st.integers(0, length)))
    return np.where(np.arange(length) < counted[..., None], bits, NAN)


@settings(max_examples=80)
@given(hits=prefix_hits())
def test_memorization_vectorised_equals_per_item_loop(hits: np.ndarray) -> None:
    es = extraction_strength(hits)  # (N, cells)
    em = exact_memorization(hits)  # (N, cells)
    for i, c in np.ndindex(es.shape):
        assert es[i, c] == pytest.approx(es_reference(list(hits[i, c])), abs=1e-12)
        row = hits[i, c][~np.isnan(hits[i, c])]
        assert (np.isnan(em[i, c]) and row.size == 0) or em[i, c] == pytest.approx(row.mean())
    assert np.all((0 <= es) & (es <= 1))
    assert np.all(np.isnan(em) | ((0 <= em) & (em <= 1)))


# ---- privacy ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("logp", "expected"),
    [
        ([-1.0, -2.0, -3.0, -4.0, -5.0], (5 + 4) / 2),  # n = 5: int(2.0) = 2 lowest
        ([-1.0, -3.0, NAN, NAN, NAN], 3.0),  # n = 2 < 3: int(0.8) = 0 -> max(1, 0) = 1 lowest
        ([-0.5, NAN, NAN, NAN, NAN], 0.5),  # n = 1
        ([NAN, NAN, NAN, NAN, NAN], 0.0),  # n = 0: upstream's empty -> 0
    ],
)
def test_min_k_hand(logp: list[float], expected: float) -> None:
    assert min_k_score([logp], k=0.4)[0] == pytest.approx(expected, abs=1e-15)
    assert min_k_reference(logp, 0.4) == pytest.approx(expected, abs=1e-15)


def test_min_k_rejects_bad_k() -> None:
    for k in (0.0, 1.5, -0.2):
        with pytest.raises(ConfigError, match="0 < k <= 1"):
            min_k_score([[-1.0]], k=k)


@settings(max_examples=60)
@given(
    logp=hnp.arrays(np.float64, st.tuples(st.integers(1, 4), st.integers(1, 3), st.integers(0, 9)),
                    elements=st.one_of(st.floats(-30, 0), st.just(NAN))),
    k=st.sampled_from([0.1, 0.2, 0.4, 0.5, 1.0]),
)
def test_min_k_vectorised_equals_per_item_loop(logp: np.ndarray, k: float) -> None:
    result = min_k_score(logp, k)  # (N, cells)
    for i, c in np.ndindex(result.shape):
        assert result[i, c] == pytest.approx(min_k_reference(list(logp[i, c]), k), abs=1e-9)


def test_auc_hand() -> None:
    assert auc([1.0, 2.0], [3.0, 4.0]) == 1.0  # every non-member outscores every member
    assert auc([3.0, 4.0], [1.0, 2.0]) == 0.0
    assert auc([1.0, 1.0], [1.0, 1.0]) == 0.5  # all ties
    assert auc([1.0, 2.0], [2.0, 3.0]) == pytest.approx((1 + 1 + 0.5 + 1) / 4)


def test_auc_needs_both_classes_and_no_nan() -> None:
    with pytest.raises(DataError, match="both classes"):
        auc(np.zeros((0,)), [1.0])
    with pytest.raises(DataError, match="NaN"):
        auc([NAN], [1.0])
    with pytest.raises(DataError, match="trailing"):
        auc(np.zeros((2, 3)), np.zeros((2, 4)))


@settings(max_examples=60)
@given(data=st.data(), cells=st.integers(1, 4))
def test_auc_vectorised_equals_brute_force(data: st.DataObject, cells: int) -> None:
    # Few distinct values, so ties are frequent.
    scores = st.integers(0, 4).map(float)
    members = data.draw(hnp.arrays(np.float64, (data.draw(st.integers(1, 6)), cells), elements=scores))
    nonmembers = data.draw(hnp.arrays(np.float64, (data.draw(st.integers(1, 6)), cells), elements=scores))
    result = auc(members, nonmembers)  # (cells,)
    expected = [auc_reference(list(members[:, c]), list(nonmembers[:, c])) for c in range(cells)]
    np.testing.assert_allclose(result, expected, rtol=0, atol=1e-12)
    assert np.all((0 <= result) & (result <= 1))


def test_privleak_hand_and_sign() -> None:
    assert privleak(0.5, 0.5) == pytest.approx(0.0)
    # Forget items look more "member" (lower AUC) than for the retain model: positive leak.
    assert privleak(0.2, 0.5) == pytest.approx((0.8 - 0.5) / 0.5 * 100)
    assert privleak(0.8, 0.5) == pytest.approx(-60.0)
    assert privleak(1.0, 0.3) == pytest.approx(-100.0)
    np.testing.assert_allclose(privleak(np.array([0.5, 0.2]), np.array([0.5, 0.5])), [0.0, 60.0])
    with pytest.raises(DataError, match=r"outside \[0, 1\]"):
        privleak(1.2, 0.5)


# ---- aggregate -------------------------------------------------------------------------------------


def test_mean_over_items_drops_nan_items() -> None:
    values = np.array([[1.0, NAN, 2.0], [3.0, NAN, NAN]])  # (N, cells)
    np.testing.assert_array_equal(mean_over_items(values), [2.0, NAN, 2.0])
    with pytest.raises(DataError, match="at least one item"):
        mean_over_items(np.zeros((0, 3)))


def test_distribution_hand() -> None:
    result = distribution([1.0, 2.0, 3.0, 4.0])
    half = 3.182446305284263 * math.sqrt(5 / 3) / 2  # t_{0.975, 3} * s / sqrt(n)
    expected = {"mean": 2.5, "std": math.sqrt(1.25), "median": 2.5, "p25": 1.75, "p75": 3.25, "min": 1.0,
                "max": 4.0, "ci_low": 2.5 - half, "ci_high": 2.5 + half, "n": 4.0}
    assert set(result) == set(expected)
    for name, value in expected.items():
        assert result[name] == pytest.approx(value, rel=1e-12), name


def test_distribution_n1_nan_and_empty_cells() -> None:
    values = np.array([[5.0, NAN, 1.0], [NAN, NAN, 3.0]])  # (N, cells): n = 1, 0, 2
    result = distribution(values)
    np.testing.assert_array_equal(result["n"], [1.0, 0.0, 2.0])
    assert result["ci_low"][0] == result["ci_high"][0] == result["mean"][0] == 5.0
    assert result["std"][0] == 0.0
    for name in result:
        if name != "n":
            assert np.isnan(result[name][1]), name
    # values 1 and 3: s = sqrt(2), s / sqrt(n) = 1, t_{0.975, 1} = 12.7062...
    assert result["ci_low"][2] == pytest.approx(2.0 - 12.706204736174698)


def test_forget_quality_per_cell_and_nan_rule() -> None:
    rng = np.random.default_rng(1)
    tr, tr_ref = rng.lognormal(size=(30, 3)), rng.lognormal(0.5, size=(25, 3))  # (N, cells), (M, cells)
    tr[:4, 1] = NAN
    tr[:, 2] = NAN
    result = forget_quality(tr, tr_ref)
    assert result[0] == ks_2samp(tr[:, 0], tr_ref[:, 0]).pvalue
    assert result[1] == ks_2samp(tr[4:, 1], tr_ref[:, 1]).pvalue
    assert np.isnan(result[2])
    np.testing.assert_array_equal(forget_quality(1 / tr, 1 / tr_ref), result)
    with pytest.raises(DataError, match="trailing"):
        forget_quality(tr, tr_ref[:, :2])


def test_model_utility_hand() -> None:
    assert model_utility([1.0, 0.5]) == pytest.approx(2 / 3)
    assert model_utility([1.0, 0.0, 0.5]) == 0.0  # a zero component gives 0
    np.testing.assert_allclose(model_utility([np.array([1.0, 0.2]), np.array([0.5, 0.2])]), [2 / 3, 0.2])
    with pytest.raises(DataError, match="negative"):
        model_utility([0.5, -0.1])
    with pytest.raises(DataError, match="no components"):
        model_utility([])
    with pytest.raises(DataError, match="shapes"):
        model_utility([np.zeros(2), np.zeros(3)])


@settings(max_examples=40)
@given(hnp.arrays(np.float64, st.tuples(st.integers(1, 6), st.integers(1, 3), st.integers(1, 3)),
                  elements=st.one_of(st.floats(0, 1, allow_subnormal=False), st.just(NAN))))
def test_aggregates_vectorised_equal_per_cell_loop(values: np.ndarray) -> None:
    mean = mean_over_items(values)
    stats = distribution(values)
    components = [values[0], values[-1]]
    utility = model_utility(components)
    for c in np.ndindex(values.shape[1:]):
        column = values[(slice(None), *c)]
        present = column[~np.isnan(column)]
        assert stats["n"][c] == present.size
        if present.size:
            assert mean[c] == pytest.approx(present.mean())
            assert stats["median"][c] == pytest.approx(np.median(present))
            assert stats["ci_low"][c] <= mean[c] <= stats["ci_high"][c]
        else:
            assert np.isnan(mean[c])
        parts = [values[(0, *c)], values[(-1, *c)]]
        if not np.isnan(parts).any():
            assert utility[c] == pytest.approx(hmean(parts))
