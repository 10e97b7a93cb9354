"""The CLI: thin commands, one-line errors with exit 2, exit 1 for a failed verify."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from cli.main import app

from .conftest import TinyRuns

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()


def _error_line(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_entry_point_lists_the_commands() -> None:
    out = subprocess.run([sys.executable, "-m", "cli", "--help"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    for command in ("record", "score", "info", "verify", "compare", "import-logs", "plot"):
        assert command in out


def test_bad_flag_value_is_one_line_and_exit_2(tmp_path: Path) -> None:
    result = runner.invoke(app, ["record", "--remasking", "fancy", "--limit", "1", "--out", str(tmp_path / "r.zarr")])
    assert result.exit_code == 2
    assert "--remasking 'fancy' is unknown" in _error_line(result)
    assert not (tmp_path / "r.zarr").exists()


def test_labels_longer_than_the_canvas_are_refused_before_any_store(tmp_path: Path) -> None:
    out = tmp_path / "r.zarr"
    result = runner.invoke(app, ["record", "--gen-length", "8", "--block-length", "8", "--steps", "8", "--limit", "1", "--out", str(out), "--no-compile"])
    assert result.exit_code == 2 and "more than --gen-length 8; raise --gen-length" in _error_line(result)
    assert not out.exists()


def test_malformed_dataset_row_names_file_row_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "forget.json"
    bad.write_text('{"question": "Q?", "answer": "A.", "paraphrased_answer": "P.", "perturbed_answer": ["x"]}\n{"question": "Q2?"}\n')
    result = runner.invoke(app, ["record", "--splits", "forget", "--data", f"forget={bad}", "--out", str(tmp_path / "r.zarr")])
    assert result.exit_code == 2
    line = _error_line(result)
    assert str(bad) in line and "line 2" in line and "answer" in line
    assert not (tmp_path / "r.zarr").exists()


def test_score_of_a_missing_run(tmp_path: Path) -> None:
    result = runner.invoke(app, ["score", str(tmp_path / "nope.zarr")])
    assert result.exit_code == 2 and "no run at" in _error_line(result)


def test_score_writes_results_and_refuses_to_overwrite(tiny_runs: TinyRuns, tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    args = ["score", str(tiny_runs.full), "--metrics", "forget_Q_A_ROUGE,forget_truth_ratio", "-o", str(out)]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    data = json.loads(out.read_text())
    assert set(data["metrics"]) == {"forget_Q_A_ROUGE", "forget_truth_ratio"}
    assert data["run"]["fingerprint"] and len(data["metrics"]["forget_Q_A_ROUGE"]["values"]["eos"]["fixation_end"]) == data["steps"]
    again = runner.invoke(app, args)
    assert again.exit_code == 2 and "--overwrite" in _error_line(again)
    assert runner.invoke(app, [*args, "--overwrite"]).exit_code == 0


def test_info_and_verify(tiny_runs: TinyRuns, tmp_path: Path) -> None:
    info = runner.invoke(app, ["info", str(tiny_runs.full), "--json"])
    assert info.exit_code == 0
    assert json.loads(info.stdout)["complete"] is True
    assert runner.invoke(app, ["verify", str(tiny_runs.full)]).exit_code == 0
    copy = tmp_path / "copy.zarr"
    shutil.copytree(tiny_runs.full, copy)
    chunk = next((copy / "forget" / "label_logp" / "c").rglob("*"), None)
    while chunk is not None and chunk.is_dir():
        chunk = next(chunk.iterdir())
    assert chunk is not None
    data = bytearray(chunk.read_bytes())
    data[len(data) // 3] ^= 0xFF
    chunk.write_bytes(bytes(data))
    result = runner.invoke(app, ["verify", str(copy)])
    assert result.exit_code == 1 and "split 'forget' shard 0 field label_logp" in result.stderr
