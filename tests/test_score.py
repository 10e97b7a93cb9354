"""score: replay equals live, coalescing changes nothing, plugins, and clear missing-input errors."""

from __future__ import annotations

import textwrap
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr

from trajcache.data import encode_split
from trajcache.errors import MissingInputError, UnknownMetricError
from trajcache.models import load_model
from trajcache.score import ScoreRequest, score_run
from trajcache.suites import load_splits, load_suite
from trajcache.trajectories import LAYOUTS, VIEWS

from .conftest import LIMIT, TinyRuns, record_small


@pytest.fixture(scope="module")
def scored(tiny_runs: TinyRuns):
    return score_run(ScoreRequest(tiny_runs.full, reference=tiny_runs.retain, per_item=True))


def test_every_tofu_metric_is_computed(scored) -> None:
    suite = load_suite("tofu")
    assert set(scored.metrics) == set(suite.metrics) and not scored.skipped
    for name, m in scored.metrics.items():
        assert m.values.shape == (len(VIEWS), len(LAYOUTS), scored.steps), name
    for name in ("forget_Q_A_Prob", "forget_Q_A_ROUGE", "forget_truth_ratio", "extraction_strength", "model_utility", "mia_min_k", "forget_quality"):
        values = scored.metrics[name].values
        assert np.isfinite(values).all() and (values >= 0).all() and (values <= 1).all(), name
    assert scored.reference is not None and not scored.warnings


def test_metrics_asked_one_at_a_time_equal_together(tiny_runs: TinyRuns, scored) -> None:
    for name in ("forget_Q_A_ROUGE", "forget_truth_ratio", "privleak", "model_utility"):
        alone = score_run(ScoreRequest(tiny_runs.full, (name,), tiny_runs.retain)).metrics[name]
        np.testing.assert_array_equal(alone.values, scored.metrics[name].values)


def test_replay_equals_live_model_logits(tiny_runs: TinyRuns, scored) -> None:
    """forget_Q_A_Prob and forget_truth_ratio per item and step, recomputed from the model itself."""
    model = load_model("tiny-full")
    split = load_splits(load_suite("tofu"), ["forget"], LIMIT)[0]
    encoded = encode_split(split, model.tokenizer, None)
    group = zarr.open_group(tiny_runs.full, mode="r")["forget"]
    tokens, fixation = group["tokens"][:], group["fixation"][:]
    steps, length = group["label_logp"].shape[1:3]
    prob = scored.metrics["forget_Q_A_Prob"].per_item[1]  # (N, V, Y, S)
    tr = scored.metrics["forget_truth_ratio"].per_item[1]
    for n in range(3):
        item = encoded[n]
        labels = {role: list(ids) for role, ids in item.labels.items()}
        for t in range(steps):
            gen = [int(tok) if fixation[n, p] < t else model.mask_id for p, tok in enumerate(tokens[n])]
            ids = torch.tensor([list(item.prompt_ids) + gen])
            with torch.no_grad():
                logp = model.forward_logits(ids, torch.ones_like(ids, dtype=torch.bool), length)[0].float().log_softmax(-1)

            def nll(role: str) -> float:
                return -float(np.mean([logp[p, tok].item() for p, tok in enumerate(labels[role])]))

            # Batched (padded) and single-item float32 forwards differ in the last bits: 1e-6 absolute.
            assert prob[n, 0, 0, t] == pytest.approx(np.exp(-nll("answer")), rel=0, abs=1e-6)
            ratio = np.exp(nll("paraphrase") - np.mean([nll(f"perturbed_{k}") for k in range(5)]))
            assert tr[n, 0, 0, t] == pytest.approx(min(ratio, 1 / ratio), rel=0, abs=1e-6)


def test_plugin_metric_replays_on_an_old_run(tiny_runs: TinyRuns, tmp_path: Path) -> None:
    plugin = tmp_path / "my_metrics.py"
    plugin.write_text(textwrap.dedent('''
        import numpy as np
        from trajcache.metrics import Channel, metric

        @metric("committed_entropy", inputs={"entropy": Channel("raw", field="entropy"),
                                             "fixation": Channel("raw", field="fixation")})
        def committed_entropy(entropy, fixation):
            """Mean entropy at the positions committed at each step (NaN where none is)."""
            steps = entropy.shape[1]
            at = fixation[:, None, :] == np.arange(steps)[None, :, None]      # (N, S, L)
            total = np.where(at, entropy, 0.0).sum(-1)
            count = at.sum(-1)
            per_step = np.where(count > 0, total / np.maximum(count, 1), np.nan)  # (N, S)
            return np.broadcast_to(per_step[:, None, None, :], (len(entropy), 2, 4, steps))
    '''))
    results = score_run(ScoreRequest(tiny_runs.full, ("committed_entropy@forget",), plugins=(plugin,)))
    got = results.metrics["committed_entropy@forget"].values[0, 0]
    group = zarr.open_group(tiny_runs.full, mode="r")["forget"]
    entropy, fixation = group["entropy"][:], group["fixation"][:]
    for t in range(len(got)):
        per_item = [entropy[n, t][fixation[n] == t].mean() for n in range(len(entropy)) if (fixation[n] == t).any()]
        assert got[t] == pytest.approx(np.mean(per_item), rel=1e-6)


def test_unknown_metric_names_the_available_ones(tiny_runs: TinyRuns) -> None:
    with pytest.raises(UnknownMetricError, match="'rogue' is unknown; available: .*forget_Q_A_ROUGE"):
        score_run(ScoreRequest(tiny_runs.full, ("rogue",)))


def test_missing_inputs_name_what_provides_them(tiny_runs: TinyRuns, tmp_path: Path) -> None:
    with pytest.raises(MissingInputError, match="--reference RETAIN_RUN"):
        score_run(ScoreRequest(tiny_runs.full, ("forget_quality",)))
    forget_only = record_small(tmp_path / "forget.zarr", splits=("forget",), capture=replace(_capture(), top_k=0))
    with pytest.raises(MissingInputError, match="split 'retain'.*--splits retain"):
        score_run(ScoreRequest(forget_only, ("retain_Q_A_Prob",)))
    with pytest.raises(MissingInputError, match="topk_logp.*--top-k"):
        score_run(ScoreRequest(forget_only, ("top1@forget",), plugins=(_topk_plugin(tmp_path),)))
    fewer = record_small(tmp_path / "fewer.zarr", "tiny-retain", splits=("forget",), limit=3)
    with pytest.raises(MissingInputError, match="other items"):
        score_run(ScoreRequest(tiny_runs.full, ("forget_quality",), fewer))


def test_reference_with_another_sampler_is_refused(tiny_runs: TinyRuns, tmp_path: Path) -> None:
    other = record_small(tmp_path / "other.zarr", "tiny-retain", splits=("forget",), sampler_overrides={"steps": 8})
    with pytest.raises(MissingInputError, match="another config.*steps: 16 vs 8"):
        score_run(ScoreRequest(tiny_runs.full, ("forget_quality",), other))


def _capture():
    from trajcache.config import CaptureConfig

    return CaptureConfig()


def _topk_plugin(tmp_path: Path) -> Path:
    path = tmp_path / "topk_plugin.py"
    path.write_text(textwrap.dedent('''
        from trajcache.metrics import Channel, metric

        @metric("top1", inputs={"topk": Channel("layout", field="topk_logp")})
        def top1(topk):
            return topk[..., 0].mean(-1)[:, None].repeat(2, axis=1)
    '''))
    return path
