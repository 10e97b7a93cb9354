"""Shared fixtures: two tiny recorded runs (target and retain model), recorded once per session.

Tests run eager on one thread: the tiny models gain nothing from a second thread, and a spinning
OpenMP pool is very slow when other processes share the two cores.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(Path(__file__).resolve().parents[1] / ".inductor-cache"))
torch.set_num_threads(1)

from trajcache.record import ModelRequest, RecordRequest, record_run  # noqa: E402

LIMIT = 6  # items per split in the shared runs


@dataclass(frozen=True)
class TinyRuns:
    full: Path
    retain: Path


def record_small(out: Path, model: str = "tiny-full", **overrides: object) -> Path:
    """Record the embedded tofu suite (LIMIT items per split) eagerly into `out`."""
    options = {"limit": LIMIT, "compile": False, **overrides}
    request = RecordRequest(model=ModelRequest(model), out=out, **options)  # type: ignore[arg-type]
    return record_run(request).path


@pytest.fixture(scope="session")
def tiny_runs(tmp_path_factory: pytest.TempPathFactory) -> TinyRuns:
    root = tmp_path_factory.mktemp("runs")
    return TinyRuns(record_small(root / "full.zarr"), record_small(root / "retain.zarr", "tiny-retain"))
