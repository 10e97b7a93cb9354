"""Reader for TOFU's per-item evaluation logs, and TOFU's aggregate metrics recomputed from them.

TOFU (locuslab/tofu) writes four JSON files per evaluated model; each maps a metric name to a dict
from item index (a string) to a value. `read_eval_logs` turns one folder into per-split numpy
arrays ordered by integer index; `tofu_log_metrics` recomputes TOFU's reported numbers with the
trajcache metric functions only, so the real logs pin those functions to the published values.
"""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from .errors import DataError
from .metrics.aggregate import forget_quality, mean_over_items, model_utility
from .metrics.likelihood import (
    probability,
    probability_normalised,
    truth_ratio,
    truth_ratio_closer_to_1,
    truth_ratio_true_better,
)

FloatArray = NDArray[np.float64]

# The file TOFU writes for each split (its `aggregate_stat_eval.py` reads exactly these four).
SPLIT_FILES = {
    "retain": "eval_log.json",
    "forget": "eval_log_forget.json",
    "real_authors": "eval_real_author_wo_options.json",
    "world_facts": "eval_real_world_wo_options.json",
}

# TOFU's model utility: harmonic mean of these 9 aggregates (open-unlearning model_utility.yaml).
UTILITY_COMPONENTS = (
    "retain_Q_A_Prob",
    "retain_Q_A_ROUGE",
    "retain_Truth_Ratio",
    "ra_Q_A_Prob_normalised",
    "ra_Q_A_ROUGE",
    "ra_Truth_Ratio",
    "wf_Q_A_Prob_normalised",
    "wf_Q_A_ROUGE",
    "wf_Truth_Ratio",
)


@dataclass(frozen=True)
class TofuSplitLog:
    """Per-item values of one TOFU log file, items ordered by integer index (N items, K perturbed)."""

    avg_gt_loss: FloatArray  # (N,) mean NLL of the answer
    # (N,) mean NLL of the paraphrased answer; on real authors / world facts TOFU stores the answer
    # here, re-scored in the batch of the perturbed answers (equal token counts, values differ by
    # padding numerics), and its truth ratio uses this key, not avg_gt_loss.
    avg_paraphrased_loss: FloatArray
    average_perturb_loss: FloatArray  # (N, K) mean NLL of each perturbed answer
    rouge1_recall: FloatArray  # (N,)
    rougeL_recall: FloatArray  # (N,)
    generated: tuple[str, ...]  # (N,) the model's answer, as ROUGE scored it
    ground_truth: tuple[str, ...]  # (N,) the reference answer, as ROUGE scored it

    @property
    def truth_ratio(self) -> FloatArray:
        """Per-item truth ratio as TOFU aggregates it: paraphrase (or re-scored answer) vs perturbed."""
        return truth_ratio(self.avg_paraphrased_loss, self.average_perturb_loss)  # (N,)


@dataclass(frozen=True)
class TofuLogs:
    """The four TOFU log files of one evaluated model."""

    folder: Path
    retain: TofuSplitLog
    forget: TofuSplitLog
    real_authors: TofuSplitLog
    world_facts: TofuSplitLog


def read_eval_logs(folder: Path) -> TofuLogs:
    """Read the four TOFU log files of `folder`; a missing or malformed file raises DataError."""
    folder = Path(folder)
    return TofuLogs(
        folder=folder,
        retain=_read_split(folder / SPLIT_FILES["retain"]),
        forget=_read_split(folder / SPLIT_FILES["forget"]),
        real_authors=_read_split(folder / SPLIT_FILES["real_authors"]),
        world_facts=_read_split(folder / SPLIT_FILES["world_facts"]),
    )


def _read_split(path: Path) -> TofuSplitLog:
    try:
        log = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise DataError(
            f"TOFU log {path} does not exist; pass a folder with {sorted(SPLIT_FILES.values())}"
        ) from error
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DataError(
            f"TOFU log {path} is not readable JSON ({error}); pass TOFU's own eval log"
        ) from error
    if not isinstance(log, dict):
        raise DataError(f"TOFU log {path} holds a {type(log).__name__}; expected an object of metrics")
    indices = _item_indices(path, log)
    column = _Column(path, log, indices)
    texts = [_generated_text(path, i, value) for i, value in zip(indices, column("generated_text"))]
    return TofuSplitLog(
        avg_gt_loss=column.floats("avg_gt_loss"),
        avg_paraphrased_loss=column.floats("avg_paraphrased_loss"),
        average_perturb_loss=column.floats("average_perturb_loss", ndim=2),
        rouge1_recall=column.floats("rouge1_recall"),
        rougeL_recall=column.floats("rougeL_recall"),
        generated=tuple(text[1] for text in texts),
        ground_truth=tuple(text[2] for text in texts),
    )


def _item_indices(path: Path, log: dict[str, object]) -> list[str]:
    """Item keys of `avg_gt_loss` sorted by integer value; every other metric must have the same."""
    values = log.get("avg_gt_loss")
    if not isinstance(values, dict) or not values:
        raise DataError(f"TOFU log {path}: key 'avg_gt_loss' is missing or empty; expected index -> value")
    for key in values:
        if not key.isdigit():
            raise DataError(f"TOFU log {path}: item index {key!r} of 'avg_gt_loss' is not an integer")
    return sorted(values, key=int)


@dataclass(frozen=True)
class _Column:
    """Reads one metric of a log as a list ordered like `indices`, naming file and key on error."""

    path: Path
    log: dict[str, object]
    indices: list[str]

    def __call__(self, key: str) -> list[object]:
        values = self.log.get(key)
        if not isinstance(values, dict):
            raise DataError(f"TOFU log {self.path}: key {key!r} is missing; expected index -> value")
        if set(values) != set(self.indices):
            raise DataError(
                f"TOFU log {self.path}: key {key!r} has {len(values)} items, not the "
                f"{len(self.indices)} indices of 'avg_gt_loss'; the file is truncated or mixed"
            )
        return [values[index] for index in self.indices]

    def floats(self, key: str, ndim: int = 1) -> FloatArray:
        """(N,) for a number per item, (N, K) for a list of K numbers per item."""
        values = self(key)
        try:
            array = np.asarray(values, dtype=np.float64)
        except (TypeError, ValueError) as error:
            raise DataError(
                f"TOFU log {self.path}: key {key!r} holds a non-numeric value or lists of unequal "
                "length; expected numbers"
            ) from error
        if array.ndim != ndim:
            raise DataError(
                f"TOFU log {self.path}: key {key!r} has shape {array.shape}; expected "
                f"{'one number' if ndim == 1 else 'a list of numbers'} per item"
            )
        return array


def _generated_text(path: Path, index: str, value: object) -> list[str]:
    """[prompt, generation, ground truth]: a list, or its Python repr (parsed as a literal only)."""
    if isinstance(value, str):
        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError, MemoryError, RecursionError) as error:
            raise DataError(
                f"TOFU log {path}: 'generated_text'[{index}] is a string but not a list literal"
            ) from error
    if not (isinstance(value, (list, tuple)) and len(value) == 3 and all(isinstance(t, str) for t in value)):
        raise DataError(
            f"TOFU log {path}: 'generated_text'[{index}] is {str(value)[:80]!r}; expected "
            "[prompt, generated answer, ground truth] strings"
        )
    return list(value)


def item_values(logs: TofuLogs) -> dict[str, FloatArray]:
    """Per-item values (N,) of TOFU's item-level metrics, by name; their means are TOFU's numbers.

    Follows TOFU's `aggregate_stat_eval.py`: Prob from `avg_gt_loss`, ROUGE = rougeL_recall,
    truth ratios from `avg_paraphrased_loss` vs `average_perturb_loss` on every split.
    """
    values = {
        "forget_Q_A_Prob": probability(logs.forget.avg_gt_loss),
        "forget_Q_A_ROUGE": logs.forget.rougeL_recall,
        "forget_truth_ratio": truth_ratio_closer_to_1(logs.forget.truth_ratio),
        "retain_Q_A_Prob": probability(logs.retain.avg_gt_loss),
        "retain_Q_A_ROUGE": logs.retain.rougeL_recall,
        "retain_Truth_Ratio": truth_ratio_true_better(logs.retain.truth_ratio),
    }
    for prefix, split in (("ra", logs.real_authors), ("wf", logs.world_facts)):
        values[f"{prefix}_Q_A_Prob_normalised"] = probability_normalised(split.avg_gt_loss, split.average_perturb_loss)
        values[f"{prefix}_Q_A_ROUGE"] = split.rougeL_recall
        values[f"{prefix}_Truth_Ratio"] = truth_ratio_true_better(split.truth_ratio)
    return values


def tofu_log_metrics(logs: TofuLogs, reference: TofuLogs | None = None) -> dict[str, float]:
    """TOFU's aggregate numbers from its logs; `forget_quality` needs the retain model's `reference`."""
    values = {name: _mean(per_item) for name, per_item in item_values(logs).items()}
    values["model_utility"] = float(model_utility([values[name] for name in UTILITY_COMPONENTS]))
    if reference is not None:
        quality = forget_quality(logs.forget.truth_ratio, reference.forget.truth_ratio)
        values["forget_quality"] = float(quality)
    return values


def _mean(per_item: FloatArray) -> float:
    return float(mean_over_items(per_item))
