"""Tests of the sampler (trajcache/sampler.py) and its selection rules (trajcache/selection.py).

Models are random tiny Llamas built here (float32, eval mode), so every test is fast on a CPU.
References are naive: unpadded single-item forwards, Python sorts and Python SplitMix64.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

# Persistent inductor cache: a warm compile takes seconds instead of ~30 s on 2 cores.
os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(Path(__file__).resolve().parents[1] / ".inductor-cache"))
os.environ.setdefault("TORCHINDUCTOR_COMPILE_THREADS", "1")

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import LlamaConfig, LlamaForCausalLM

from trajcache import sampler as sampler_module
from trajcache.config import CaptureConfig, SamplerConfig
from trajcache.errors import ConfigError, DataError, ModelError
from trajcache.models import DiffusionModel
from trajcache.sampler import Sampler
from trajcache.selection import counter_uniform, propose, select, step_schedule

V = 96
MASK, EOS, PAD = V - 1, V - 2, V - 3
FLOAT_FIELDS = ("label_logp", "entropy", "topk_logp")


def _network(seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=V,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        initializer_range=0.3,  # peaked predictions: few near-ties between confidences
        attn_implementation="sdpa",
    )
    return LlamaForCausalLM(config).eval()


def _model(network: torch.nn.Module, alignment: str = "same") -> DiffusionModel:
    return DiffusionModel(
        network=network,
        tokenizer=None,
        mask_id=MASK,
        eos_id=EOS,
        pad_id=PAD,
        alignment=alignment,  # type: ignore[arg-type]
        attention="bidirectional_4d",
        source="tiny-test",
    )


@pytest.fixture(scope="module")
def model() -> DiffusionModel:
    return _model(_network())


def _items(indices: range | list[int], L: int, roles: int = 2) -> tuple[list[list[int]], np.ndarray, np.ndarray]:
    """Deterministic prompts (item 5 longer than one 16-column bucket), labels and seeds per item."""
    prompts, labels = [], np.full((len(indices), roles, L), -1, dtype=np.int32)
    for row, i in enumerate(indices):
        rng = np.random.default_rng(i)
        prompts.append(rng.integers(0, PAD, size=20 if i == 5 else 2 + i % 7).tolist())
        for j in range(roles):
            n = int(rng.integers(1, L))
            labels[row, j, :n] = rng.integers(0, PAD, size=n)
            labels[row, j, n - 1] = EOS
    return prompts, labels, np.array([1000 + i for i in indices], dtype=np.int64)


def _run(model: DiffusionModel, config: SamplerConfig, indices: range | list[int] = range(4), **kw: object) -> dict:
    capture = kw.pop("capture", CaptureConfig(top_k=4))
    batch_size = int(kw.pop("batch_size", 8))
    prompts, labels, seeds = _items(indices, config.gen_length)
    seeds = seeds + int(kw.pop("seed_offset", 0))
    targets = labels[:, 0] if config.mode == "guided" else None
    sampler = Sampler(model, config, capture, compile=bool(kw.pop("compile", False)), batch_size=batch_size)
    return sampler.run(prompts, labels, seeds, targets)


def _naive_logp(network: torch.nn.Module, prompt: list[int], generated: np.ndarray) -> torch.Tensor:
    """(L, V) float64 log-probs of one unpadded canvas, attention fully bidirectional."""
    ids = torch.tensor([prompt + generated.tolist()])
    full = torch.ones(1, 1, ids.shape[1], ids.shape[1], dtype=torch.bool)
    with torch.no_grad():
        logits = network(input_ids=ids, attention_mask=full).logits[0, len(prompt) :]
    return logits.double().log_softmax(-1)


def _canvas_before(tables: dict, row: int, step: int) -> np.ndarray:
    """The generated region before `step`, rebuilt from the final tokens and fixation steps."""
    return np.where(tables["fixation"][row] < step, tables["tokens"][row], MASK)


# -- schedule ------------------------------------------------------------------------------------


def test_schedule_llada_counts() -> None:
    assert step_schedule(SamplerConfig(steps=4, gen_length=10, block_length=10)).tolist() == [3, 3, 2, 2]
    blocks = SamplerConfig(steps=6, gen_length=15, block_length=5)  # 3 blocks of 5 in 2 steps
    assert step_schedule(blocks).tolist() == [3, 2, 3, 2, 3, 2]


@given(st.integers(1, 6), st.integers(1, 12), st.integers(1, 12))
def test_schedule_sums_per_block(blocks: int, block_length: int, per_block: int) -> None:
    per_block = min(per_block, block_length)
    config = SamplerConfig(steps=blocks * per_block, gen_length=blocks * block_length, block_length=block_length)
    counts = step_schedule(config).reshape(blocks, per_block)
    assert (counts.sum(1) == block_length).all()
    assert (counts.max(1) - counts.min(1) <= 1).all() and (np.diff(counts, axis=1) <= 0).all()


def test_run_follows_schedule_and_blocks(model: DiffusionModel) -> None:
    config = SamplerConfig(steps=6, gen_length=12, block_length=4)
    tables = _run(model, config)
    S, L = config.steps, config.gen_length
    assert (tables["commits"] == step_schedule(config)).all() and (tables["commits"].sum(1) == L).all()
    fixation = tables["fixation"]
    assert fixation.min() >= 0 and fixation.max() <= S - 1
    for s in range(S):
        assert ((fixation == s).sum(1) == tables["commits"][:, s]).all()
    block_of_position = np.arange(L) // config.block_length
    assert (fixation // (S // config.blocks) == block_of_position).all()  # blocks left to right


def test_output_names_shapes_dtypes(model: DiffusionModel) -> None:
    config = SamplerConfig(steps=4, gen_length=8, block_length=8, temperature=1.0)
    tables = _run(model, config, range(3), capture=CaptureConfig(top_k=5, logits=True))
    B, S, L, J, K = 3, 4, 8, 2, 5
    expected = {
        "label_logp": ((B, S, L, J), np.float32),
        "argmax": ((B, S, L), np.int32),
        "x0": ((B, S, L), np.int32),
        "topk_ids": ((B, S, L, K), np.int32),
        "topk_logp": ((B, S, L, K), np.float32),
        "entropy": ((B, S, L), np.float32),
        "tokens": ((B, L), np.int32),
        "fixation": ((B, L), np.int16),
        "commits": ((B, S), np.int16),
        "eos_len": ((B,), np.int32),
        "prompt_len": ((B,), np.int32),
        "logits": ((B, S, L, V), np.float16),
    }
    assert {name: (value.shape, value.dtype) for name, value in tables.items()} == expected
    _, labels, _ = _items(range(3), L)
    assert (np.isnan(tables["label_logp"]) == (labels.transpose(0, 2, 1) < 0)[:, None]).all()
    gathered = np.take_along_axis(tables["logits"], np.maximum(labels.transpose(0, 2, 1), 0)[:, None], -1)
    np.testing.assert_allclose(np.where(labels.transpose(0, 2, 1)[:, None] < 0, np.nan, gathered),
                               tables["label_logp"], atol=1e-2)  # fmt: skip
    greedy = _run(model, SamplerConfig(steps=4, gen_length=8, block_length=8), range(3), capture=CaptureConfig(top_k=0))
    assert {"x0", "topk_ids", "topk_logp", "logits"}.isdisjoint(greedy)


# -- replay fidelity -----------------------------------------------------------------------------


def test_replay_matches_naive_recomputation(model: DiffusionModel) -> None:
    """Each step's tables equal an unpadded forward over the rebuilt canvas; commits follow LLaDA."""
    config = SamplerConfig(steps=6, gen_length=12, block_length=6)
    indices = [0, 3, 5]
    tables = _run(model, config, indices)
    prompts, labels, _ = _items(indices, config.gen_length)
    schedule = step_schedule(config)
    for row, prompt in enumerate(prompts):
        for t in range(config.steps):
            canvas = _canvas_before(tables, row, t)
            logp = _naive_logp(model.network, prompt, canvas)  # (L, V)
            label = torch.as_tensor(labels[row].T.astype(np.int64))  # (L, J)
            want = torch.where(label < 0, torch.nan, logp.gather(-1, label.clamp(min=0)))
            np.testing.assert_allclose(tables["label_logp"][row, t], want.numpy(), atol=1e-5)
            argmax = logp.argmax(-1).numpy()
            assert (tables["argmax"][row, t] == argmax).all()
            np.testing.assert_allclose(tables["entropy"][row, t], -(logp.exp() * logp).sum(-1).numpy(), atol=1e-5)
            # LLaDA low_confidence: the k most probable argmaxes among the block's masks, lowest position on ties.
            block_end = (t // (config.steps // config.blocks) + 1) * config.block_length
            masked = [l for l in range(block_end) if canvas[l] == MASK]
            conf = logp.exp().max(-1).values.numpy()
            chosen = sorted(masked, key=lambda l: (-conf[l], l))[: schedule[t]]
            assert sorted(chosen) == np.flatnonzero(tables["fixation"][row] == t).tolist()
            assert (tables["tokens"][row, chosen] == argmax[chosen]).all()


# -- alignment, batches, seeds -------------------------------------------------------------------


class _WrappedNetwork(torch.nn.Module):
    """The plain network with its full logits passed through `transform` (B, T, V) -> (B, T, V)."""

    def __init__(self, inner: LlamaForCausalLM, transform: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.inner, self.transform = inner, transform

    def get_output_embeddings(self) -> torch.nn.Module:
        return self.inner.get_output_embeddings()

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor, logits_to_keep: int
    ) -> SimpleNamespace:
        logits = self.inner(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids).logits
        return SimpleNamespace(logits=self.transform(logits)[:, -logits_to_keep:])


def test_shift_alignment_equals_same(model: DiffusionModel) -> None:
    """Row p of the shifted network is the plain network's row p+1 (Dream-style alignment)."""
    config = SamplerConfig(steps=4, gen_length=8, block_length=4, temperature=1.0)
    plain = _run(model, config)
    shift = _WrappedNetwork(model.network, lambda logits: torch.cat([logits[:, 1:], logits[:, :1]], dim=1))
    shifted = _run(_model(shift.eval(), alignment="shift"), config)
    assert plain.keys() == shifted.keys()
    for name in plain:
        np.testing.assert_allclose(shifted[name], plain[name], atol=1e-6, err_msg=name)


def test_committed_mask_id_stays_committed(model: DiffusionModel) -> None:
    """A model that proposes the mask id everywhere still fills the schedule exactly."""
    config = SamplerConfig(steps=4, gen_length=8, block_length=4)
    favour_mask = _WrappedNetwork(model.network, lambda logits: logits + 100 * (torch.arange(V) == MASK))
    tables = _run(_model(favour_mask.eval()), config)
    assert (tables["tokens"] == MASK).all()
    assert (tables["commits"] == step_schedule(config)).all()


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_batch_size_does_not_change_results(model: DiffusionModel, temperature: float) -> None:
    config = SamplerConfig(steps=4, gen_length=8, block_length=8, temperature=temperature)
    indices = list(range(8))
    whole = _run(model, config, indices)
    singles = [_run(model, config, [i], batch_size=1) for i in indices]
    threes = [_run(model, config, indices[i : i + 3], batch_size=3) for i in range(0, 8, 3)]
    for parts in (singles, threes):
        joined = {name: np.concatenate([p[name] for p in parts]) for name in whole}
        assert (joined["tokens"] == whole["tokens"]).all() and (joined["fixation"] == whole["fixation"]).all()
        np.testing.assert_allclose(joined["label_logp"], whole["label_logp"], atol=1e-4)
    if temperature > 0:
        reseeded = _run(model, config, indices, seed_offset=1)
        assert (reseeded["tokens"] != whole["tokens"]).any()
        assert (reseeded["x0"] != whole["x0"]).any()


def test_temperature_zero_ignores_seeds(model: DiffusionModel) -> None:
    config = SamplerConfig(steps=4, gen_length=8, block_length=8)
    a, b = _run(model, config), _run(model, config, seed_offset=7)
    assert (a["tokens"] == b["tokens"]).all()


# -- modes and options ---------------------------------------------------------------------------


def test_guided_commits_targets_where_model_chose(model: DiffusionModel) -> None:
    config = SamplerConfig(steps=4, gen_length=8, block_length=8, mode="guided")
    guided = _run(model, config)
    free = _run(model, SamplerConfig(steps=4, gen_length=8, block_length=8))
    _, labels, _ = _items(range(4), config.gen_length)
    target = np.where(labels[:, 0] < 0, EOS, labels[:, 0])  # EOS past the label
    assert (guided["tokens"] == target).all()
    # Step 0 sees the same canvas in both modes, so the model picks the same positions.
    assert ((guided["fixation"] == 0) == (free["fixation"] == 0)).all()
    assert (guided["eos_len"] == (labels[:, 0] == EOS).argmax(1) + 1).all()
    np.testing.assert_array_equal(guided["label_logp"][:, 0], free["label_logp"][:, 0])


@pytest.mark.parametrize("remasking", ["random", "margin", "entropy"])
def test_remasking_variants(model: DiffusionModel, remasking: str) -> None:
    config = SamplerConfig(steps=4, gen_length=8, block_length=8, remasking=remasking)  # type: ignore[arg-type]
    tables = _run(model, config)
    assert (tables["commits"] == step_schedule(config)).all()
    if remasking == "random":
        other = _run(model, config, seed_offset=1)
        assert (other["fixation"] != tables["fixation"]).any()
        return
    top = np.exp(tables["topk_logp"][:, 0].astype(np.float64))  # (B, L, K) at step 0
    conf = top[..., 0] - top[..., 1] if remasking == "margin" else -tables["entropy"][:, 0]
    for row in range(conf.shape[0]):
        chosen = sorted(range(8), key=lambda l: (-conf[row, l], l))[:2]
        assert sorted(chosen) == np.flatnonzero(tables["fixation"][row] == 0).tolist()


def test_cfg_matches_naive_guidance(model: DiffusionModel) -> None:
    config = SamplerConfig(steps=4, gen_length=8, block_length=8, cfg_scale=1.5)
    guided = _run(model, config, range(2))
    plain = _run(model, SamplerConfig(steps=4, gen_length=8, block_length=8), range(2))
    assert not np.allclose(guided["label_logp"], plain["label_logp"], equal_nan=True)
    prompts, labels, _ = _items(range(2), 8)
    for row, prompt in enumerate(prompts):
        masks = np.full(8, MASK)
        cond = _naive_logp(model.network, prompt, masks)
        free = _naive_logp(model.network, [MASK] * len(prompt), masks)
        logp = (free + 2.5 * (cond - free)).log_softmax(-1)  # (L, V)
        label = torch.as_tensor(labels[row].T.astype(np.int64))
        want = torch.where(label < 0, torch.nan, logp.gather(-1, label.clamp(min=0)))
        np.testing.assert_allclose(guided["label_logp"][row, 0], want.numpy(), atol=1e-5)


# -- randomness and selection rules --------------------------------------------------------------

_U64 = 2**64 - 1


def _splitmix_reference(state: int, counter: int) -> int:
    """Vigna's splitmix64.c next(): state += GAMMA·(counter+1); mix; on Python ints mod 2**64."""
    z = (state + (counter + 1) * 0x9E3779B97F4A7C15) & _U64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _U64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _U64
    return z ^ (z >> 31)


@settings(max_examples=50, deadline=None)
@given(st.integers(-(2**63), 2**63 - 1), st.integers(0, 1), st.integers(0, 500), st.integers(0, 9), st.integers(0, 9))
def test_counter_uniform_matches_python_splitmix(seed: int, stream: int, step: int, position: int, vocab: int) -> None:
    u = counter_uniform(torch.tensor([seed]), stream, torch.tensor(step), (10, 10))[0, position, vocab]
    h = seed & _U64
    for counter in (stream, step, position, vocab):
        h = _splitmix_reference(h, counter)
    assert u.item() == ((h >> 11) + 0.5) * 2.0**-53


def test_counter_uniform_is_uniform_and_shape_free() -> None:
    seeds = torch.tensor([3, -5])
    u = counter_uniform(seeds, 0, torch.tensor(2), (50, 1000))  # (2, 50, 1000)
    assert 0 < u.min() and u.max() < 1 and abs(u.mean().item() - 0.5) < 0.005
    assert torch.equal(counter_uniform(seeds, 0, torch.tensor(2), (7, 3)), u[:, :7, :3])
    assert not torch.equal(counter_uniform(seeds, 1, torch.tensor(2), (7, 3)), u[:, :7, :3])


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_gumbel_proposal_samples_tempered_softmax(temperature: float) -> None:
    logits = torch.log(torch.tensor([0.1, 0.2, 0.3, 0.4]))
    logp = logits.expand(1, 40_000, 4)
    x0 = propose(logp, temperature, torch.tensor([11]), torch.tensor(0))  # (1, 40000)
    freq = torch.bincount(x0[0], minlength=4).double() / x0.numel()
    np.testing.assert_allclose(freq.numpy(), (logits / temperature).softmax(-1).numpy(), atol=0.01)


@given(st.lists(st.tuples(st.integers(0, 3), st.booleans()), min_size=1, max_size=12), st.integers(0, 12))
def test_select_top_count_lowest_position_on_ties(rows: list[tuple[int, bool]], count: int) -> None:
    conf = torch.tensor([[float(c) for c, _ in rows]], dtype=torch.float64)
    eligible = torch.tensor([[e for _, e in rows]])
    chosen = select(conf, eligible, torch.tensor([count]))[0]
    candidates = [l for l, (_, e) in enumerate(rows) if e]
    want = sorted(candidates, key=lambda l: (-rows[l][0], l))[:count]
    assert np.flatnonzero(chosen.numpy()).tolist() == sorted(want)


# -- errors and the compile switch ---------------------------------------------------------------


def test_invalid_inputs_are_refused(model: DiffusionModel) -> None:
    config = SamplerConfig(steps=2, gen_length=4, block_length=4)
    sampler = Sampler(model, config, CaptureConfig(), compile=False, batch_size=2)
    labels, seeds = np.full((1, 1, 4), -1, dtype=np.int32), np.array([0])
    with pytest.raises(ConfigError, match="batch_size=2"):
        sampler.run([[1], [2], [3]], np.full((3, 1, 4), -1), np.arange(3))
    with pytest.raises(ConfigError, match="targets is given"):
        sampler.run([[1]], labels, seeds, targets=np.zeros((1, 4), dtype=np.int32))
    with pytest.raises(DataError, match="mask id"):
        sampler.run([[1, MASK]], labels, seeds)
    with pytest.raises(DataError, match="empty"):
        sampler.run([[]], labels, seeds)
    with pytest.raises(DataError, match="labels has shape"):
        sampler.run([[1]], np.full((1, 1, 5), -1), seeds)
    with pytest.raises(DataError, match="labels holds ids"):
        sampler.run([[1]], np.full((1, 1, 4), V), seeds)
    with pytest.raises(ConfigError, match="targets is missing"):
        Sampler(model, SamplerConfig(steps=2, gen_length=4, block_length=4, mode="guided"), CaptureConfig(),
                compile=False).run([[1]], labels, seeds)  # fmt: skip
    with pytest.raises(ConfigError, match="--top-k"):
        Sampler(model, config, CaptureConfig(top_k=V + 1), compile=False)
    with pytest.raises(ModelError, match="training mode"):
        Sampler(_model(_network().train()), config, CaptureConfig(), compile=False)


def test_compile_unavailable_warns_and_runs_eager(model: DiffusionModel, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sampler_module, "_compile_blocker", lambda device: "no C++ compiler found")
    sampler_module._warn_eager.cache_clear()
    config = SamplerConfig(steps=2, gen_length=4, block_length=4)
    with pytest.warns(RuntimeWarning, match="EAGER"):
        sampler = Sampler(model, config, CaptureConfig(), compile=True)
    assert sampler._step == sampler._denoise_step
    sampler_module._warn_eager.cache_clear()


@pytest.mark.compile
def test_compiled_and_eager_commit_identical_tokens(model: DiffusionModel) -> None:
    config = SamplerConfig(steps=4, gen_length=8, block_length=4)
    eager = _run(model, config, range(3), batch_size=4)
    compiled = _run(model, config, range(3), batch_size=4, compile=True)
    for name in ("tokens", "fixation", "argmax", "topk_ids"):
        assert (compiled[name] == eager[name]).all(), name
    for name in FLOAT_FIELDS:
        np.testing.assert_allclose(compiled[name], eager[name], atol=1e-5, err_msg=name)
    draw = torch.compile(counter_uniform, fullgraph=True, dynamic=False)
    seeds = torch.tensor([7, -(2**62)])
    assert torch.equal(draw(seeds, 0, torch.tensor(3), (5, 6)), counter_uniform(seeds, 0, torch.tensor(3), (5, 6)))
