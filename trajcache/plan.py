"""Planning a score: which metrics, bound to which splits and roles, reading which fields.

Resolves requested names (suite bindings, `metric@split`, or bare library metrics bound to every
split that can serve them) into `Bound` metrics, expands their dependencies into item-level tasks,
and checks up front that the run (and the reference) hold every split, role and field needed, so
a missing input is one clear message before any work starts.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .channels import KIND_FIELDS
from .errors import ConfigError, MissingInputError, UnknownMetricError
from .metrics.registry import Channel, ItemValues, MetricDef, get_metric, registered
from .suites import MetricBinding, SuiteConfig

# Role aliases of auto-bound library metrics (`--metrics probability@forget`).
DEFAULT_ROLES = {"target": "answer", "correct": "paraphrase", "perturbed": "perturbed"}

# Fields that only some recordings hold, and the `record` option that captures them.
FIELD_FLAGS = {
    "x0": "--temperature > 0 (at temperature 0 the proposal equals argmax)",
    "topk_ids": "--top-k K",
    "topk_logp": "--top-k K",
    "logits": "--capture-logits",
}


@dataclass(frozen=True)
class SplitInfo:
    """What a run holds for one split (from the store's split attrs)."""

    roles: tuple[str, ...]
    fields: frozenset[str]


@dataclass(frozen=True)
class Bound:
    """A suite binding (or an auto-binding) with its registered metric: one entry of the results."""

    binding: MetricBinding
    definition: MetricDef

    def spec(self) -> dict[str, Any]:
        b = self.binding
        return {**self.definition.spec(), "splits": dict(b.splits), "roles": dict(b.roles), "args": dict(b.args)}


@dataclass(frozen=True)
class ItemTask:
    """Per-item values of one item-level metric on one split of the run or the reference."""

    metric: str
    side: str  # "run" | "reference"
    split: str
    roles: tuple[tuple[str, str], ...]
    args: tuple[tuple[str, Any], ...]

    def role(self, alias: str | None) -> str | None:
        return None if alias is None else dict(self.roles).get(alias, alias)


def args_for(fn: Callable[..., Any], args: Mapping[str, Any]) -> dict[str, Any]:
    """The binding arguments `fn` takes (a binding's args may serve its inner metrics too)."""
    params = inspect.signature(fn).parameters
    return {k: v for k, v in args.items() if k in params}


def bind(names: Sequence[str] | None, suite: SuiteConfig, splits: Mapping[str, SplitInfo]) -> list[Bound]:
    """Resolve requested names; None means every suite metric."""
    requested = list(suite.metrics) if names is None else list(names)
    bound: list[Bound] = []
    for name in requested:
        bound.extend(_bind_one(name, suite, splits))
    return bound


def _bind_one(name: str, suite: SuiteConfig, splits: Mapping[str, SplitInfo]) -> list[Bound]:
    if name in suite.metrics:
        return [_from_binding(suite.metrics[name])]
    metric_name, _, split = name.partition("@")
    if metric_name not in registered():
        available = sorted(set(suite.metrics) | set(registered()))
        raise UnknownMetricError(f"metric {name!r} is unknown; available: {', '.join(available)}")
    definition = get_metric(metric_name)
    if definition.level != "item":
        raise ConfigError(f"metric {metric_name!r} combines splits; score it through a suite binding")
    targets = [split] if split else [s for s in splits if _servable(definition, splits[s])]
    if not targets:
        raise MissingInputError(f"metric {metric_name!r}: no recorded split has the roles it needs")
    return [
        Bound(MetricBinding(f"{metric_name}@{s}", metric_name, {"main": s}, _default_roles(definition, splits.get(s)), {}), definition)
        for s in targets
    ]


def _default_roles(definition: MetricDef, info: SplitInfo | None) -> dict[str, str]:
    roles = dict(DEFAULT_ROLES)
    if info is not None and "paraphrase" not in info.roles:
        roles["correct"] = "answer"  # real_authors / world_facts: the answer is the correct one
    aliases = {i.role for i in definition.inputs.values() if isinstance(i, Channel) and i.role}
    return {a: roles.get(a, a) for a in sorted(aliases)}


def _servable(definition: MetricDef, info: SplitInfo) -> bool:
    roles = _default_roles(definition, info)
    return all(_has_role(info.roles, r) for r in roles.values())


def _from_binding(binding: MetricBinding) -> Bound:
    definition = get_metric(binding.metric)
    return Bound(binding, definition)


def components(bound: Bound, suite: SuiteConfig, splits: Mapping[str, SplitInfo]) -> list[Bound]:
    """The bound metrics a composite metric combines (its `components` argument)."""
    names = bound.binding.args.get("components")
    if not isinstance(names, list) or not names:
        raise ConfigError(f"metric {bound.binding.name!r}: a composite metric needs args.components = [names]")
    return [b for n in names for b in _bind_one(n, suite, splits)]


def item_tasks(bound: Bound) -> list[ItemTask]:
    """Item-level computations a bound metric needs (itself, or the metrics it aggregates)."""
    d = bound.definition
    if d.level == "item":
        return [_task(d, bound, "run", bound.binding.splits.get("main", ""))]
    if d.level == "composite":
        return []
    tasks = []
    for inp in d.inputs.values():
        if not isinstance(inp, ItemValues):
            raise ConfigError(f"metric {d.name!r}: dataset-level inputs must be ItemValues")
        inner = get_metric(inp.metric)
        tasks.append(_task(inner, bound, inp.run, bound.binding.splits.get(inp.slot, "")))
    return tasks


def _task(definition: MetricDef, bound: Bound, side: str, split: str) -> ItemTask:
    if not split:
        raise ConfigError(f"metric {bound.binding.name!r}: no split bound to the slot {definition.name!r} reads")
    args = args_for(definition.fn, bound.binding.args)
    if definition.transform:
        args |= args_for(definition.transform, bound.binding.args)
    return ItemTask(definition.name, side, split, tuple(sorted(bound.binding.roles.items())), tuple(sorted(args.items())))


def needed_fields(task: ItemTask) -> set[str]:
    definition = get_metric(task.metric)
    fields: set[str] = set()
    for inp in definition.inputs.values():
        if isinstance(inp, Channel):
            fields.update(KIND_FIELDS[inp.kind])
            if inp.field:
                fields.add(inp.field)
    return fields


def check_inputs(task: ItemTask, splits: Mapping[str, SplitInfo], where: str) -> None:
    """Raise MissingInputError naming the split, role or field `task` needs and `where` lacks."""
    if task.split not in splits:
        raise MissingInputError(
            f"metric {task.metric!r} needs split {task.split!r}, which {where} does not hold "
            f"(it has {sorted(splits)}); record it with --splits {task.split}"
        )
    info = splits[task.split]
    for inp in get_metric(task.metric).inputs.values():
        role = task.role(inp.role) if isinstance(inp, Channel) else None
        if role is not None and not _has_role(info.roles, role):
            raise MissingInputError(
                f"metric {task.metric!r} needs role {role!r} of split {task.split!r}, which {where} lacks "
                f"(roles: {list(info.roles)}); its source needs that answer field"
            )
    missing = sorted(needed_fields(task) - info.fields)
    if missing:
        flags = "; ".join(f"{f}: record with {FIELD_FLAGS[f]}" for f in missing if f in FIELD_FLAGS)
        raise MissingInputError(
            f"metric {task.metric!r} needs field(s) {missing} of split {task.split!r}, not recorded in {where}"
            + (f" ({flags})" if flags else "")
        )


def _has_role(roles: Sequence[str], role: str) -> bool:
    return role in roles or any(r.startswith(role + "_") for r in roles)
