"""`score`: replay any set of metrics from a recorded run, coalesced into one read of the store.

Plans the union of what the requested metrics need (plan.py), reads each needed field once per
chunk of items, computes shared channels once per chunk (channels.py), runs every item-level
metric on them, then the dataset-level and composite metrics. No model and no GPU are touched.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from . import metrics as _library  # noqa: F401  (registers the library metrics)
from .channels import Chunk, TextRules
from .errors import ConfigError, MissingInputError
from .metrics.aggregate import distribution, mean_over_items
from .metrics.registry import Channel, get_metric
from .plan import Bound, ItemTask, SplitInfo, args_for, bind, check_inputs, components, item_tasks, needed_fields
from .results import MetricResult, Results
from .store import Run, open_run
from .suites import SuiteConfig
from .tokenizer_files import load_tokenizer
from .trajectories import LAYOUTS, VIEWS

Progress = Callable[[str, int, int], None]  # (what, done, total)


@dataclass(frozen=True)
class ScoreRequest:
    run: Path
    metrics: tuple[str, ...] | None = None  # None: every metric of the suite
    reference: Path | None = None
    plugins: tuple[Path, ...] = ()
    per_item: bool = False
    suite: SuiteConfig | None = None  # None: the suite the run was recorded with
    chunk_items: int = 64


@dataclass
class _Side:
    """One opened run (the run or the reference) and the per-item values computed on it."""

    name: str  # "run" | "reference", as in ItemTask.side
    run: Run
    values: dict[ItemTask, np.ndarray] = field(default_factory=dict)

    @cached_property
    def tokenizer(self) -> Any:
        return load_tokenizer(self.run.read_asset("tokenizer"))

    @property
    def splits(self) -> dict[str, SplitInfo]:
        return {
            name: SplitInfo(tuple(info.attrs["roles"]), frozenset(f.name for f in info.fields))
            for name, info in self.run.splits.items()
        }


def load_plugins(paths: Sequence[Path]) -> None:
    """Import user modules whose `@metric` decorators register metrics."""
    for path in paths:
        if not path.is_file():
            raise ConfigError(f"plugin {path} does not exist")
        name = f"trajcache_plugin_{path.stem}"
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise ConfigError(f"plugin {path} is not an importable Python file")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)


def score_run(request: ScoreRequest, progress: Progress | None = None) -> Results:
    load_plugins(request.plugins)
    run = _Side("run", open_run(request.run))
    ref = _Side("reference", open_run(request.reference)) if request.reference else None
    suite = request.suite or SuiteConfig.from_dict(run.run.provenance["suite"])
    requested = bind(request.metrics, suite, run.splits)
    every = _with_components(requested, suite, run.splits)
    warnings: list[str] = []
    skipped: dict[str, str] = {}
    every, tasks = _plan_tasks(every, run, ref, request.metrics is not None, warnings, skipped)
    for side in (run, ref):
        if side is not None:
            _compute_side(side, [t for t in tasks if t.side == side.name], request.chunk_items, progress)
    values: dict[str, MetricResult] = {}
    for bound in every:
        values[bound.binding.name] = _result(bound, run, ref, values, request.per_item)
    steps = int(next(iter(run.run.splits.values())).attrs["S"])
    reference = {"path": str(request.reference), "fingerprint": ref.run.fingerprint} if ref else None
    metrics = {b.binding.name: values[b.binding.name] for b in requested if b.binding.name in values}
    return Results({"path": str(request.run), "fingerprint": run.run.fingerprint}, reference, steps, metrics, tuple(warnings), skipped)


def _with_components(requested: list[Bound], suite: SuiteConfig, splits: Mapping[str, SplitInfo]) -> list[Bound]:
    """Requested metrics preceded by the components composites need (each computed once)."""
    ordered: dict[str, Bound] = {}
    for bound in requested:
        if bound.definition.level == "composite":
            for part in components(bound, suite, splits):
                ordered.setdefault(part.binding.name, part)
        ordered.setdefault(bound.binding.name, bound)
    return list(ordered.values())


def _plan_tasks(bounds: Sequence[Bound], run: _Side, ref: _Side | None, strict: bool, warnings: list[str], skipped: dict[str, str]) -> tuple[list[Bound], list[ItemTask]]:
    """Item tasks of every bound metric. Unless `strict`, a metric whose inputs are missing is
    skipped with its reason (reported in the results), and so is a composite that needs it."""
    kept: list[Bound] = []
    tasks: dict[ItemTask, None] = {}
    for bound in bounds:
        try:
            mine = _bound_tasks(bound, run, ref, skipped)
        except MissingInputError as exc:
            if strict:
                raise
            skipped[bound.binding.name] = str(exc)
            continue
        kept.append(bound)
        tasks.update(dict.fromkeys(mine))
        if bound.definition.reference_optional and ref is None:
            warnings.append(f"{bound.binding.name}: no --reference given; {bound.definition.without_reference}")
    if ref is not None:
        _check_reference(run, ref, {t.split for t in tasks if t.side == "reference"})
    return kept, list(tasks)


def _bound_tasks(bound: Bound, run: _Side, ref: _Side | None, skipped: Mapping[str, str]) -> list[ItemTask]:
    if bound.definition.level == "composite":
        missing = [n for n in bound.binding.args["components"] if n in skipped]
        if missing:
            raise MissingInputError(f"metric {bound.binding.name!r} needs {missing}, which could not be computed")
    tasks = []
    for task in item_tasks(bound):
        if task.side == "reference" and ref is None:
            if not bound.definition.reference_optional:
                raise MissingInputError(f"metric {bound.binding.name!r} needs a reference run: pass --reference RETAIN_RUN")
            continue
        side = run if task.side == "run" else ref
        assert side is not None
        check_inputs(task, side.splits, "the reference run" if side is ref else "the run")
        tasks.append(task)
    return tasks


def _check_reference(run: _Side, ref: _Side, splits: set[str]) -> None:
    """Refuse a reference whose items or sampler differ from the run's, saying what differs."""
    for split in sorted(splits):
        if split not in run.run.splits:
            continue
        mine, theirs = run.run.splits[split].attrs, ref.run.splits[split].attrs
        if mine["item_hashes"] != theirs["item_hashes"]:
            raise MissingInputError(f"the reference run's split {split!r} holds other items than the run's ({len(theirs['item_hashes'])} vs {len(mine['item_hashes'])} items, or different texts)")
        diff = sorted(k for k in set(mine["sampler"]) | set(theirs["sampler"]) if mine["sampler"].get(k) != theirs["sampler"].get(k))
        if diff:
            detail = ", ".join(f"{k}: {mine['sampler'].get(k)!r} vs {theirs['sampler'].get(k)!r}" for k in diff)
            raise MissingInputError(f"the reference run's split {split!r} was sampled with another config ({detail})")


def _text_rules(side: _Side, split: str) -> TextRules:
    attrs = side.run.splits[split].attrs
    eos = side.tokenizer.decode([attrs["eos_id"]], skip_special_tokens=True)
    return TextRules(side.tokenizer, eos, frozenset({int(attrs["mask_id"])}))


def _compute_side(side: _Side, tasks: Sequence[ItemTask], chunk_items: int, progress: Progress | None) -> None:
    by_split: dict[str, list[ItemTask]] = {}
    for task in tasks:
        by_split.setdefault(task.split, []).append(task)
    for split, split_tasks in by_split.items():
        info = side.run.splits[split]
        fields = set().union(*(needed_fields(t) for t in split_tasks))
        wants_text = any(i.kind in ("rouge1", "rougeL") for t in split_tasks for i in get_metric(t.metric).inputs.values() if isinstance(i, Channel))
        if wants_text and "x0" in {f.name for f in info.fields}:
            fields.add("x0")
        text = _text_rules(side, split) if wants_text else None
        n, steps = info.n_items, int(info.attrs["S"])
        out = {t: np.full((n, len(VIEWS), len(LAYOUTS), steps), np.nan) for t in split_tasks}
        for start in range(0, n, chunk_items):
            rows = slice(start, min(n, start + chunk_items))
            tables = {f: side.run.read(split, f, rows) for f in sorted(fields)}
            chunk = Chunk(tables, tuple(info.attrs["roles"]), steps, text)
            for task in split_tasks:
                out[task][rows] = _item_values(task, chunk, rows.stop - rows.start, steps)
            if progress:
                progress(split if side.name == "run" else f"{split} (reference)", rows.stop, n)
        side.values.update(out)


def _item_values(task: ItemTask, chunk: Chunk, n: int, steps: int) -> np.ndarray:
    definition = get_metric(task.metric)
    inputs = {
        name: chunk.channel(inp.kind, task.role(inp.role), inp.field)
        for name, inp in definition.inputs.items()
        if isinstance(inp, Channel)
    }
    values = np.asarray(definition.fn(**inputs, **args_for(definition.fn, dict(task.args))), dtype=np.float64)
    expected = (n, len(VIEWS), len(LAYOUTS), steps)
    if values.shape != expected:
        raise ConfigError(f"metric {task.metric!r} returned shape {values.shape}; per-item metrics return (items, views, layouts, steps) = {expected}")
    return values


def _result(bound: Bound, run: _Side, ref: _Side | None, done: Mapping[str, MetricResult], per_item: bool) -> MetricResult:
    d = bound.definition
    if d.level == "composite":
        parts = [done[name].values for name in bound.binding.args["components"]]
        return MetricResult(bound.binding.name, bound.spec(), np.asarray(d.fn(components=parts), dtype=np.float64))
    tasks = item_tasks(bound)
    if d.level == "dataset":
        inputs = _dataset_inputs(bound, tasks, run, ref)
        values = d.fn(**inputs, **args_for(d.fn, bound.binding.args))
        return MetricResult(bound.binding.name, bound.spec(), np.asarray(values, dtype=np.float64))
    items = run.values[tasks[0]]
    shown = d.transform(items, **args_for(d.transform, dict(tasks[0].args))) if d.transform else items
    ids = list(run.run.splits[tasks[0].split].attrs["item_ids"])
    return MetricResult(bound.binding.name, bound.spec(), mean_over_items(shown), distribution(shown), (ids, shown) if per_item else None)


def _dataset_inputs(bound: Bound, tasks: Sequence[ItemTask], run: _Side, ref: _Side | None) -> dict[str, Any]:
    inputs: dict[str, Any] = {}
    for (param, inp), task in zip(bound.definition.inputs.items(), tasks):
        side = run if inp.run == "run" else ref
        inputs[param] = None if side is None else side.values[task]
    return inputs
