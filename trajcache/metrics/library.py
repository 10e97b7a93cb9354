"""The library metrics (TOFU / open-unlearning definitions), registered on the formula functions.

Each registration states the channels a formula takes; role aliases (`target`, `correct`,
`perturbed`) and split slots (`main`, `members`, `nonmembers`) are bound by a suite.
"""

from __future__ import annotations

import numpy as np

from . import aggregate, likelihood, memorization, privacy
from ..errors import ConfigError
from .registry import Channel, ItemValues, metric

metric("probability", inputs={"nll": Channel("nll", "target")})(likelihood.probability)
metric(
    "probability_normalised",
    inputs={"nll_correct": Channel("nll", "correct"), "nll_perturbed": Channel("nll", "perturbed")},
)(likelihood.probability_normalised)
metric("exact_memorization", inputs={"hits": Channel("hits", "target")})(memorization.exact_memorization)
metric("extraction_strength", inputs={"hits": Channel("hits", "target")})(memorization.extraction_strength)
metric("min_k_score", inputs={"token_logp": Channel("token_logp", "target")})(privacy.min_k_score)


def truth_ratio_aggregate(values: np.ndarray, aggregator: str = "closer_to_1") -> np.ndarray:
    """TOFU's per-item transform before the mean: forget `closer_to_1`, others `true_better`."""
    transforms = {"closer_to_1": likelihood.truth_ratio_closer_to_1, "true_better": likelihood.truth_ratio_true_better}
    if aggregator not in transforms:
        raise ConfigError(f"truth_ratio aggregator {aggregator!r} is unknown; choose from {sorted(transforms)}")
    return transforms[aggregator](values)


metric(
    "truth_ratio",
    inputs={"nll_correct": Channel("nll", "correct"), "nll_perturbed": Channel("nll", "perturbed")},
    transform=truth_ratio_aggregate,
)(likelihood.truth_ratio)


@metric("rouge", inputs={"rouge1": Channel("rouge1", "target"), "rougeL": Channel("rougeL", "target")})
def rouge(rouge1: np.ndarray, rougeL: np.ndarray, rouge_type: str = "rougeL") -> np.ndarray:
    """ROUGE recall of the predicted text (rouge_score, use_stemmer=True): `rouge1` or `rougeL`."""
    return {"rouge1": rouge1, "rougeL": rougeL}[rouge_type]


metric(
    "mia_min_k",
    inputs={"member_scores": ItemValues("min_k_score", "members"), "nonmember_scores": ItemValues("min_k_score", "nonmembers")},
    level="dataset",
)(privacy.auc)


@metric(
    "privleak",
    inputs={
        "members": ItemValues("min_k_score", "members"),
        "nonmembers": ItemValues("min_k_score", "nonmembers"),
        "members_ref": ItemValues("min_k_score", "members", "reference"),
        "nonmembers_ref": ItemValues("min_k_score", "nonmembers", "reference"),
    },
    level="dataset",
    without_reference="AUC_ref = 0.5 was used (open-unlearning's ref_value)",
)
def privleak(
    members: np.ndarray, nonmembers: np.ndarray, members_ref: np.ndarray | None, nonmembers_ref: np.ndarray | None
) -> np.ndarray:
    """Relative MIA AUC gap to the reference (retain) model, in percent, at each (view, layout, step)."""
    score = privacy.auc(members, nonmembers)
    if members_ref is None or nonmembers_ref is None:
        return privacy.privleak(score, np.full_like(score, 0.5))
    return privacy.privleak(score, privacy.auc(members_ref, nonmembers_ref))


metric(
    "forget_quality",
    inputs={"tr": ItemValues("truth_ratio"), "tr_ref": ItemValues("truth_ratio", run="reference")},
    level="dataset",
)(aggregate.forget_quality)
metric("model_utility", level="composite")(aggregate.model_utility)
