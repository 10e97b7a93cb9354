"""Channels: the arrays metrics take, computed once per chunk of items from stored tables.

A chunk is a dict of stored fields for a run of consecutive items of one split. Every channel is
cached per (kind, role, field), so metrics asking for the same input share one computation; texts
are decoded once per distinct token row, and ROUGE is scored once per distinct (text, reference).
Shapes: N items in the chunk, V views, Y layouts, S steps, L positions, K perturbed answers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from .metrics.text import rouge_recall
from .trajectories import gather_steps, predicted_tokens, source_steps, view_masks

# Stored fields each channel kind reads (besides the field named by layout/raw channels).
KIND_FIELDS: dict[str, tuple[str, ...]] = {
    "nll": ("label_logp", "labels", "fixation", "eos_len"),
    "token_logp": ("label_logp", "labels", "fixation", "eos_len"),
    "hits": ("argmax", "labels", "fixation", "eos_len"),
    "rouge1": ("tokens", "argmax", "labels", "fixation", "eos_len"),
    "rougeL": ("tokens", "argmax", "labels", "fixation", "eos_len"),
    "view_mask": ("eos_len",),
    "layout": ("fixation",),
    "raw": (),
}


class Decoder(Protocol):
    def batch_decode(self, sequences: list[list[int]], skip_special_tokens: bool = ...) -> list[str]: ...


@dataclass(frozen=True)
class TextRules:
    """How token rows become text (TOFU): special tokens skipped, cut at the EOS text, stripped.

    `drop` holds ids that must never reach the text (the mask id: "[MASK]" would score as a word).
    """

    decoder: Decoder
    eos_text: str
    drop: frozenset[int]

    def decode(self, rows: Sequence[np.ndarray]) -> list[str]:
        clean = [[int(t) for t in row if t >= 0 and int(t) not in self.drop] for row in rows]
        texts = self.decoder.batch_decode(clean, skip_special_tokens=True)
        if self.eos_text:
            texts = [t.split(self.eos_text, 1)[0] for t in texts]
        return [t.strip() for t in texts]


@dataclass
class Chunk:
    """Stored fields of a chunk of items of one split, and the channels computed from them."""

    tables: dict[str, np.ndarray]
    roles: tuple[str, ...]
    steps: int
    text: TextRules | None = None
    _cache: dict[tuple[str, str | None, str | None], Any] = field(default_factory=dict)

    def channel(self, kind: str, role: str | None, field_name: str | None = None) -> np.ndarray:
        key = (kind, role, field_name)
        if key not in self._cache:
            self._cache[key] = self._compute(kind, role, field_name)
        return self._cache[key]

    # -- shared intermediates -------------------------------------------------------------
    def _memo(self, key: str, make: Callable[[], Any]) -> Any:
        cache_key = ("_" + key, None, None)
        if cache_key not in self._cache:
            self._cache[cache_key] = make()
        return self._cache[cache_key]

    @property
    def src(self) -> np.ndarray:  # (N, Y, S, L)
        return self._memo("src", lambda: source_steps(self.tables["fixation"], self.steps))

    @property
    def views(self) -> np.ndarray:  # (N, V, L)
        length = self.tables["labels"].shape[-1] if "labels" in self.tables else self.tables["fixation"].shape[-1]
        return self._memo("views", lambda: view_masks(self.tables["eos_len"], length))

    def _role_indices(self, role: str | None) -> list[int]:
        if role is None:
            raise KeyError("role")
        if role in self.roles:
            return [self.roles.index(role)]
        group = [j for j, r in enumerate(self.roles) if r.startswith(role + "_")]
        if not group:
            raise KeyError(role)
        return group

    def _gathered_logp(self) -> np.ndarray:  # (N, Y, S, L, J)
        return self._memo("logp", lambda: gather_steps(self.tables["label_logp"], self.src))

    # -- channel kinds ---------------------------------------------------------------------
    def _compute(self, kind: str, role: str | None, field_name: str | None) -> np.ndarray:
        if kind == "view_mask":
            return self.views
        if kind == "raw":
            return self.tables[field_name]  # type: ignore[index]
        if kind == "layout":
            return gather_steps(self.tables[field_name], self.src)  # type: ignore[index]
        columns = self._role_indices(role)
        per_role = [self._one_role(kind, j) for j in columns]
        grouped = role is not None and role not in self.roles
        return np.stack(per_role, axis=-1) if grouped else per_role[0]

    def _one_role(self, kind: str, j: int) -> np.ndarray:
        labels = self.tables["labels"][:, j]  # (N, L)
        if kind == "nll":
            return _mean_nll(self._gathered_logp()[..., j], labels >= 0, self.views)
        if kind == "token_logp":
            return _masked(self._gathered_logp()[..., j], _without_last(labels), self.views)
        if kind == "hits":
            hits = (gather_steps(self.tables["argmax"], self.src) == labels[:, None, None, :]).astype(np.float64)
            return _masked(hits, _without_last(labels), self.views)
        return self._rouge(j)[kind]

    def _rouge(self, j: int) -> dict[str, np.ndarray]:
        return self._memo(f"rouge{j}", lambda: _rouge_channels(self, j))


def _without_last(labels: np.ndarray) -> np.ndarray:
    """Label positions except each label's last one (its EOS): (N, L) bool."""
    present = labels >= 0
    last = present.sum(-1) - 1  # (N,)
    return present & (np.arange(labels.shape[-1])[None, :] != last[:, None])


def _mean_nll(logp: np.ndarray, labelled: np.ndarray, views: np.ndarray) -> np.ndarray:
    """Mean NLL over labelled positions per view: logp (N, Y, S, L) -> (N, V, Y, S)."""
    mask = (labelled[:, None, :] & views)[:, :, None, None, :]  # (N, V, 1, 1, L)
    values = np.where(mask, -logp[:, None].astype(np.float64), 0.0)
    return values.sum(-1) / mask.sum(-1)


def _masked(values: np.ndarray, counted: np.ndarray, views: np.ndarray) -> np.ndarray:
    """values (N, Y, S, L) -> (N, V, Y, S, L) float64 with NaN where not counted in the view."""
    mask = (counted[:, None, :] & views)[:, :, None, None, :]
    return np.where(mask, values[:, None].astype(np.float64), np.nan)


def _rouge_channels(chunk: Chunk, j: int) -> dict[str, np.ndarray]:
    """ROUGE-1/L recall of the predicted text per (item, view, layout, step) against role j."""
    if chunk.text is None:
        raise RuntimeError("a ROUGE channel needs the run's tokenizer")
    t = chunk.tables
    proposals = t["x0"] if "x0" in t else t["argmax"]
    pred = predicted_tokens(t["tokens"], t["fixation"], proposals, chunk.src)  # (N, Y, S, L)
    n, y, s, length = pred.shape
    rows = np.repeat(pred[:, None], 2, axis=1)  # (N, V, Y, S, L)
    beyond = np.arange(length)[None, :] >= t["eos_len"][:, None]  # (N, L)
    rows[:, 1][np.broadcast_to(beyond[:, None, None, :], (n, y, s, length))] = -1
    unique_rows, row_of = _distinct_rows(rows.reshape(-1, length))
    texts = chunk.text.decode(list(unique_rows))
    refs = chunk.text.decode(list(_strip_last(t["labels"][:, j])))
    item_of = np.repeat(np.arange(n), 2 * y * s)
    # Distinct (text, item) pairs: ROUGE once per pair, however many cells share it.
    pairs, pair_of = np.unique(row_of * n + item_of, return_inverse=True)
    scores = rouge_recall([texts[p // n] for p in pairs], [refs[p % n] for p in pairs])
    shape = (n, 2, y, s)
    return {name: values[pair_of.ravel()].reshape(shape) for name, values in scores.items()}


def _distinct_rows(flat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct rows of flat (R, L) in first-seen order, and each row's index among them.

    Hashing row bytes is ~10x faster than np.unique(axis=0), which sorts rows as void scalars."""
    keys = [row.tobytes() for row in flat]
    index: dict[bytes, int] = {}
    row_of = np.fromiter((index.setdefault(k, len(index)) for k in keys), dtype=np.int64, count=len(keys))
    distinct = np.frombuffer(b"".join(index), dtype=flat.dtype).reshape(len(index), flat.shape[1])
    return distinct, row_of


def _strip_last(labels: np.ndarray) -> list[np.ndarray]:
    """Each label row without its EOS (the reference text is the answer as the model writes it)."""
    return [row[row >= 0][:-1] for row in labels]
