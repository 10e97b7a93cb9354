"""Layouts and views: index arithmetic that turns stored per-step tables into metric inputs.

A layout maps a report step s and a generated position l to the source step whose table row
is read there (DESIGN §7); a view chooses the positions that count. Everything here is numpy
gathers over (item, layout, step, position): no model, no store, no metric knowledge.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from numpy.typing import NDArray

Layout = Literal["steps", "fixation_start", "fixation_end", "fixation_ratio"]
View = Literal["full", "eos"]
LAYOUTS: tuple[Layout, ...] = ("steps", "fixation_start", "fixation_end", "fixation_ratio")
VIEWS: tuple[View, ...] = ("full", "eos")

IntArray = NDArray[np.integer]
BoolArray = NDArray[np.bool_]


def source_steps(fixation: IntArray, steps: int) -> IntArray:
    """Source step of every (item, layout, report step, position): (N, Y, S, L) int64.

    fixation (N, L) holds the step at which each position was committed, in [0, S-1].
    steps: s; fixation_start: min(s, F); fixation_end: max(0, F - (S-1) + s);
    fixation_ratio: floor(F * s / (S-1)) (0 when S == 1). All three fixation layouts end at F.
    """
    f = fixation.astype(np.int64)[:, None, :]  # (N, 1, L)
    s = np.arange(steps, dtype=np.int64)[None, :, None]  # (1, S, 1)
    last = steps - 1
    by_step = np.broadcast_to(s, (f.shape[0], steps, f.shape[2]))
    start = np.minimum(s, f)
    end = np.maximum(0, f - last + s)
    ratio = (f * s) // last if last > 0 else np.zeros_like(by_step)
    return np.stack([by_step, start, end, ratio], axis=1)  # (N, Y, S, L)


def gather_steps(table: np.ndarray, src: IntArray) -> np.ndarray:
    """Read table (N, S, L, ...) at src (N, Y, S, L): returns (N, Y, S, L, ...)."""
    n, _, _, length = src.shape
    items = np.arange(n)[:, None, None, None]
    positions = np.arange(length)[None, None, None, :]
    return table[items, src, positions]


def view_masks(eos_len: IntArray, length: int) -> BoolArray:
    """Positions that count per view: (N, V, L). full = all L; eos = positions < eos_len."""
    positions = np.arange(length)[None, :]
    eos = positions < eos_len.astype(np.int64)[:, None]  # (N, L)
    return np.stack([np.ones_like(eos), eos], axis=1)


def predicted_tokens(tokens: IntArray, fixation: IntArray, proposals: np.ndarray, src: IntArray) -> IntArray:
    """Prediction text tokens per (item, layout, step, position): (N, Y, S, L).

    The committed token where the position is committed by its source step (F <= src), else the
    sampler's proposal at that step; so the last step of every layout reads the final canvas.
    proposals (N, S, L) is `x0` (or `argmax` at temperature 0).
    """
    committed = fixation[:, None, None, :] <= src  # (N, Y, S, L)
    proposal = gather_steps(proposals, src)
    return np.where(committed, tokens[:, None, None, :], proposal)
