"""Layouts and views: index maps in range, the endpoints of DESIGN §7, gathers equal naive loops."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from trajcache.trajectories import LAYOUTS, gather_steps, predicted_tokens, source_steps, view_masks


@st.composite
def fixations(draw: st.DrawFn) -> tuple[np.ndarray, int]:
    steps = draw(st.integers(1, 12))
    n = draw(st.integers(1, 4))
    length = draw(st.integers(1, 10))
    values = draw(st.lists(st.integers(0, steps - 1), min_size=n * length, max_size=n * length))
    return np.array(values, dtype=np.int16).reshape(n, length), steps


@settings(max_examples=200, deadline=None)
@given(fixations())
def test_source_steps_in_range_with_design_endpoints(case: tuple[np.ndarray, int]) -> None:
    fixation, steps = case
    src = source_steps(fixation, steps)  # (N, Y, S, L)
    assert src.shape == (fixation.shape[0], 4, steps, fixation.shape[1])
    assert src.min() >= 0 and src.max() <= steps - 1
    f = fixation.astype(np.int64)
    # steps: s itself; fixation layouts start at 0 (start, ratio) and all three end at F.
    assert (src[:, 0] == np.arange(steps)[None, :, None]).all()
    assert (src[:, 1, 0] == 0).all() and (src[:, 3, 0] == 0).all()
    for y in (1, 2, 3):
        assert (src[:, y, -1] == f).all()
    # fixation_end reaches F exactly at the last step and is non-decreasing in s.
    assert (np.diff(src, axis=2) >= 0).all()


def test_source_steps_hand_case() -> None:
    fixation = np.array([[0, 2, 4]], dtype=np.int16)  # S = 5
    src = source_steps(fixation, 5)[0]  # (Y, S, L)
    assert src[LAYOUTS.index("fixation_start")].T.tolist() == [[0, 0, 0, 0, 0], [0, 1, 2, 2, 2], [0, 1, 2, 3, 4]]
    assert src[LAYOUTS.index("fixation_end")].T.tolist() == [[0, 0, 0, 0, 0], [0, 0, 0, 1, 2], [0, 1, 2, 3, 4]]
    assert src[LAYOUTS.index("fixation_ratio")].T.tolist() == [[0, 0, 0, 0, 0], [0, 0, 1, 1, 2], [0, 1, 2, 3, 4]]


def test_gather_equals_loop() -> None:
    rng = np.random.default_rng(0)
    table = rng.normal(size=(3, 6, 5, 2))
    fixation = rng.integers(0, 6, size=(3, 5))
    src = source_steps(fixation, 6)
    got = gather_steps(table, src)
    for n in range(3):
        for y in range(4):
            for s in range(6):
                for pos in range(5):
                    assert (got[n, y, s, pos] == table[n, src[n, y, s, pos], pos]).all()


def test_views_and_predictions() -> None:
    masks = view_masks(np.array([2, 4]), 4)
    assert masks[:, 0].all() and masks[0, 1].tolist() == [True, True, False, False] and masks[1, 1].all()
    tokens = np.array([[7, 8, 9]])
    fixation = np.array([[0, 1, 2]])
    proposals = np.array([[[1, 2, 3], [4, 5, 6], [10, 11, 12]]])  # (N, S, L)
    pred = predicted_tokens(tokens, fixation, proposals, source_steps(fixation, 3))
    # steps layout at s = 1: position 0 committed (F=0), 1 committed at this step, 2 still a proposal.
    assert pred[0, 0, 1].tolist() == [7, 8, 6]
    assert pred[0, 0, 2].tolist() == [7, 8, 9]
