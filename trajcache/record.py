"""`record`: items + model -> sampler -> one zarr run, resumable and cached by fingerprint.

Owns the glue only: which items, which fields, where the run goes, what its fingerprint is. The
sampler knows nothing of stores and the store knows nothing of samplers.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .config import CaptureConfig, SamplerConfig
from .data import EncodedItem, Split, encode_split
from .errors import ConfigError
from .fingerprint import fingerprint, item_seed
from .models import DiffusionModel, load_model, load_sampler_preset
from .sampler import Sampler
from .store import FieldSpec, RunWriter, SplitLayout, create_run, open_run
from .suites import SuiteConfig, load_splits, load_suite
from .tokenizer_files import tokenizer_files

Progress = Callable[[str, int, int], None]  # (split, items done, items total)


@dataclass(frozen=True)
class ModelRequest:
    """How to load the model (flags of `record`)."""

    source: str = "tiny-full"
    preset: str | None = None
    mask_token_id: int | None = None
    alignment: str | None = None
    dtype: str = "float32"
    device: str = "cpu"
    trust_remote_code: bool = False


@dataclass(frozen=True)
class RecordRequest:
    """Everything `trajcache record` needs; sampler flags left None come from the model's preset."""

    model: ModelRequest = field(default_factory=ModelRequest)
    suite: str = "tofu"
    sources: dict[str, str] = field(default_factory=dict)
    splits: tuple[str, ...] | None = None
    limit: int | None = None
    sampler_overrides: dict[str, Any] = field(default_factory=dict)
    capture: CaptureConfig = field(default_factory=CaptureConfig)
    out: Path | None = None
    cache_dir: Path | None = None
    batch_size: int = 8
    compile: bool = True
    overwrite: bool = False
    shard_size: int = 32


@dataclass(frozen=True)
class RecordSummary:
    path: Path
    fingerprint: str
    cache_hit: bool
    items: dict[str, int]
    sampled: int
    seconds: float


def default_cache_dir() -> Path:
    """$TRAJCACHE_HOME, else ./runs."""
    return Path(os.environ.get("TRAJCACHE_HOME", "runs"))


def run_identity(model: DiffusionModel, sampler: SamplerConfig, capture: CaptureConfig, splits: Sequence[Split]) -> dict[str, Any]:
    """What produced the bytes of a run (see fingerprint.py)."""
    return {
        "model": model.identity(),
        "sampler": sampler.to_dict(),
        "capture": capture.to_dict(),
        "device_type": model.device.type,
        "splits": {s.name: {"roles": list(s.roles), "items": [i.content_hash() for i in s.items]} for s in splits},
    }


def cached_run_path(cache_dir: Path, model_source: str, suite: str, fp: str) -> Path:
    """<cache>/<model>__<suite>__<fingerprint[:12]>.zarr, names made filesystem-safe."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in Path(model_source).name or model_source)
    return cache_dir / f"{safe}__{suite}__{fp[:12]}.zarr"


def _labels(encoded: Sequence[EncodedItem], roles: Sequence[str], length: int) -> np.ndarray:
    """(N, J, L) int32 label ids per role aligned at generated position 0; -1 where none."""
    out = np.full((len(encoded), len(roles), length), -1, dtype=np.int32)
    for n, item in enumerate(encoded):
        for j, role in enumerate(roles):
            ids = item.labels[role]
            if len(ids) > length:
                raise ConfigError(
                    f"item {item.item.id}: the {role!r} label has {len(ids)} tokens, more than "
                    f"--gen-length {length}; raise --gen-length"
                )
            out[n, j, : len(ids)] = ids
    return out


def split_fields(sampler: SamplerConfig, capture: CaptureConfig, roles: int, vocab: int) -> tuple[FieldSpec, ...]:
    """The stored fields of DESIGN §5 for one split."""
    s, length, k = sampler.steps, sampler.gen_length, capture.top_k
    specs = [
        FieldSpec("label_logp", "float32", (s, length, roles)),
        FieldSpec("argmax", "int32", (s, length)),
        FieldSpec("entropy", "float32", (s, length)),
        FieldSpec("tokens", "int32", (length,)),
        FieldSpec("fixation", "int16", (length,)),
        FieldSpec("commits", "int16", (s,)),
        FieldSpec("eos_len", "int32", ()),
        FieldSpec("prompt_len", "int32", ()),
        FieldSpec("labels", "int32", (roles, length)),
    ]
    if sampler.temperature > 0:
        specs.append(FieldSpec("x0", "int32", (s, length)))
    if k > 0:
        specs += [FieldSpec("topk_ids", "int32", (s, length, k)), FieldSpec("topk_logp", "float32", (s, length, k))]
    if capture.logits:
        specs.append(FieldSpec("logits", "float16", (s, length, vocab)))
    return tuple(specs)


def _split_layout(split: Split, sampler: SamplerConfig, capture: CaptureConfig, model: DiffusionModel, shard_size: int) -> SplitLayout:
    vocab, mask_id, eos_id = model.vocab_size, model.mask_id, model.eos_id
    attrs = {
        "item_ids": [i.id for i in split.items],
        "item_hashes": [i.content_hash() for i in split.items],
        "roles": list(split.roles),
        "source": split.source,
        "S": sampler.steps,
        "L": sampler.gen_length,
        "J": len(split.roles),
        "K": capture.top_k,
        "V": vocab,
        "sampler": sampler.to_dict(),
        "capture": capture.to_dict(),
        "mask_id": mask_id,
        "eos_id": eos_id,
    }
    fields_ = split_fields(sampler, capture, len(split.roles), vocab)
    return SplitLayout(split.name, len(split.items), fields_, attrs, shard_size)


@dataclass(frozen=True)
class _SplitInputs:
    """A split's sampler inputs, all validated before the store is created (no half-written runs)."""

    split: Split
    encoded: list[EncodedItem]
    labels: np.ndarray  # (N, J, L) int32
    seeds: np.ndarray  # (N,) int64
    target: int | None  # label row written at chosen positions in guided mode


def _split_inputs(split: Split, encoded: list[EncodedItem], config: SamplerConfig) -> _SplitInputs:
    labels = _labels(encoded, split.roles, config.gen_length)
    seeds = np.array([item_seed(config.seed, i.id) for i in split.items], dtype=np.int64)
    target = None
    if config.mode == "guided":
        if config.target_role not in split.roles:
            raise ConfigError(f"--target-role {config.target_role!r} is not a role of split {split.name!r}; roles: {list(split.roles)}")
        target = split.roles.index(config.target_role)
    return _SplitInputs(split, encoded, labels, seeds, target)


def round_mantissa(values: np.ndarray, bits: int) -> np.ndarray:
    """float32 values rounded to `bits` mantissa bits, to nearest, ties to even (bits = 7 gives
    exactly torch's bfloat16 rounding). The stored dtype and codecs stay plain float32; the zeroed
    low bits are what makes the values compress."""
    drop = 23 - bits
    if drop == 0:
        return values
    raw = values.astype(np.float32).view(np.uint32).astype(np.uint64)
    half = (1 << (drop - 1)) - 1 + ((raw >> drop) & 1)  # round half to even
    rounded = ((raw + half) >> drop) << drop
    keep = np.isnan(values)  # NaN payloads stay NaN
    return np.where(keep, values, rounded.astype(np.uint32).view(np.float32))


def _record_shard(sampler: Sampler, inputs: _SplitInputs, rows: range, batch_size: int) -> dict[str, np.ndarray]:
    """Sample one shard's items in batches and stack the tables (first axis = shard items)."""
    parts: list[dict[str, np.ndarray]] = []
    for start in range(rows.start, rows.stop, batch_size):
        batch = slice(start, min(start + batch_size, rows.stop))
        prompts = [e.prompt_ids for e in inputs.encoded[batch]]
        targets = inputs.labels[batch, inputs.target] if inputs.target is not None else None
        tables = sampler.run(prompts, inputs.labels[batch], inputs.seeds[batch], targets)
        tables["labels"] = inputs.labels[batch]
        if "topk_logp" in tables:
            tables["topk_logp"] = round_mantissa(tables["topk_logp"], sampler.capture.topk_bits)
        parts.append(tables)
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


def _record_split(writer: RunWriter, sampler: Sampler, inputs: _SplitInputs, batch_size: int, progress: Progress | None) -> int:
    """Sample and commit every pending shard of one split; returns the number of items sampled."""
    name, total = inputs.split.name, len(inputs.encoded)
    pending = {k: writer.shard_items(name, k) for k in writer.pending_shards(name)}
    done = total - sum(len(rows) for rows in pending.values())
    if progress:
        progress(name, done, total)
    for shard, rows in pending.items():
        writer.write_shard(name, shard, _record_shard(sampler, inputs, rows, batch_size))
        done += len(rows)
        if progress:
            progress(name, done, total)
    return sum(len(rows) for rows in pending.values())


def resolve_inputs(request: RecordRequest) -> tuple[SuiteConfig, list[Split], DiffusionModel, SamplerConfig]:
    """Load suite, splits, model and the effective sampler config (preset + flags)."""
    suite = load_suite(request.suite, request.sources)
    splits = load_splits(suite, request.splits, request.limit)
    m = request.model
    model = load_model(
        m.source, preset=m.preset, mask_token_id=m.mask_token_id, alignment=m.alignment,
        dtype=m.dtype, device=m.device, trust_remote_code=m.trust_remote_code,
    )
    base = load_sampler_preset(model.preset.sampler)
    config = replace(base, **request.sampler_overrides) if request.sampler_overrides else base
    return suite, splits, model, config


@dataclass(frozen=True)
class _Plan:
    suite: SuiteConfig
    splits: list[Split]
    model: DiffusionModel
    config: SamplerConfig
    fingerprint: str
    path: Path


def _plan(request: RecordRequest) -> _Plan:
    suite, splits, model, config = resolve_inputs(request)
    fp = fingerprint(run_identity(model, config, request.capture, splits))
    cache_dir = request.cache_dir or default_cache_dir()
    path = request.out or cached_run_path(cache_dir, request.model.source, suite.name, fp)
    return _Plan(suite, splits, model, config, fp, path)


def find_cached_run(request: RecordRequest) -> Path | None:
    """The complete cached run for exactly these inputs, if any (fingerprint match, never by name)."""
    plan = _plan(request)
    return plan.path if plan.path.exists() and _is_complete(plan.path, plan.fingerprint) else None


def record_run(request: RecordRequest, progress: Progress | None = None) -> RecordSummary:
    """Record (or resume, or find in the cache) the run for `request`."""
    started = time.perf_counter()
    plan = _plan(request)
    model, config = plan.model, plan.config
    items = {s.name: len(s.items) for s in plan.splits}
    if not request.overwrite and plan.path.exists() and _is_complete(plan.path, plan.fingerprint):
        return RecordSummary(plan.path, plan.fingerprint, True, items, 0, 0.0)
    inputs = [_split_inputs(s, encode_split(s, model.tokenizer, plan.suite.prompt_template), config) for s in plan.splits]
    sampler = Sampler(model, config, request.capture, compile=request.compile, batch_size=request.batch_size)
    layouts = [_split_layout(i.split, config, request.capture, model, request.shard_size) for i in inputs]
    writer = create_run(plan.path, plan.fingerprint, _provenance(request, plan.suite, model, config), layouts, overwrite=request.overwrite)
    writer.write_asset("tokenizer", tokenizer_files(model.tokenizer))
    sampled = sum(_record_split(writer, sampler, i, request.batch_size, progress) for i in inputs)
    writer.finalize()
    return RecordSummary(plan.path, plan.fingerprint, False, items, sampled, time.perf_counter() - started)


def _is_complete(path: Path, fp: str) -> bool:
    run = open_run(path)
    return run.complete and run.fingerprint == fp


def _provenance(request: RecordRequest, suite: SuiteConfig, model: DiffusionModel, config: SamplerConfig) -> dict[str, Any]:
    return {
        "model": {"source": request.model.source, **model.identity()},
        "suite": suite.to_dict(),
        "sampler": config.to_dict(),
        "capture": request.capture.to_dict(),
        "batch_size": request.batch_size,
        "compile": request.compile,
        "host": platform.node(),
        "python": platform.python_version(),
        "trajcache": __version__,
    }
