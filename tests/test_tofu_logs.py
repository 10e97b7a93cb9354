"""TOFU eval-log reader and TOFU's aggregates, pinned by TOFU's own logs of phi-1.5 models.

The logs are read in place from the shared reference folder (never copied into the repository);
the expected numbers are those of `/work/shared/tofu/README.md`, computed by TOFU's aggregation.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from trajcache.errors import DataError
from trajcache.metrics.aggregate import forget_quality
from trajcache.metrics.text import rouge_recall
from trajcache.tofu_logs import SPLIT_FILES, TofuLogs, read_eval_logs, tofu_log_metrics

LOGS = Path(__file__).resolve().parents[2] / "shared" / "tofu" / "eval_logs"
MODELS = ("phi_full", "phi_retain90", "phi_retain95", "phi_retain99")
MODEL_UTILITY = {
    "phi_full": 0.522073713203515,
    "phi_retain90": 0.5319909117798325,
    "phi_retain95": 0.5249587122406894,
    "phi_retain99": 0.5186033878846872,
}
FORGET_QUALITY_FULL_VS_RETAIN90 = 2.1942743021891237e-16

needs_logs = pytest.mark.skipif(not LOGS.is_dir(), reason=f"TOFU reference logs not found at {LOGS}")


@pytest.fixture(scope="module")
def logs() -> dict[str, TofuLogs]:
    return {model: read_eval_logs(LOGS / model) for model in MODELS}


@needs_logs
@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("split", list(SPLIT_FILES))
def test_rouge_equals_logged_rouge_on_every_item(logs: dict[str, TofuLogs], model: str, split: str) -> None:
    log = getattr(logs[model], split)
    result = rouge_recall(log.generated, log.ground_truth)
    assert len(log.generated) == log.rouge1_recall.shape[0] > 0
    np.testing.assert_array_equal(result["rouge1"], log.rouge1_recall)
    np.testing.assert_array_equal(result["rougeL"], log.rougeL_recall)


@needs_logs
@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("split", list(SPLIT_FILES))
def test_truth_ratio_matches_logged_values(logs: dict[str, TofuLogs], model: str, split: str) -> None:
    log = getattr(logs[model], split)
    raw = json.loads((LOGS / model / SPLIT_FILES[split]).read_text())
    logged = np.array([raw["truth_ratio"][str(i)] for i in range(len(raw["truth_ratio"]))])  # (N,)
    # TOFU logs tr itself (float32); its aggregation script uses the reciprocal.
    np.testing.assert_allclose(log.truth_ratio, logged, rtol=2e-6)
    reciprocal = np.exp(log.average_perturb_loss.mean(axis=-1) - log.avg_paraphrased_loss)
    np.testing.assert_allclose(log.truth_ratio, 1 / reciprocal, rtol=1e-12)


@needs_logs
@pytest.mark.parametrize("model", MODELS)
def test_model_utility_equals_tofu(logs: dict[str, TofuLogs], model: str) -> None:
    values = tofu_log_metrics(logs[model])
    assert values["model_utility"] == pytest.approx(MODEL_UTILITY[model], rel=1e-6)
    assert "forget_quality" not in values
    assert all(0 <= value <= 1 for value in values.values())


@needs_logs
def test_forget_quality_equals_tofu_and_is_invariant_under_reciprocal(logs: dict[str, TofuLogs]) -> None:
    full, retain = logs["phi_full"], logs["phi_retain90"]
    values = tofu_log_metrics(full, reference=retain)
    assert values["forget_quality"] == pytest.approx(FORGET_QUALITY_FULL_VS_RETAIN90, rel=1e-6)
    reciprocal = forget_quality(1 / full.forget.truth_ratio, 1 / retain.forget.truth_ratio)
    assert float(reciprocal) == values["forget_quality"]
    assert tofu_log_metrics(retain, reference=retain)["forget_quality"] == 1.0


@needs_logs
def test_arrays_are_ordered_by_integer_index(logs: dict[str, TofuLogs]) -> None:
    raw = json.loads((LOGS / "phi_full" / SPLIT_FILES["retain"]).read_text())
    log = logs["phi_full"].retain
    assert log.avg_gt_loss[10] == raw["avg_gt_loss"]["10"]
    assert log.average_perturb_loss.shape == (300, 5)
    assert log.ground_truth[2] == raw["generated_text"]["2"][2]


# ---- synthetic logs: ordering, repr parsing, malformed files --------------------------------------


def make_log(indices: tuple[str, ...] = ("0", "1", "2")) -> dict[str, dict[str, object]]:
    """A small well-formed TOFU log whose values identify their item."""
    def per_item(value: Callable[[int], object]) -> dict[str, object]:
        return {index: value(int(index)) for index in indices}

    return {
        "avg_gt_loss": per_item(lambda i: 0.1 * i),
        "avg_paraphrased_loss": per_item(lambda i: 0.2 * i),
        "average_perturb_loss": per_item(lambda i: [1.0 + i, 2.0 + i]),
        "rouge1_recall": per_item(lambda i: 1.0),
        "rougeL_recall": per_item(lambda i: 0.5),
        "generated_text": per_item(lambda i: [f"Question {i}", f"Answer: item {i}", f"item {i}"]),
    }


def write_folder(folder: Path, **overrides: object) -> Path:
    """Four synthetic files; `overrides` maps a split to a replacement log (dict) or raw text (str)."""
    folder.mkdir(exist_ok=True)
    for split, name in SPLIT_FILES.items():
        content = overrides.get(split, make_log())
        (folder / name).write_text(content if isinstance(content, str) else json.dumps(content))
    return folder


def test_synthetic_folder_is_read_in_integer_order(tmp_path: Path) -> None:
    log = make_log(("10", "2", "1", "0"))
    log["generated_text"]["2"] = repr(log["generated_text"]["2"])  # TOFU sometimes stores the repr
    logs = read_eval_logs(write_folder(tmp_path, forget=log))
    np.testing.assert_allclose(logs.forget.avg_gt_loss, [0.0, 0.1, 0.2, 1.0])
    assert logs.forget.average_perturb_loss.shape == (4, 2)
    assert logs.forget.generated == ("Answer: item 0", "Answer: item 1", "Answer: item 2", "Answer: item 10")
    assert logs.forget.ground_truth[2] == "item 2"


def corrupt(key: str, value: object) -> dict[str, dict[str, object]]:
    log = make_log()
    if value is KeyError:
        del log[key]
    else:
        log[key]["1"] = value
    return log


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not readable JSON"),
        ("[1, 2]", "holds a list"),
        (corrupt("avg_paraphrased_loss", KeyError), "'avg_paraphrased_loss' is missing"),
        (corrupt("avg_gt_loss", KeyError), "'avg_gt_loss' is missing"),
        (corrupt("rouge1_recall", "high"), "'rouge1_recall' holds a non-numeric"),
        (corrupt("average_perturb_loss", [1.0]), "'average_perturb_loss' holds a non-numeric value or lists"),
        (corrupt("average_perturb_loss", 1.0), "'average_perturb_loss' holds a non-numeric value or lists"),
        (corrupt("avg_gt_loss", [1.0, 2.0]), "'avg_gt_loss' holds a non-numeric value or lists"),
        (corrupt("generated_text", ["only", "two"]), r"'generated_text'\[1\]"),
        (corrupt("generated_text", "__import__('os').getcwd()"), "not a list literal"),
        (corrupt("generated_text", "['a', 'b', 3]"), r"'generated_text'\[1\]"),
    ],
)
def test_malformed_file_is_a_data_error(tmp_path: Path, content: object, message: str) -> None:
    folder = write_folder(tmp_path, real_authors=content)
    with pytest.raises(DataError, match=message) as error:
        read_eval_logs(folder)
    assert SPLIT_FILES["real_authors"] in str(error.value)


def test_a_list_where_a_number_belongs_is_a_data_error(tmp_path: Path) -> None:
    log = make_log()
    log["avg_gt_loss"] = {index: [0.1, 0.2] for index in log["avg_gt_loss"]}
    with pytest.raises(DataError, match=r"'avg_gt_loss' has shape \(3, 2\); expected one number per item"):
        read_eval_logs(write_folder(tmp_path, forget=log))


def test_mismatched_item_indices_are_a_data_error(tmp_path: Path) -> None:
    log = make_log()
    del log["rougeL_recall"]["2"]
    with pytest.raises(DataError, match="'rougeL_recall' has 2 items, not the 3"):
        read_eval_logs(write_folder(tmp_path, retain=log))
    log = make_log()
    log["avg_gt_loss"]["x"] = log["avg_gt_loss"].pop("1")
    with pytest.raises(DataError, match="index 'x'"):
        read_eval_logs(write_folder(tmp_path, retain=log))


def test_missing_file_is_a_data_error(tmp_path: Path) -> None:
    folder = write_folder(tmp_path)
    (folder / SPLIT_FILES["world_facts"]).unlink()
    with pytest.raises(DataError, match=f"{SPLIT_FILES['world_facts']} does not exist"):
        read_eval_logs(folder)
