"""Record the whole embedded tofu suite and report time and storage, side by side in one process.

    python benchmarks/bench_record.py [--models tiny-full,tiny-retain] [--compile] [--threads 2]

For each model: wall time of `record_run` (eager; with --compile also compiled, and the two runs'
tokens compared), items/s, and bytes per item on disk vs raw (uncompressed tables) vs what full
float16 logits [S, L, V] would take for the same run.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import zarr

from trajcache.record import ModelRequest, RecordRequest, record_run
from trajcache.store import describe_run, open_run


def record(model: str, out: Path, compile: bool) -> tuple[float, int]:
    started = time.perf_counter()
    summary = record_run(RecordRequest(ModelRequest(model), out=out, compile=compile))
    return time.perf_counter() - started, summary.sampled


def storage(path: Path) -> dict[str, float]:
    run, info = open_run(path), describe_run(path)
    items = sum(s.n_items for s in run.splits.values())
    logits = 0
    for layout in run.splits.values():
        logits += layout.n_items * layout.attrs["S"] * layout.attrs["L"] * layout.attrs["V"] * 2
    raw = sum(split["bytes_raw"] for split in info["splits"].values())
    return {"items": items, "disk": info["bytes_on_disk"] / items, "raw": raw / items, "logits": logits / items}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default="tiny-full,tiny-retain")
    parser.add_argument("--compile", action="store_true", help="also record compiled and compare")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models.split(","):
            eager_path = Path(tmp) / f"{model}-eager.zarr"
            seconds, items = record(model, eager_path, compile=False)
            print(f"{model}: eager    {seconds:7.1f} s  {items} items  {items / seconds:6.1f} items/s")
            if args.compile:
                compiled_path = Path(tmp) / f"{model}-compiled.zarr"
                seconds_c, _ = record(model, compiled_path, compile=True)
                same = all(
                    np.array_equal(zarr.open_group(eager_path)[s]["tokens"][:], zarr.open_group(compiled_path)[s]["tokens"][:])
                    for s in open_run(eager_path).splits
                )
                print(f"{model}: compiled {seconds_c:7.1f} s  (eager/compiled {seconds / seconds_c:.2f}x; tokens identical: {same})")
            st = storage(eager_path)
            print(
                f"{model}: per item {st['disk'] / 1024:.1f} KiB on disk, {st['raw'] / 1024:.1f} KiB raw "
                f"({st['raw'] / st['disk']:.2f}x compression), full fp16 logits {st['logits'] / 2**20:.2f} MiB "
                f"-> stored/logits = 1/{st['logits'] / st['disk']:.0f}"
            )
    print(f"threads={args.threads} cores={os.cpu_count()} torch={torch.__version__}")


if __name__ == "__main__":
    main()
