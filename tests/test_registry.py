"""The metric registry: a contract every registered metric meets, and registration errors."""

from __future__ import annotations

import numpy as np
import pytest

from trajcache.errors import ConfigError, UnknownMetricError
from trajcache.metrics import Channel, ItemValues, get_metric, metric, registered
from trajcache.metrics.registry import CHANNEL_KINDS

N, V, Y, S, L, K = 5, 2, 4, 3, 6, 3


def _channel(inp: Channel, rng: np.random.Generator) -> np.ndarray:
    """A valid random input of the shape `score` gives this channel kind."""
    group = inp.role == "perturbed"
    if inp.kind == "nll":
        return rng.random((N, V, Y, S, K) if group else (N, V, Y, S)) * 3
    if inp.kind == "token_logp":
        values = -rng.random((N, V, Y, S, L)) * 4
        values[..., -2:] = np.nan  # positions that do not count
        return values
    if inp.kind == "hits":
        values = rng.integers(0, 2, size=(N, V, Y, S, L)).astype(np.float64)
        values[..., -2:] = np.nan
        return values
    if inp.kind in ("rouge1", "rougeL"):
        return rng.random((N, V, Y, S))
    raise AssertionError(f"no generator for {inp.kind}")


def _inputs(name: str, rng: np.random.Generator) -> dict[str, object]:
    d = get_metric(name)
    if d.level == "composite":
        return {"components": [rng.random((V, Y, S)) + 0.1 for _ in range(9)]}
    if d.level == "dataset":
        out = {}
        for param, inp in d.inputs.items():
            assert isinstance(inp, ItemValues)
            inner = get_metric(inp.metric)
            out[param] = inner.fn(**{p: _channel(i, rng) for p, i in inner.inputs.items()})  # type: ignore[arg-type]
        return out
    return {param: _channel(inp, rng) for param, inp in d.inputs.items()}  # type: ignore[arg-type]


@pytest.mark.parametrize("name", sorted(registered()))
def test_every_metric_is_pure_and_shaped(name: str) -> None:
    d = get_metric(name)
    for inp in d.inputs.values():
        assert isinstance(inp, (Channel, ItemValues))
        if isinstance(inp, Channel):
            assert inp.kind in CHANNEL_KINDS
        else:
            assert get_metric(inp.metric).level == "item"
    inputs = _inputs(name, np.random.default_rng(0))
    before = {k: (v.copy() if isinstance(v, np.ndarray) else [c.copy() for c in v]) for k, v in inputs.items()}
    first = np.asarray(d.fn(**inputs))
    second = np.asarray(d.fn(**inputs))
    np.testing.assert_array_equal(first, second)
    for key, value in before.items():
        np.testing.assert_array_equal(np.asarray(inputs[key]), np.asarray(value), err_msg=f"{name} changed {key}")
    expected = (N, V, Y, S) if d.level == "item" else (V, Y, S)
    assert first.shape == expected
    assert d.code and d.version >= 1


def test_a_name_clash_is_an_error_unless_replace() -> None:
    with pytest.raises(ConfigError, match="'probability' is already registered"):
        metric("probability", inputs={"nll": Channel("nll", "target")})(lambda nll: nll)


def test_inputs_must_be_parameters() -> None:
    with pytest.raises(ConfigError, match=r"inputs \['x'\] are not parameters"):
        metric("broken_metric", inputs={"x": Channel("nll", "target")})(lambda nll: nll)


def test_unknown_channel_kind_and_metric() -> None:
    with pytest.raises(ConfigError, match="channel kind 'logits' is unknown"):
        Channel("logits")
    with pytest.raises(UnknownMetricError, match="'nope' is unknown; available: .*probability"):
        get_metric("nope")
