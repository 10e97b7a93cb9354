"""Trajectory metrics: pure functions on numpy arrays, registered by name.

Public API: the formula functions (`rouge_recall`, `truth_ratio`, `forget_quality`,
`model_utility`, ...) work on plain per-item arrays, so they also score logs of other tools;
`metric` registers a new metric for `trajcache score --plugin`.
"""

from . import library as _library  # noqa: F401  (registers the library metrics)
from .aggregate import distribution, forget_quality, mean_over_items, model_utility
from .likelihood import (
    probability,
    probability_normalised,
    truth_ratio,
    truth_ratio_closer_to_1,
    truth_ratio_true_better,
)
from .memorization import exact_memorization, extraction_strength
from .privacy import auc, min_k_score, privleak
from .registry import Channel, ItemValues, MetricDef, get_metric, metric, registered
from .text import rouge_recall

__all__ = [
    "Channel", "ItemValues", "MetricDef", "auc", "distribution", "exact_memorization", "extraction_strength",
    "forget_quality", "get_metric", "mean_over_items", "metric", "min_k_score", "model_utility", "privleak",
    "probability", "probability_normalised", "registered", "rouge_recall", "truth_ratio",
    "truth_ratio_closer_to_1", "truth_ratio_true_better",
]
