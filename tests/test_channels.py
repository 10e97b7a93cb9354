"""Channels: vectorised, deduplicated computations equal naive per-cell loops with the references."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from rouge_score import rouge_scorer
from transformers import AutoTokenizer

from trajcache.channels import Chunk, TextRules
from trajcache.trajectories import source_steps

EMBEDDED = Path(__file__).resolve().parents[1] / "trajcache" / "embedded" / "models" / "tiny-full"
N, S, L = 3, 4, 6
ROLES = ("answer", "perturbed_0", "perturbed_1")


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(EMBEDDED)


def _tables(rng: np.random.Generator, vocab: int, eos: int) -> dict[str, np.ndarray]:
    labels = np.full((N, len(ROLES), L), -1, dtype=np.int32)
    for n in range(N):
        for j in range(len(ROLES)):
            k = rng.integers(2, L + 1)
            labels[n, j, : k - 1] = rng.integers(20, vocab, size=k - 1)
            labels[n, j, k - 1] = eos
    tokens = rng.integers(20, vocab, size=(N, L)).astype(np.int32)
    tokens[0, 3] = eos
    return {
        "label_logp": np.where(labels.transpose(0, 2, 1)[:, None] >= 0, -rng.random((N, S, L, len(ROLES))), np.nan).astype(np.float32),
        "labels": labels,
        "argmax": rng.integers(20, vocab, size=(N, S, L)).astype(np.int32),
        "tokens": tokens,
        "fixation": rng.integers(0, S, size=(N, L)).astype(np.int16),
        "eos_len": np.array([4, L, L], dtype=np.int32),
    }


def test_nll_and_hits_equal_loops() -> None:
    rng = np.random.default_rng(1)
    t = _tables(rng, 200, 3)
    chunk = Chunk(t, ROLES, S)
    nll = chunk.channel("nll", "perturbed")  # (N, V, Y, S, K)
    hits = chunk.channel("hits", "answer")  # (N, V, Y, S, L)
    src = source_steps(t["fixation"], S)
    for n in range(N):
        for v, limit in enumerate((L, int(t["eos_len"][n]))):
            for y in range(4):
                for s in range(S):
                    for k, j in enumerate((1, 2)):
                        pos = [p for p in range(limit) if t["labels"][n, j, p] >= 0]
                        want = -np.mean([t["label_logp"][n, src[n, y, s, p], p, j] for p in pos])
                        assert nll[n, v, y, s, k] == pytest.approx(want, rel=1e-6)
                    lab = t["labels"][n, 0]
                    last = int((lab >= 0).sum()) - 1
                    for p in range(L):
                        counted = lab[p] >= 0 and p != last and p < limit
                        got = hits[n, v, y, s, p]
                        if counted:
                            assert got == float(t["argmax"][n, src[n, y, s, p], p] == lab[p])
                        else:
                            assert np.isnan(got)


def test_rouge_dedup_equals_naive(tokenizer) -> None:
    rng = np.random.default_rng(2)
    eos = tokenizer.eos_token_id
    t = _tables(rng, len(tokenizer), eos)
    mask = tokenizer.mask_token_id
    t["argmax"][0, 0, :2] = mask  # a mask proposal must never reach the text
    rules = TextRules(tokenizer, "", frozenset({mask}))
    chunk = Chunk(t, ROLES, S, rules)
    got = chunk.channel("rougeL", "answer")
    scorer = rouge_scorer.RougeScorer(["rouge1", "rougeL"], use_stemmer=True)
    src = source_steps(t["fixation"], S)
    for n in range(N):
        ref = tokenizer.decode([x for x in t["labels"][n, 0] if x >= 0], skip_special_tokens=True).strip()
        for v, limit in enumerate((L, int(t["eos_len"][n]))):
            for y in range(4):
                for s in range(S):
                    row = []
                    for p in range(limit):
                        committed = t["fixation"][n, p] <= src[n, y, s, p]
                        tok = t["tokens"][n, p] if committed else t["argmax"][n, src[n, y, s, p], p]
                        if tok != mask:
                            row.append(int(tok))
                    pred = tokenizer.decode(row, skip_special_tokens=True).strip()
                    want = scorer.score(target=ref, prediction=pred)["rougeL"].recall
                    assert got[n, v, y, s] == want
