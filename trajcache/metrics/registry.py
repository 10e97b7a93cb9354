"""The metric registry: `@metric` turns a pure function into a named, versioned, replayable metric.

A metric declares its inputs (channels of a split, or per-item values of another metric, or the
dataset values of other bound metrics) so that `score` can plan one read of the store for any set
of metrics. Only registered metrics can be scored, and the results record each one's name,
version and code hash, so a later replay is never confused with an earlier one.
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from ..errors import ConfigError, UnknownMetricError

Level = Literal["item", "dataset", "composite"]
RunSide = Literal["run", "reference"]

# Channels a metric can take from a split, computed once per chunk of items and shared by every
# metric that asks (see score/channels.py). Per-item shapes: V views, Y layouts, S steps, L positions.
CHANNEL_KINDS: dict[str, str] = {
    "nll": "(N, V, Y, S) mean NLL over the role's label positions in the view ((..., K) for a group)",
    "token_logp": "(N, V, Y, S, L) label log-prob; NaN outside the role's labels (EOS excluded) and view",
    "hits": "(N, V, Y, S, L) 1.0 where argmax equals the label, 0.0 where not, NaN where not counted",
    "rouge1": "(N, V, Y, S) ROUGE-1 recall of the predicted text against the role's text",
    "rougeL": "(N, V, Y, S) ROUGE-L recall of the predicted text against the role's text",
    "view_mask": "(N, V, L) bool: positions that count in each view",
    "layout": "field:<name>: (N, Y, S, L, ...) a per-step stored field read at each layout's source step",
    "raw": "field:<name>: the stored field as recorded, (N, ...)",
}


@dataclass(frozen=True)
class Channel:
    """An array computed from one split of a run; `role` may be an alias bound by the suite."""

    kind: str
    role: str | None = None
    slot: str = "main"
    run: RunSide = "run"
    field: str | None = None  # for kinds "layout" and "raw"

    def __post_init__(self) -> None:
        if self.kind not in CHANNEL_KINDS:
            raise ConfigError(f"channel kind {self.kind!r} is unknown; available: {sorted(CHANNEL_KINDS)}")
        if (self.kind in ("layout", "raw")) != (self.field is not None):
            raise ConfigError(f"channel kind {self.kind!r}: field= is required for layout/raw kinds only")


@dataclass(frozen=True)
class ItemValues:
    """The per-item values (N, V, Y, S) of an item-level metric on one split slot."""

    metric: str
    slot: str = "main"
    run: RunSide = "run"


Input = Channel | ItemValues


@dataclass(frozen=True)
class MetricDef:
    """A registered metric. `fn` is pure: arrays (and binding args) in, arrays out.

    level "item": fn returns per-item values (N, V, Y, S); the dataset value per (view, layout,
    step) is the NaN-aware mean over items of `transform(values, **args)`.
    level "dataset": fn returns (V, Y, S) directly from whole-split inputs.
    level "composite": fn(components=[(V, Y, S), ...]) combines other bound metrics' values.
    """

    name: str
    fn: Callable[..., np.ndarray]
    inputs: Mapping[str, Input]
    level: Level
    version: int
    transform: Callable[..., np.ndarray] | None = None
    # A metric whose reference inputs may be absent (fn then receives None for them) says here
    # what it does instead; the sentence goes into the results' warnings.
    without_reference: str = ""
    module: str = ""
    code: str = field(default="", compare=False)

    @property
    def reference_optional(self) -> bool:
        return bool(self.without_reference)

    def spec(self) -> dict[str, object]:
        """What the results record about this metric: enough to tell two code versions apart."""
        return {"metric": self.name, "version": self.version, "code": self.code, "module": self.module}


_REGISTRY: dict[str, MetricDef] = {}


def _code_hash(*fns: Callable[..., object] | None) -> str:
    digest = hashlib.sha256()
    for fn in fns:
        if fn is not None:
            digest.update(inspect.getsource(fn).encode())
    return digest.hexdigest()[:16]


def metric(
    name: str,
    *,
    inputs: Mapping[str, Input] | None = None,
    level: Level = "item",
    version: int = 1,
    transform: Callable[..., np.ndarray] | None = None,
    without_reference: str = "",
    replace: bool = False,
) -> Callable[[Callable[..., np.ndarray]], Callable[..., np.ndarray]]:
    """Register `fn` under `name`. A clash is an error unless `replace=True` says it is meant."""

    def register(fn: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
        if name in _REGISTRY and not replace:
            other = _REGISTRY[name].module
            raise ConfigError(f"metric {name!r} is already registered by {other}; pass replace=True to override it")
        declared = dict(inputs or {})
        params = set(inspect.signature(fn).parameters)
        missing = sorted(set(declared) - params) if level != "composite" else []
        if missing:
            raise ConfigError(f"metric {name!r}: inputs {missing} are not parameters of {fn.__qualname__}")
        _REGISTRY[name] = MetricDef(
            name=name,
            fn=fn,
            inputs=declared,
            level=level,
            version=version,
            transform=transform,
            without_reference=without_reference,
            module=fn.__module__,
            code=_code_hash(fn, transform),
        )
        return fn

    return register


def get_metric(name: str) -> MetricDef:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownMetricError(f"metric {name!r} is unknown; available: {', '.join(sorted(_REGISTRY))}") from None


def registered() -> dict[str, MetricDef]:
    """A copy of the registry, by name."""
    return dict(_REGISTRY)
