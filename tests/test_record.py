"""record: the store layout of DESIGN §5-6, the fingerprint cache, refusals, and resume after kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import zarr

from trajcache.errors import FingerprintMismatchError
from trajcache.record import ModelRequest, RecordRequest, find_cached_run, record_run
from trajcache.store import open_run

from .conftest import LIMIT, TinyRuns, record_small

REPO = Path(__file__).resolve().parents[1]


def test_plain_zarr_reads_the_design_layout(tiny_runs: TinyRuns) -> None:
    root = zarr.open_group(tiny_runs.full, mode="r")
    assert set(root.group_keys()) >= {"forget", "retain", "holdout", "real_authors", "world_facts"}
    meta = root.attrs["trajcache"]
    assert meta["schema"] == 1 and meta["complete"] and len(meta["fingerprint"]) == 64
    forget = root["forget"]
    s, length = forget.attrs["trajcache_split"]["S"], forget.attrs["trajcache_split"]["L"]
    expected = {
        "label_logp": ((LIMIT, s, length, 7), "float32"),
        "argmax": ((LIMIT, s, length), "int32"),
        "topk_ids": ((LIMIT, s, length, 8), "int32"),
        "topk_logp": ((LIMIT, s, length, 8), "float32"),
        "entropy": ((LIMIT, s, length), "float32"),
        "tokens": ((LIMIT, length), "int32"),
        "fixation": ((LIMIT, length), "int16"),
        "commits": ((LIMIT, s), "int16"),
        "eos_len": ((LIMIT,), "int32"),
        "prompt_len": ((LIMIT,), "int32"),
        "labels": ((LIMIT, 7, length), "int32"),
    }
    for name, (shape, dtype) in expected.items():
        assert (forget[name].shape, str(forget[name].dtype)) == (shape, dtype), name
    assert "x0" not in forget  # temperature 0: the proposal is the argmax
    labels, logp = forget["labels"][:], forget["label_logp"][:]
    assert (np.isnan(logp) == (labels.transpose(0, 2, 1)[:, None] < 0)).all()
    assert (forget["commits"][:].sum(-1) == length).all()
    assert root["holdout"]["label_logp"].shape[-1] == 1 and root["real_authors"]["labels"].shape[1] == 4


def test_cache_hit_samples_nothing_and_a_changed_input_misses(tmp_path: Path) -> None:
    request = RecordRequest(limit=2, splits=("forget",), cache_dir=tmp_path, compile=False)
    first = record_run(request)
    again = record_run(request)
    assert first.path.parent == tmp_path and not first.cache_hit
    assert again.cache_hit and again.sampled == 0 and again.path == first.path
    assert find_cached_run(request) == first.path
    changed = RecordRequest(limit=2, splits=("forget",), cache_dir=tmp_path, compile=False, sampler_overrides={"steps": 8})
    assert find_cached_run(changed) is None
    other_model = RecordRequest(ModelRequest("tiny-retain"), limit=2, splits=("forget",), cache_dir=tmp_path)
    assert find_cached_run(other_model) is None


def test_another_config_into_the_same_store_is_refused(tmp_path: Path) -> None:
    out = record_small(tmp_path / "run.zarr", splits=("forget",), limit=2)
    with pytest.raises(FingerprintMismatchError, match="--overwrite"):
        record_small(out, splits=("forget",), limit=2, sampler_overrides={"steps": 8})
    with pytest.raises(FingerprintMismatchError):
        record_small(out, "tiny-retain", splits=("forget",), limit=2)
    record_small(out, splits=("forget",), limit=2, sampler_overrides={"steps": 8}, overwrite=True)
    assert open_run(out).splits["forget"].attrs["S"] == 8


CHILD = textwrap.dedent("""
    import sys, time, torch
    torch.set_num_threads(1)
    from pathlib import Path
    from trajcache.record import RecordRequest, record_run
    def progress(split, done, total):
        print(split, done, flush=True)
        if done:
            time.sleep(30)  # parked after each shard: the parent kills us here
    record_run(RecordRequest(limit=6, splits=("forget",), out=Path(sys.argv[1]), compile=False, shard_size=2), progress)
""")


def test_kill_9_then_resume_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    out = tmp_path / "killed.zarr"
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(out)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    for line in child.stdout:
        if line.split() == ["forget", "2"]:  # the first shard is committed
            break
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    run = open_run(out)
    assert not run.complete and run.committed("forget").tolist() == [True, True, False, False, False, False]
    first_marker = run.marker("forget", 0)
    time.sleep(0.01)
    resumed = record_run(RecordRequest(limit=6, splits=("forget",), out=out, compile=False, shard_size=2))
    assert resumed.sampled == 4 and open_run(out).complete
    assert open_run(out).marker("forget", 0) == first_marker  # the committed shard was not rewritten
    whole = record_small(tmp_path / "whole.zarr", splits=("forget",), shard_size=2)
    a, b = zarr.open_group(out, mode="r")["forget"], zarr.open_group(whole, mode="r")["forget"]
    for name, array in a.arrays():
        np.testing.assert_array_equal(array[:], b[name][:], err_msg=name)


def test_round_mantissa_is_bfloat16_rounding() -> None:
    import torch

    from trajcache.record import round_mantissa

    rng = np.random.default_rng(0)
    values = np.concatenate([-rng.exponential(3.0, 5000), [0.0, -0.0, -np.inf, np.nan, -1e-30, -3.3895e38]]).astype(np.float32)
    want = torch.from_numpy(values).bfloat16().float().numpy()
    np.testing.assert_array_equal(round_mantissa(values, 7), want)
    assert round_mantissa(values, 23) is values


def test_stored_topk_logp_is_rounded_and_close(tiny_runs: TinyRuns) -> None:
    forget = zarr.open_group(tiny_runs.full, mode="r")["forget"]
    topk = forget["topk_logp"][:]
    assert ((topk.view(np.uint32) & 0xFFFF) == 0).all()  # bfloat16 precision (the default --topk-bits 7)
    top1 = topk[..., 0]
    exact = forget["label_logp"][:][..., 0]  # the answer's own log-prob is exact; where it is the argmax
    is_top = (forget["argmax"][:] == forget["labels"][:][:, None, 0, :])
    np.testing.assert_allclose(top1[is_top], exact[is_top], rtol=2**-8, atol=1e-7)
