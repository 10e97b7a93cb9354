"""Scoring benchmark: `score_run` against a naive, independent implementation of the TOFU metrics.

`python benchmarks/bench_score.py [--runs DIR] [--limit N] [--repeats R]`

Records (or finds by fingerprint in DIR) the embedded tofu suite with `tiny-full` and
`tiny-retain`, times `score_run(ScoreRequest(full, reference=retain))` (best of R), then computes
every TOFU metric again the straightforward way: stored arrays read with plain `zarr.open_group`,
and for every (item, view, layout, step) cell a source-step index built with Python loops from the
DESIGN §7 formulas, label log-probs gathered position by position, the prediction decoded afresh
and scored with one `rouge_score` call. Both sides must agree: ROUGE bit for bit, every other
formula within 1e-9 relative. The naive side doubles as a correctness oracle for the library, so
it imports nothing of trajcache's store, channel, trajectory or metric code.

Exit status: 0 when every metric agrees, 1 when any differs.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import zarr
from numpy.typing import NDArray
from rouge_score.rouge_scorer import RougeScorer
from scipy.stats import hmean, ks_2samp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout: the project is not installed

from trajcache.errors import MissingInputError  # noqa: E402
from trajcache.record import ModelRequest, RecordRequest, record_run  # noqa: E402
from trajcache.results import Results  # noqa: E402
from trajcache.score import ScoreRequest, score_run  # noqa: E402
from trajcache.store import open_run  # noqa: E402  (only to read the tokenizer asset)
from trajcache.tokenizer_files import load_tokenizer  # noqa: E402
from trajcache.trajectories import LAYOUTS as LIBRARY_LAYOUTS  # noqa: E402
from trajcache.trajectories import VIEWS as LIBRARY_VIEWS  # noqa: E402

FloatArray = NDArray[np.float64]
Cell = Callable[["Item", list[int], list[int]], float]  # (item, src per position, counted positions)

VIEWS = ("full", "eos")
LAYOUTS = ("steps", "fixation_start", "fixation_end", "fixation_ratio")
SUITE = ROOT / "configs" / "suites" / "tofu.toml"
REL_TOL = 1e-9  # float formulas: summation order may differ, nothing else
PRIVLEAK_EPS = 1e-10  # open-unlearning's guard in privleak's denominator
TRUTH_RATIO_TRANSFORMS: dict[str, Callable[[float], float]] = {
    "closer_to_1": lambda tr: min(tr, 1.0 / tr) if tr > 0 else 0.0,
    "true_better": lambda tr: max(0.0, 1.0 - tr),
}


# ---------------------------------------------------------------- recording and the library side

def record_pair(cache_dir: Path, limit: int | None) -> tuple[Path, Path]:
    """The tiny-full and tiny-retain runs of the embedded tofu suite (eager; reused by fingerprint)."""
    paths = []
    for model in ("tiny-full", "tiny-retain"):
        started = time.perf_counter()
        request = RecordRequest(model=ModelRequest(model), cache_dir=cache_dir, limit=limit, compile=False)
        summary = record_run(request)
        how = "cached" if summary.cache_hit else f"recorded in {time.perf_counter() - started:.1f} s"
        print(f"{model}: {summary.path} ({how}; items {summary.items})")
        paths.append(summary.path)
    return paths[0], paths[1]


def time_library(full: Path, retain: Path, repeats: int) -> tuple[float, list[float], Results]:
    """Best wall time of `repeats` score_run calls (every tofu metric) and the results. `per_item`
    only keeps references to per-item arrays computed either way: free, and it feeds the cross-check."""
    times = []
    for _ in range(max(1, repeats)):
        started = time.perf_counter()
        results = score_run(ScoreRequest(full, reference=retain, per_item=True))
        times.append(time.perf_counter() - started)
    return min(times), times, results


# ---------------------------------------------------------------- naive side: reading

@dataclass(frozen=True)
class Item:
    """One item's stored tables as plain Python lists (float32 values widened exactly to float)."""

    label_logp: list[list[list[float]]]  # [S][L][J]
    argmax: list[list[int]]  # [S][L]
    proposals: list[list[int]]  # [S][L]: x0 when recorded, else argmax (temperature 0)
    tokens: list[int]  # [L]
    fixation: list[int]  # [L]
    eos_len: int
    labels: list[list[int]]  # [J][L], -1 where no label


@dataclass(frozen=True)
class NaiveSplit:
    roles: tuple[str, ...]
    steps: int
    length: int
    mask_id: int
    eos_id: int
    arrays: dict[str, np.ndarray]

    @property
    def n_items(self) -> int:
        return int(self.arrays["fixation"].shape[0])

    def item(self, i: int) -> Item:
        a = self.arrays
        proposals = a["x0"] if "x0" in a else a["argmax"]
        return Item(a["label_logp"][i].tolist(), a["argmax"][i].tolist(), proposals[i].tolist(), a["tokens"][i].tolist(),
                    a["fixation"][i].tolist(), int(a["eos_len"][i]), a["labels"][i].tolist())

    def columns(self, role: str) -> list[int]:
        """Label columns of a role: the role itself, or its group (`perturbed` -> perturbed_0..K-1)."""
        if role in self.roles:
            return [self.roles.index(role)]
        group = [j for j, r in enumerate(self.roles) if r.startswith(role + "_")]
        if not group:
            raise MissingInputError(f"role {role!r} is not recorded; roles: {list(self.roles)}")
        return group


def read_split(path: Path, split: str) -> NaiveSplit:
    group = zarr.open_group(str(path), mode="r")[split]
    attrs = group.attrs["trajcache_split"]
    names = ("label_logp", "argmax", "x0", "tokens", "fixation", "eos_len", "labels")
    arrays = {name: group[name][:] for name in names if name in group}
    return NaiveSplit(tuple(attrs["roles"]), int(attrs["S"]), int(attrs["L"]), int(attrs["mask_id"]), int(attrs["eos_id"]), arrays)


# ---------------------------------------------------------------- naive side: one cell

def source_step(layout: str, s: int, f: int, steps: int) -> int:
    """DESIGN §7: the step whose table row a layout reads at report step s for fixation f."""
    last = steps - 1
    if layout == "steps":
        return s
    if layout == "fixation_start":
        return min(s, f)
    if layout == "fixation_end":
        return max(0, f - last + s)
    return f * s // last if last > 0 else 0  # fixation_ratio


def mean_nll(item: Item, src: list[int], positions: list[int], j: int) -> float:
    """Mean NLL of label j over its positions in the view (EOS included, TOFU's avg_loss)."""
    losses = [-item.label_logp[src[l]][l][j] for l in positions if item.labels[j][l] >= 0]
    return sum(losses) / len(losses)


def counted(item: Item, positions: list[int], j: int) -> list[int]:
    """Label j's positions in the view except its last one (the EOS)."""
    last = max(l for l in range(len(item.labels[j])) if item.labels[j][l] >= 0)
    return [l for l in positions if item.labels[j][l] >= 0 and l != last]


def hits(item: Item, src: list[int], positions: list[int], j: int) -> list[bool]:
    return [item.argmax[src[l]][l] == item.labels[j][l] for l in counted(item, positions, j)]


def exact_memorization(item: Item, src: list[int], positions: list[int], j: int) -> float:
    h = hits(item, src, positions, j)
    return sum(h) / len(h) if h else math.nan  # no counted position: no value


def extraction_strength(item: Item, src: list[int], positions: list[int], j: int) -> float:
    """open-unlearning's loop: the first k whose suffix all matches, else n - 1; n = 0 gives 0."""
    h = hits(item, src, positions, j)
    n = len(h)
    k = next((k for k in range(n) if all(h[k:])), n - 1)
    return 1.0 - k / n if n else 0.0


def min_k(item: Item, src: list[int], positions: list[int], j: int, k: float) -> float:
    logps = [item.label_logp[src[l]][l][j] for l in counted(item, positions, j)]
    if not logps:
        return 0.0
    num_k = max(1, int(len(logps) * k))
    return -sum(sorted(logps)[:num_k]) / num_k


@dataclass
class Text:
    """The run's tokenizer and TOFU's text rules, applied afresh to every cell."""

    tokenizer: Any
    mask_id: int
    eos_text: str
    scorer: RougeScorer = field(default_factory=lambda: RougeScorer(["rouge1", "rougeL"], use_stemmer=True))

    def decode(self, ids: list[int]) -> str:
        text = self.tokenizer.decode([t for t in ids if t >= 0 and t != self.mask_id], skip_special_tokens=True)
        if self.eos_text:
            text = text.split(self.eos_text, 1)[0]
        return text.strip()


def rouge_recall(text: Text, item: Item, src: list[int], positions: list[int], j: int, rouge_type: str) -> float:
    """Recall of the prediction at this cell vs the answer (without its EOS), one rouge_score call."""
    prediction = [item.tokens[l] if item.fixation[l] <= src[l] else item.proposals[src[l]][l] for l in positions]
    answer = [t for t in item.labels[j] if t >= 0][:-1]
    scores = text.scorer.score(text.decode(answer), text.decode(prediction))
    return scores[rouge_type].recall


# ---------------------------------------------------------------- naive side: per-item values

def cell_function(metric: str, split: NaiveSplit, roles: dict[str, str], args: dict[str, Any], text: Text) -> Cell:
    """The per-cell formula of an item-level TOFU quantity, with its roles resolved to label columns."""
    if metric in ("truth_ratio", "probability_normalised"):
        (c,), perturbed = split.columns(roles["correct"]), split.columns(roles["perturbed"])
        if metric == "truth_ratio":  # exp(nll_correct - mean_k nll_perturbed_k), raw (no aggregator)
            return lambda it, src, pos: math.exp(
                mean_nll(it, src, pos, c) - sum(mean_nll(it, src, pos, p) for p in perturbed) / len(perturbed))
        return lambda it, src, pos: math.exp(-mean_nll(it, src, pos, c)) / (
            math.exp(-mean_nll(it, src, pos, c)) + sum(math.exp(-mean_nll(it, src, pos, p)) for p in perturbed))
    (j,) = split.columns(roles["target"])
    if metric == "probability":
        return lambda it, src, pos: math.exp(-mean_nll(it, src, pos, j))
    if metric == "rouge":
        return lambda it, src, pos: rouge_recall(text, it, src, pos, j, args["rouge_type"])
    if metric == "min_k_score":
        return lambda it, src, pos: min_k(it, src, pos, j, args["k"])
    formulas = {"exact_memorization": exact_memorization, "extraction_strength": extraction_strength}
    return lambda it, src, pos: formulas[metric](it, src, pos, j)


def item_values(split: NaiveSplit, cell: Cell) -> FloatArray:
    """cell at every (item, view, layout, step): (N, V, Y, S)."""
    steps, length = split.steps, split.length
    out = np.full((split.n_items, len(VIEWS), len(LAYOUTS), steps), np.nan)  # (N, V, Y, S)
    for i in range(split.n_items):
        item = split.item(i)
        for v, view in enumerate(VIEWS):
            positions = [l for l in range(length) if view == "full" or l < item.eos_len]
            for y, layout in enumerate(LAYOUTS):
                for s in range(steps):
                    src = [source_step(layout, s, item.fixation[l], steps) for l in range(length)]
                    out[i, v, y, s] = cell(item, src, positions)
    return out


@dataclass
class Naive:
    """The naive evaluator over the run and the reference; times its per-item work per (side, split).

    A quantity needed by two metrics (forget truth ratios for forget_truth_ratio and
    forget_quality) is computed once, so the naive time is not inflated by repeats.
    """

    paths: dict[str, Path]  # side ("run" | "reference") -> store
    splits: dict[tuple[str, str], NaiveSplit] = field(default_factory=dict)
    texts: dict[str, Text] = field(default_factory=dict)
    memo: dict[tuple[Any, ...], FloatArray] = field(default_factory=dict)
    seconds: dict[tuple[str, str], float] = field(default_factory=dict)  # item loops per (side, split)

    def split(self, side: str, name: str) -> NaiveSplit:
        if (side, name) not in self.splits:
            self.splits[side, name] = read_split(self.paths[side], name)
        return self.splits[side, name]

    def text(self, side: str, split: NaiveSplit) -> Text:
        if side not in self.texts:
            tokenizer = load_tokenizer(open_run(self.paths[side]).read_asset("tokenizer"))
            eos_text = tokenizer.decode([split.eos_id], skip_special_tokens=True)
            self.texts[side] = Text(tokenizer, split.mask_id, eos_text)
        return self.texts[side]

    def per_item(self, side: str, name: str, metric: str, roles: dict[str, str], args: dict[str, Any]) -> FloatArray:
        key = (side, name, metric, tuple(sorted(roles.items())), tuple(sorted(args.items())))
        if key not in self.memo:
            split = self.split(side, name)
            cell = cell_function(metric, split, roles, args, self.text(side, split))
            started = time.perf_counter()
            self.memo[key] = item_values(split, cell)
            self.seconds[side, name] = self.seconds.get((side, name), 0.0) + time.perf_counter() - started
        return self.memo[key]


# ---------------------------------------------------------------- naive side: dataset level, cell by cell

def per_cell(steps: int, reduce: Callable[[int, int, int], float]) -> FloatArray:
    """reduce(view, layout, step) at every cell: (V, Y, S)."""
    out = np.full((len(VIEWS), len(LAYOUTS), steps), np.nan)  # (V, Y, S)
    for v, y, s in np.ndindex(out.shape):
        out[v, y, s] = reduce(v, y, s)
    return out


def mean_of_items(values: FloatArray) -> FloatArray:
    """Mean over the items that have a value (NaN = none), summed in item order."""
    def reduce(v: int, y: int, s: int) -> float:
        present = [x for x in values[:, v, y, s].tolist() if not math.isnan(x)]
        total = 0.0  # one by one in item order (sum() compensates from Python 3.12 on)
        for x in present:
            total += x
        return total / len(present) if present else math.nan
    return per_cell(values.shape[-1], reduce)


def auc_pairwise(members: list[float], nonmembers: list[float]) -> float:
    """P(non-member scores above a member), ties 1/2: members labelled 0, non-members 1."""
    wins = 0.0
    for m in members:
        for x in nonmembers:
            wins += 1.0 if x > m else 0.5 if x == m else 0.0
    return wins / (len(members) * len(nonmembers))


def auc_cells(members: FloatArray, nonmembers: FloatArray) -> FloatArray:
    return per_cell(members.shape[-1], lambda v, y, s: auc_pairwise(members[:, v, y, s].tolist(), nonmembers[:, v, y, s].tolist()))


@dataclass(frozen=True)
class NaiveResult:
    values: FloatArray  # (V, Y, S)
    per_item: FloatArray | None = None  # (N, V, Y, S) for item-level metrics


def naive_metric(naive: Naive, binding: dict[str, Any], done: dict[str, NaiveResult]) -> NaiveResult:
    """One suite binding (configs/suites/tofu.toml) computed the straightforward way."""
    metric, splits, roles, args = binding["metric"], binding.get("splits", {}), binding.get("roles", {}), binding.get("args", {})
    if metric == "model_utility":
        parts = [done[name].values for name in args["components"]]
        return NaiveResult(per_cell(parts[0].shape[-1], lambda v, y, s: float(hmean([p[v, y, s] for p in parts]))))
    if metric in ("mia_min_k", "privleak"):
        return _membership(naive, metric, splits, roles, args)
    if metric == "forget_quality":
        tr = naive.per_item("run", splits["main"], "truth_ratio", roles, {})
        ref = naive.per_item("reference", splits["main"], "truth_ratio", roles, {})
        return NaiveResult(per_cell(tr.shape[-1], lambda v, y, s: float(ks_2samp(tr[:, v, y, s], ref[:, v, y, s]).pvalue)))
    own = {"rouge": {"rouge_type": args.get("rouge_type", "rougeL")}}.get(metric, {})
    raw = naive.per_item("run", splits["main"], metric, roles, own)
    shown = raw
    if metric == "truth_ratio":
        transform = TRUTH_RATIO_TRANSFORMS[args.get("aggregator", "closer_to_1")]
        shown = np.vectorize(transform, otypes=[np.float64])(raw)
    return NaiveResult(mean_of_items(shown), shown)


def _membership(naive: Naive, metric: str, splits: dict[str, str], roles: dict[str, str], args: dict[str, Any]) -> NaiveResult:
    """Min-k (k from the suite) AUC of forget (members) vs holdout (non-members); privleak vs the reference."""
    sides = ("run",) if metric == "mia_min_k" else ("run", "reference")
    scores = {(side, slot): naive.per_item(side, splits[slot], "min_k_score", roles, {"k": args["k"]})
              for side in sides for slot in ("members", "nonmembers")}
    aucs = [auc_cells(scores[side, "members"], scores[side, "nonmembers"]) for side in sides]
    if metric == "mia_min_k":
        return NaiveResult(aucs[0])
    auc, ref = aucs
    return NaiveResult(((1.0 - auc) - (1.0 - ref)) / ((1.0 - ref) + PRIVLEAK_EPS) * 100.0)


def naive_metrics(naive: Naive, suite: dict[str, Any]) -> dict[str, NaiveResult]:
    """Every metric of the suite; composites last, after their components."""
    bindings = suite["metrics"]
    order = sorted(bindings, key=lambda name: bindings[name]["metric"] == "model_utility")
    done: dict[str, NaiveResult] = {}
    for name in order:
        done[name] = naive_metric(naive, bindings[name], done)
    return done


# ---------------------------------------------------------------- comparison and report

@dataclass(frozen=True)
class Check:
    name: str
    exact: bool  # ROUGE: identical numbers required
    span: tuple[float, float]  # (min, max) of the library's (V, Y, S) values: the check is not vacuous
    values: tuple[float, float]  # (max |diff|, max relative diff) of the (V, Y, S) values
    items: tuple[float, float] | None  # the same over per-item values (item-level metrics)

    @property
    def ok(self) -> bool:
        compared = [d for d in (self.values, self.items) if d is not None]
        return all(d[0] == 0.0 if self.exact else d[1] <= REL_TOL for d in compared)


def differences(a: FloatArray, b: FloatArray) -> tuple[float, float]:
    """Largest absolute and relative difference; other shapes or NaN on one side only: infinite."""
    if a.shape != b.shape or np.any(np.isnan(a) != np.isnan(b)):
        return math.inf, math.inf
    both = ~np.isnan(a)
    diff = np.where(a[both] == b[both], 0.0, np.abs(a[both] - b[both]))
    scale = np.maximum(np.abs(a[both]), np.abs(b[both]))
    rel = np.where(diff == 0.0, 0.0, diff / np.where(scale > 0, scale, 1.0))
    return float(diff.max(initial=0.0)), float(rel.max(initial=0.0))


def compare(library: Results, naive: dict[str, NaiveResult], suite: dict[str, Any]) -> list[Check]:
    """Every library metric against the naive one: (V, Y, S) values, and per item where both have them."""
    checks = []
    for name, result in library.metrics.items():
        mine = naive[name]
        items = None
        if mine.per_item is not None:
            assert result.per_item is not None, "score_run was asked for per-item values"
            items = differences(result.per_item[1], mine.per_item)  # (N, V, Y, S)
        span = (float(np.nanmin(result.values)), float(np.nanmax(result.values)))
        checks.append(Check(name, suite["metrics"][name]["metric"] == "rouge", span, differences(result.values, mine.values), items))
    return checks


def _fmt(d: tuple[float, float] | None) -> str:
    return f"{d[0]:>10.3g} {d[1]:>10.3g}" if d is not None else f"{'-':>10} {'-':>10}"


def print_report(checks: list[Check], library: tuple[float, list[float]], naive: Naive, naive_total: float) -> None:
    print(f"\n{'metric':<24} {'library min..max':>19} {'rule':<5} {'|diff|':>10} {'rel':>10} {'item|diff|':>10} {'item rel':>10}  ok")
    for c in checks:
        span = f"{c.span[0]:.3g}..{c.span[1]:.3g}"
        print(f"{c.name:<24} {span:>19} {'exact' if c.exact else '1e-9':<5} {_fmt(c.values)} {_fmt(c.items)}  {'yes' if c.ok else 'NO'}")
    best, times = library
    print(f"\nlibrary score_run: best {best:.2f} s of {len(times)} ({', '.join(f'{t:.2f}' for t in times)})")
    loops = ", ".join(f"{side} {split} {t:.1f} s" for (side, split), t in sorted(naive.seconds.items()))
    print(f"naive item loops: {loops}")
    print(f"naive: {naive_total:.1f} s (all items)\nspeed-up: {naive_total / best:.1f}x")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=Path, default=ROOT / "benchmarks" / ".runs", help="fingerprint cache of the two runs")
    parser.add_argument("--limit", type=int, default=None, help="items per split to record (default: all)")
    parser.add_argument("--repeats", type=int, default=3, help="score_run timings; the best is reported")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # the tiny models gain nothing from threads on a shared machine
    assert LIBRARY_VIEWS == VIEWS and LIBRARY_LAYOUTS == LAYOUTS, "cell order differs from the library's"
    full, retain = record_pair(args.runs, args.limit)
    best, times, results = time_library(full, retain, args.repeats)
    suite = tomllib.loads(SUITE.read_text())
    naive = Naive({"run": full, "reference": retain})
    started = time.perf_counter()
    mine = naive_metrics(naive, suite)
    naive_total = time.perf_counter() - started
    checks = compare(results, mine, suite)
    print_report(checks, (best, times), naive, naive_total)
    failed = [c.name for c in checks if not c.ok]
    if failed:
        print(f"numbers disagree for: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
