"""Text metrics on decoded strings: ROUGE-1 and ROUGE-L recall, TOFU's ROUGE.

TOFU / open-unlearning score `rouge_score.rouge_scorer.RougeScorer(["rouge1", "rougeL"],
use_stemmer=True).score(target=ground_truth, prediction=generation)` and keep the recall.
`rouge_score_rs` is an independent implementation that gives bit-identical scores (same tokenizer
and Porter stemmer) 30-50x faster, on all cores via `score_batch`; rouge_score stays the test
oracle. Decoding, EOS cutting and mask removal happen before this module: it sees plain strings.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray
from rouge_score_rs import RougeScorer

from ..errors import DataError

FloatArray = NDArray[np.float64]

ROUGE_TYPES = ("rouge1", "rougeL")


def rouge_recall(predictions: Sequence[str], references: Sequence[str]) -> dict[str, FloatArray]:
    """ROUGE-1 and ROUGE-L recall of each prediction against its reference, as rouge_score gives.

    Returns float64 arrays (N,) under "rouge1" and "rougeL". Recall is |overlap| / |reference
    tokens|; rouge_score defines it as 0 when either side has no token (empty or punctuation-only
    strings), and so does this function.
    """
    if len(predictions) != len(references):
        raise DataError(
            f"rouge_recall got {len(predictions)} predictions and {len(references)} references; "
            "pass one reference per prediction"
        )
    for name, texts in (("predictions", predictions), ("references", references)):
        for index, text in enumerate(texts):
            if not isinstance(text, str):
                raise DataError(f"rouge_recall {name}[{index}] is {type(text).__name__}; pass decoded str")
    scorer = RougeScorer(list(ROUGE_TYPES), use_stemmer=True)
    scores = scorer.score_batch(list(references), list(predictions))  # targets first, as score()
    return {
        rouge_type: np.array([score[rouge_type].recall for score in scores], dtype=np.float64)
        for rouge_type in ROUGE_TYPES
    }
