"""Evaluation suites: which splits to read, from where, with which roles, and which metrics they bind.

A suite is a TOML file (`configs/suites/<name>.toml` or any path). This module parses and
validates its structure; what a metric binding means (its `metric`, split slots, role aliases and
`args`) is the scorer's business.
"""

from __future__ import annotations

import importlib.resources
import string
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .data import HF_PREFIX, ROLE_GROUPS, Split, check_role_groups, read_split
from .errors import ConfigError

EMBEDDED_PREFIX = "embedded:"


@dataclass(frozen=True)
class SplitSpec:
    """A split of a suite: its source (path, `embedded:<file>` or `hf:<repo>[:<config>]`) and roles."""

    name: str
    source: str
    roles: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.name or not self.source:
            raise ConfigError(f"split {self.name!r}: name and source must be non-empty; got source={self.source!r}")
        if tuple(self.roles) != check_role_groups(self.roles, f"split {self.name!r}"):
            raise ConfigError(f"split {self.name!r}: roles {list(self.roles)} must be in the order {list(ROLE_GROUPS)}")

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "roles": list(self.roles)}

    @classmethod
    def from_dict(cls, name: str, data: dict[str, Any]) -> SplitSpec:
        _reject_unknown(f"split {name!r}", data, ("source", "roles"))
        return cls(name=name, source=data.get("source", ""), roles=tuple(data.get("roles", ())))


@dataclass(frozen=True)
class MetricBinding:
    """A named metric of a suite: the metric function, its split slots, role aliases and arguments."""

    name: str
    metric: str
    # slot -> split name, e.g. {"members": "forget", "nonmembers": "holdout"}; empty for metrics of metrics.
    splits: dict[str, str]
    # alias -> role group, e.g. {"correct": "paraphrase", "perturbed": "perturbed"}.
    roles: dict[str, str]
    args: dict[str, Any]

    def __post_init__(self) -> None:
        if not self.metric:
            raise ConfigError(f"metric binding {self.name!r}: 'metric' must name a metric function")
        for kind, mapping in (("splits", self.splits), ("roles", self.roles)):
            if not all(isinstance(k, str) and isinstance(v, str) and v for k, v in mapping.items()):
                raise ConfigError(f"metric binding {self.name!r}: {kind} must map names to names; got {mapping}")
        unknown = sorted(set(self.roles.values()) - set(ROLE_GROUPS))
        if unknown:
            raise ConfigError(
                f"metric binding {self.name!r}: roles {unknown} are unknown; use role groups {list(ROLE_GROUPS)}"
            )

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "splits": dict(self.splits), "roles": dict(self.roles), "args": dict(self.args)}

    @classmethod
    def from_dict(cls, name: str, data: dict[str, Any]) -> MetricBinding:
        _reject_unknown(f"metric binding {name!r}", data, ("metric", "splits", "roles", "args"))
        return cls(
            name=name,
            metric=data.get("metric", ""),
            splits=dict(data.get("splits", {})),
            roles=dict(data.get("roles", {})),
            args=dict(data.get("args", {})),
        )


@dataclass(frozen=True)
class SuiteConfig:
    """Splits and metric bindings of one evaluation suite (DESIGN §3)."""

    name: str
    # Used only when the tokenizer has no chat template; `{question}` is the only field.
    prompt_template: str | None
    splits: dict[str, SplitSpec]
    metrics: dict[str, MetricBinding]

    def __post_init__(self) -> None:
        if not self.name:
            raise ConfigError("a suite needs a non-empty name")
        if not self.splits:
            raise ConfigError(f"suite {self.name!r} defines no splits; add a [splits.<name>] table")
        if self.prompt_template is not None:
            _check_template(self.name, self.prompt_template)
        for binding in self.metrics.values():
            self._check_binding(binding)

    def _check_binding(self, binding: MetricBinding) -> None:
        for slot, split in binding.splits.items():
            if split not in self.splits:
                raise ConfigError(
                    f"suite {self.name!r}: metric {binding.name!r} slot {slot!r} names split {split!r}, "
                    f"which the suite does not define; available: {sorted(self.splits)}"
                )
            missing = sorted(set(binding.roles.values()) - set(self.splits[split].roles))
            if missing:
                raise ConfigError(
                    f"suite {self.name!r}: metric {binding.name!r} needs roles {missing} that split {split!r} "
                    f"does not require; add them to the split's roles"
                )

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name}
        if self.prompt_template is not None:
            data["prompt_template"] = self.prompt_template
        data["splits"] = {name: spec.to_dict() for name, spec in self.splits.items()}
        data["metrics"] = {name: binding.to_dict() for name, binding in self.metrics.items()}
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SuiteConfig:
        _reject_unknown(f"suite {data.get('name')!r}", data, ("name", "prompt_template", "splits", "metrics"))
        for key in ("splits", "metrics"):
            if not isinstance(data.get(key, {}), dict):
                raise ConfigError(f"suite {data.get('name')!r}: {key} must be a table of tables")
        return cls(
            name=data.get("name", ""),
            prompt_template=data.get("prompt_template"),
            splits={name: SplitSpec.from_dict(name, spec) for name, spec in data.get("splits", {}).items()},
            metrics={name: MetricBinding.from_dict(name, b) for name, b in data.get("metrics", {}).items()},
        )


def _reject_unknown(where: str, data: Any, known: tuple[str, ...]) -> None:
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a table with keys {list(known)}, got {type(data).__name__}")
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(f"{where}: unknown keys {unknown}; known: {list(known)}")


def _check_template(suite: str, template: str) -> None:
    fields = {field for _, field, _, _ in string.Formatter().parse(template) if field is not None}
    if fields != {"question"}:
        raise ConfigError(
            f"suite {suite!r}: prompt_template must use exactly the field {{question}}; got fields {sorted(fields)}"
        )


def preset_names(kind: str) -> list[str]:
    """Names of the packaged presets of a kind (`suites`, `models`, `samplers`)."""
    folder = importlib.resources.files("configs") / kind
    return sorted(p.name.removesuffix(".toml") for p in folder.iterdir() if p.name.endswith(".toml"))


def read_preset(kind: str, name_or_path: str) -> tuple[str, dict[str, Any]]:
    """(name, table) of `configs/<kind>/<name>.toml`, or of a `.toml` path (named after its stem)."""
    label, path = kind.removesuffix("s"), Path(name_or_path)
    if path.suffix == ".toml" or len(path.parts) > 1:
        if not path.is_file():
            raise ConfigError(f"{label} file {path} does not exist; give a preset name or an existing .toml path")
    elif name_or_path in preset_names(kind):
        path = Path(str(importlib.resources.files("configs") / kind / f"{name_or_path}.toml"))
    else:
        raise ConfigError(
            f"{label} preset {name_or_path!r} is unknown; available: {preset_names(kind)}, or a path to a .toml file"
        )
    try:
        return path.stem, tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{label} file {path}: invalid TOML ({e}); fix the file") from e


def load_suite(name_or_path: str, sources: dict[str, str] | None = None) -> SuiteConfig:
    """Read a suite by preset name (`configs/suites/<name>.toml`) or path; `sources` overrides split sources."""
    name, data = read_preset("suites", name_or_path)
    suite = SuiteConfig.from_dict({"name": name, **data})
    if not sources:
        return suite
    unknown = sorted(set(sources) - set(suite.splits))
    if unknown:
        raise ConfigError(f"suite {suite.name!r} has no split {unknown}; available: {sorted(suite.splits)}")
    splits = {name: replace(spec, source=sources.get(name, spec.source)) for name, spec in suite.splits.items()}
    return replace(suite, splits=splits)


def resolve_source(source: str) -> Path | str:
    """`embedded:<file>` -> the packaged data file; `hf:` ids stay strings; paths are relative to the cwd."""
    if source.startswith(EMBEDDED_PREFIX):
        return Path(str(importlib.resources.files("trajcache") / "embedded" / "data")) / source[len(EMBEDDED_PREFIX) :]
    if source.startswith(HF_PREFIX):
        return source
    return Path(source).expanduser()


def load_splits(suite: SuiteConfig, names: Sequence[str] | None = None, limit: int | None = None) -> list[Split]:
    """Read the named splits (all, in suite order, when `names` is None); `limit` keeps the first rows."""
    chosen = list(suite.splits) if names is None else list(names)
    unknown = [n for n in chosen if n not in suite.splits]
    if unknown:
        raise ConfigError(f"suite {suite.name!r} has no split {unknown}; available: {sorted(suite.splits)}")
    return [
        read_split(name, resolve_source(suite.splits[name].source), suite.splits[name].roles, limit) for name in chosen
    ]
