"""rouge_recall against Google's rouge_score (the oracle TOFU uses), on hand cases and random text."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rouge_score.rouge_scorer import RougeScorer

from trajcache.errors import DataError
from trajcache.metrics.text import rouge_recall

ORACLE = RougeScorer(["rouge1", "rougeL"], use_stemmer=True)

# Words that exercise rouge_score's tokenizer: case, punctuation, digits, non-ASCII letters (which it
# treats as separators), Porter stem variants, short words (not stemmed) and literal mask tokens.
WORDS = [
    "The", "the", "THE", "running", "runs", "ran", "runner", "inspired", "inspiring", "generalization",
    "generalizations", "author's", "don't", "Zoë", "Álvarez", "Zürich", "café", "naïve", "1984",
    "29,564",
    "3.14", "5th", "#12", "[MASK]", "<|mdm_mask|>", "<mask>", "...", "-", "a", "is", "books", "book",
    "wrote", "writing", "writes", "Hsiao", "Yun-Hwa", "LGBTQ+", "e.g.", "\n", "\t", "",
]

phrases = st.lists(st.sampled_from(WORDS), max_size=12).map(" ".join)
texts = st.one_of(phrases, st.text(max_size=40))


def oracle(prediction: str, reference: str) -> tuple[float, float]:
    score = ORACLE.score(target=reference, prediction=prediction)
    return score["rouge1"].recall, score["rougeL"].recall


@settings(max_examples=150, deadline=None)
@given(pairs=st.lists(st.tuples(texts, texts), min_size=1, max_size=8))
def test_equals_rouge_score_on_random_text(pairs: list[tuple[str, str]]) -> None:
    predictions, references = [p for p, _ in pairs], [r for _, r in pairs]
    result = rouge_recall(predictions, references)
    expected = np.array([oracle(p, r) for p, r in pairs])  # (N, 2)
    assert result["rouge1"].dtype == np.float64 and result["rougeL"].dtype == np.float64
    np.testing.assert_array_equal(result["rouge1"], expected[:, 0])
    np.testing.assert_array_equal(result["rougeL"], expected[:, 1])


@pytest.mark.parametrize(
    ("prediction", "reference", "rouge1", "rougeL"),
    [
        ("testing", "testing one two", 1 / 3, 1 / 3),  # one of three reference words
        ("w1 w2 w4 w5 w3", "w1 w2 w3 w4 w5", 1.0, 4 / 5),  # all words, LCS of four
        ("They are running", "they run", 1.0, 1.0),  # case folded, "running" stems to "run"
        ("mask cats", "The cat [MASK]", 2 / 3, 1 / 3),  # "[MASK]" is the word "mask"
        ("", "some answer", 0.0, 0.0),  # empty prediction
        ("some answer", "", 0.0, 0.0),  # empty reference: rouge_score defines 0
        ("", "", 0.0, 0.0),
        ("...", "!!", 0.0, 0.0),  # punctuation only: no tokens
    ],
)
def test_hand_cases(prediction: str, reference: str, rouge1: float, rougeL: float) -> None:
    result = rouge_recall([prediction], [reference])
    assert result["rouge1"][0] == pytest.approx(rouge1, abs=1e-15)
    assert result["rougeL"][0] == pytest.approx(rougeL, abs=1e-15)
    assert (result["rouge1"][0], result["rougeL"][0]) == oracle(prediction, reference)


def test_argument_order_is_prediction_then_reference() -> None:
    # Recall divides by the reference length, so swapping the arguments changes the value.
    result = rouge_recall(["alpha"], ["alpha beta"])
    assert result["rouge1"][0] == 0.5
    assert rouge_recall(["alpha beta"], ["alpha"])["rouge1"][0] == 1.0


def test_empty_lists_give_empty_arrays() -> None:
    result = rouge_recall([], [])
    assert set(result) == {"rouge1", "rougeL"}
    for values in result.values():
        assert values.shape == (0,) and values.dtype == np.float64


def test_length_mismatch_is_an_error() -> None:
    with pytest.raises(DataError, match="2 predictions and 1 references"):
        rouge_recall(["a", "b"], ["a"])


def test_non_string_is_an_error() -> None:
    with pytest.raises(DataError, match=r"references\[1\] is NoneType"):
        rouge_recall(["a", "b"], ["a", None])  # type: ignore[list-item]
