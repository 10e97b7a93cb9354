"""import-logs: TOFU's published eval logs as a one-step results file, pinned to TOFU's numbers.

The logs are read in place from the shared reference folder; the expected numbers are those of
`/work/shared/tofu/README.md` (TOFU's own aggregation on these logs).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cli.main import app
from trajcache.results import Results, read_results, write_results
from trajcache.tofu_import import FORGET_METRICS, import_tofu_logs, logs_fingerprint
from trajcache.tofu_logs import item_values
from trajcache.tofu_logs import SPLIT_FILES, UTILITY_COMPONENTS, read_eval_logs, tofu_log_metrics
from trajcache.trajectories import LAYOUTS, VIEWS

LOGS = Path(__file__).resolve().parents[2] / "shared" / "tofu" / "eval_logs"
MODEL_UTILITY = {
    "phi_full": 0.522073713203515,
    "phi_retain90": 0.5319909117798325,
    "phi_retain95": 0.5249587122406894,
    "phi_retain99": 0.5186033878846872,
}
FORGET_QUALITY_FULL_VS_RETAIN90 = 2.1942743021891237e-16
FULL, STEPS = VIEWS.index("full"), LAYOUTS.index("steps")

pytestmark = pytest.mark.skipif(not LOGS.is_dir(), reason=f"TOFU reference logs not found at {LOGS}")


@pytest.fixture(scope="module")
def full() -> Results:
    return import_tofu_logs(LOGS / "phi_full", LOGS / "phi_retain90")


@pytest.mark.parametrize("model", sorted(MODEL_UTILITY))
def test_model_utility_equals_tofu(model: str) -> None:
    results = import_tofu_logs(LOGS / model)
    assert results.metrics["model_utility"].values[FULL, STEPS, 0] == pytest.approx(MODEL_UTILITY[model], rel=1e-6)
    assert "forget_quality" not in results.metrics
    assert results.reference is None


def test_forget_quality_equals_tofu(full: Results) -> None:
    assert full.metrics["forget_quality"].values[FULL, STEPS, 0] == pytest.approx(FORGET_QUALITY_FULL_VS_RETAIN90, rel=1e-6)
    assert full.reference == {"path": str(LOGS / "phi_retain90"), "fingerprint": logs_fingerprint(LOGS / "phi_retain90")}


def test_metric_set_and_values_are_tofu_aggregation(full: Results) -> None:
    expected = tofu_log_metrics(read_eval_logs(LOGS / "phi_full"), read_eval_logs(LOGS / "phi_retain90"))
    names = [*FORGET_METRICS, *UTILITY_COMPONENTS, "model_utility", "forget_quality"]
    assert list(full.metrics) == names
    assert full.steps == 1
    for name in names:
        assert full.metrics[name].values[FULL, STEPS, 0] == expected[name]


def test_only_full_steps_cell_has_a_value(full: Results) -> None:
    for m in full.metrics.values():
        assert m.values.shape == (len(VIEWS), len(LAYOUTS), 1)
        filled = ~np.isnan(m.values)
        assert filled[FULL, STEPS, 0] and filled.sum() == 1
        for stat in m.distribution.values():
            assert np.isnan(np.delete(stat.reshape(-1), FULL * len(LAYOUTS) + STEPS)).all()


def test_per_item_values_average_to_the_metric(full: Results) -> None:
    logs = read_eval_logs(LOGS / "phi_full")
    items = item_values(logs)
    assert set(items) == {*FORGET_METRICS, *UTILITY_COMPONENTS}
    for name, values in items.items():
        m = full.metrics[name]
        assert m.per_item is not None
        ids, grid = m.per_item
        assert ids == [str(i) for i in range(values.shape[0])]
        np.testing.assert_array_equal(grid[:, FULL, STEPS, 0], values)
        assert np.isnan(grid[:, 1:]).all() and np.isnan(grid[:, :, 1:]).all()
        assert np.mean(values) == pytest.approx(m.values[FULL, STEPS, 0], rel=1e-12)
        assert m.distribution["ci_low"][FULL, STEPS, 0] < m.values[FULL, STEPS, 0] < m.distribution["ci_high"][FULL, STEPS, 0]
    assert len(items["forget_Q_A_Prob"]) == len(logs.forget.avg_gt_loss)
    assert full.metrics["model_utility"].per_item is None and full.metrics["forget_quality"].per_item is None


def test_fingerprint_is_sha256_of_the_four_files(full: Results) -> None:
    digest = hashlib.sha256()
    for name in SPLIT_FILES.values():
        digest.update(name.encode() + b"\0" + (LOGS / "phi_full" / name).read_bytes())
    assert full.run == {"path": str(LOGS / "phi_full"), "fingerprint": digest.hexdigest()}
    assert logs_fingerprint(LOGS / "phi_retain95") != full.run["fingerprint"]


def test_round_trip_through_a_results_file(full: Results, tmp_path: Path) -> None:
    path = tmp_path / "full.json"
    write_results(full, path)
    back = read_results(path)
    raw = json.loads(path.read_text())
    assert raw["metrics"]["forget_Q_A_Prob"]["values"]["eos"]["steps"] == [None]
    for name, m in full.metrics.items():
        np.testing.assert_array_equal(back.metrics[name].values, m.values)
        assert back.metrics[name].spec == m.spec
    assert back.metrics["forget_truth_ratio"].per_item is not None


def test_cli_import_logs_writes_and_refuses_to_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "full.json"
    args = ["import-logs", str(LOGS / "phi_full"), "-o", str(out), "--reference", str(LOGS / "phi_retain90")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert read_results(out).metrics["forget_quality"].values[FULL, STEPS, 0] == pytest.approx(FORGET_QUALITY_FULL_VS_RETAIN90, rel=1e-6)
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 2
    assert "exists; pass --overwrite" in again.output
    assert CliRunner().invoke(app, [*args, "--overwrite"]).exit_code == 0


def test_cli_missing_log_file_exits_2_naming_it(tmp_path: Path) -> None:
    (tmp_path / "eval_log.json").write_text("{}")
    result = CliRunner().invoke(app, ["import-logs", str(tmp_path), "-o", str(tmp_path / "out.json")])
    assert result.exit_code == 2
    assert "eval_log" in result.output and "error:" in result.output
    assert not (tmp_path / "out.json").exists()
