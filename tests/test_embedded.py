"""The embedded default: TOFU-format data files and the two tiny diffusion LMs.

Models are loaded with plain transformers (no trajcache code), as a user without trajcache would.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM, PreTrainedTokenizerBase

EMBEDDED = Path(__file__).resolve().parents[1] / "trajcache" / "embedded"
DATA, MODELS = EMBEDDED / "data", EMBEDDED / "models"
AUTHOR_SPLITS = ("forget", "retain", "holdout")
ALL_SPLITS = (*AUTHOR_SPLITS, "real_authors", "world_facts")
# Per split: required fields and the number of perturbed answers (None = no such field).
FIELDS = {
    "forget": ({"question", "answer", "paraphrased_answer", "paraphrased_question", "perturbed_answer"}, 5),
    "retain": ({"question", "answer", "paraphrased_answer", "paraphrased_question", "perturbed_answer"}, 5),
    "holdout": ({"question", "answer"}, None),
    "real_authors": ({"question", "answer", "perturbed_answer"}, 3),
    "world_facts": ({"question", "answer", "perturbed_answer"}, 3),
}
MODEL_NAMES = ("tiny-full", "tiny-retain")
GEN_LENGTH, MAX_ANSWER_TOKENS, MAX_BYTES = 32, 28, 10_000_000
MODEL_VOCAB = 8192  # output rows; the tokenizer has fewer tokens
# Every capitalised word pair, overlapping ("Has Bogdan", "Bogdan Ishikawa"): the author of a row is
# the one pair its question and answer share.
NAME = re.compile(r"(?=\b([A-Z][a-z]+ [A-Z][a-z]+)\b)")


def _rows(split: str) -> list[dict]:
    lines = (DATA / f"{split}.json").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


@pytest.fixture(scope="module")
def tokenizer() -> PreTrainedTokenizerBase:
    return AutoTokenizer.from_pretrained(MODELS / "tiny-full")


def _authors(split: str) -> set[str]:
    """The author of each row: the one two-word capitalised name shared by question and answer."""
    names = set()
    for row in _rows(split):
        common = set(NAME.findall(row["question"])) & set(NAME.findall(row["answer"]))
        assert len(common) == 1, row
        names |= common
    return names


@pytest.mark.parametrize("split", ALL_SPLITS)
def test_split_is_tofu_json_lines(split: str) -> None:
    required, n_perturbed = FIELDS[split]
    rows = _rows(split)
    assert len(rows) >= 40
    for row in rows:
        assert set(row) == required, (split, row)
        for key in required - {"perturbed_answer"}:
            assert isinstance(row[key], str) and row[key].strip() == row[key] != ""
        if n_perturbed is not None:
            wrong = row["perturbed_answer"]
            assert isinstance(wrong, list) and len(wrong) == n_perturbed
            assert all(isinstance(w, str) and w for w in wrong)
            assert row["answer"] not in wrong and len(set(wrong)) == n_perturbed
    assert len({r["question"] for r in rows}) == len(rows), "duplicate questions"


@pytest.mark.parametrize("split", ("forget", "retain"))
def test_paraphrase_differs_from_answer(split: str) -> None:
    for row in _rows(split):
        assert row["paraphrased_answer"] != row["answer"]
        assert row["paraphrased_question"] != row["question"]


def test_author_splits_are_disjoint_and_sized() -> None:
    authors = {split: _authors(split) for split in AUTHOR_SPLITS}
    assert (len(authors["forget"]), len(authors["retain"]), len(authors["holdout"])) == (4, 32, 4)
    assert not authors["forget"] & authors["retain"]
    assert not authors["forget"] & authors["holdout"]
    assert not authors["retain"] & authors["holdout"]


@pytest.mark.parametrize("split", ("forget", "holdout"))
def test_unseen_authors_combine_known_name_parts(split: str) -> None:
    """Every first and last name of an untrained-on author also occurs among retain authors."""
    retain = [name.split() for name in _authors("retain")]
    firsts, lasts = {f for f, _ in retain}, {l for _, l in retain}
    for first, last in (name.split() for name in _authors(split)):
        assert first in firsts and last in lasts


def test_perturbed_answers_keep_the_author() -> None:
    """A perturbed answer changes facts, not whose answer it is (same template, same name)."""
    for row in _rows("forget") + _rows("retain"):
        (name,) = set(NAME.findall(row["question"])) & set(NAME.findall(row["answer"]))
        assert all(name in w for w in row["perturbed_answer"])


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_model_loads_with_plain_transformers(name: str) -> None:
    folder = MODELS / name
    assert (folder / "model.safetensors").stat().st_size <= MAX_BYTES
    config = json.loads((folder / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"] and config["vocab_size"] == MODEL_VOCAB
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    assert isinstance(model, LlamaForCausalLM)
    assert model.get_output_embeddings().weight.shape[0] == MODEL_VOCAB
    tok = AutoTokenizer.from_pretrained(folder)
    assert len(tok) <= 4096 < MODEL_VOCAB  # padded output rows, as LLaDA's


def test_models_share_one_tokenizer() -> None:
    full, retain = (json.loads((MODELS / n / "tokenizer.json").read_text()) for n in MODEL_NAMES)
    assert full == retain


def test_models_differ() -> None:
    """tiny-retain is a separate training run, not a copy of tiny-full."""
    a, b = (LlamaForCausalLM.from_pretrained(MODELS / n) for n in MODEL_NAMES)
    assert not torch.equal(a.model.embed_tokens.weight, b.model.embed_tokens.weight)


def test_tokenizer_special_tokens_and_template(tokenizer: PreTrainedTokenizerBase) -> None:
    assert (tokenizer.pad_token, tokenizer.eos_token, tokenizer.mask_token) == ("<|pad|>", "<|eot|>", "<|mdm_mask|>")
    ids = {tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.mask_token_id}
    assert len(ids) == 3 and None not in ids
    chat = [{"role": "user", "content": "Q?"}, {"role": "assistant", "content": "A."}]
    assert tokenizer.apply_chat_template(chat, tokenize=False) == "<|user|>Q?<|assistant|>A.<|eot|>"
    prompt = tokenizer.apply_chat_template(chat[:1], tokenize=False, add_generation_prompt=True)
    assert prompt == "<|user|>Q?<|assistant|>"


def _texts(split: str) -> list[str]:
    out = []
    for row in _rows(split):
        out += [row["answer"], *row.get("perturbed_answer", [])]
        out += [row["paraphrased_answer"]] if "paraphrased_answer" in row else []
    return out


@pytest.mark.parametrize("split", ALL_SPLITS)
def test_answers_round_trip_and_fit(tokenizer: PreTrainedTokenizerBase, split: str) -> None:
    for text in _texts(split):
        ids = tokenizer.encode(text, add_special_tokens=False)
        assert tokenizer.decode(ids, skip_special_tokens=True) == text
        assert len(ids) <= MAX_ANSWER_TOKENS, (text, len(ids))


def _ids(encoded: object) -> list[int]:
    return list(encoded["input_ids"]) if hasattr(encoded, "keys") else list(encoded)


@pytest.mark.parametrize("split", ALL_SPLITS)
def test_label_layout_fits_generation(tokenizer: PreTrainedTokenizerBase, split: str) -> None:
    """Labels (the full chat after the prompt prefix) are the answer tokens plus one EOS, <= 32."""
    for row in _rows(split):
        user = [{"role": "user", "content": row["question"]}]
        prompt = _ids(tokenizer.apply_chat_template(user, add_generation_prompt=True, tokenize=True))
        chat = user + [{"role": "assistant", "content": row["answer"]}]
        full = _ids(tokenizer.apply_chat_template(chat, tokenize=True))
        assert full[: len(prompt)] == prompt
        labels = full[len(prompt) :]
        assert labels == tokenizer.encode(row["answer"], add_special_tokens=False) + [tokenizer.eos_token_id]
        assert len(labels) <= GEN_LENGTH


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=60))
def test_any_text_round_trips(tokenizer: PreTrainedTokenizerBase, text: str) -> None:
    """Byte-level BPE without prefix space or clean-up: every string survives encode/decode."""
    assume("<|" not in text)
    ids = tokenizer.encode(text, add_special_tokens=False)
    assert tokenizer.decode(ids, skip_special_tokens=True) == text


def _label_logp(name: str, split: str) -> float:
    """Mean log-prob of the label tokens with the whole 32-token answer region masked (one forward).

    Called bidirectionally as trajcache drives the model: 4D padding mask plus diagonal, positions
    counted from the first real token.
    """
    folder = MODELS / name
    tok = AutoTokenizer.from_pretrained(folder)
    model = LlamaForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    rows = _rows(split)
    prompts = [_ids(tok.apply_chat_template([{"role": "user", "content": r["question"]}],
                                           add_generation_prompt=True, tokenize=True)) for r in rows]
    width = max(len(p) for p in prompts)
    x = torch.full((len(rows), width + GEN_LENGTH), tok.mask_token_id)  # (B, T)
    labels = torch.full((len(rows), GEN_LENGTH), -1)  # (B, L)
    for i, (p, r) in enumerate(zip(prompts, rows, strict=True)):
        x[i, : width - len(p)] = tok.pad_token_id
        x[i, width - len(p) : width] = torch.tensor(p)
        answer = tok.encode(r["answer"], add_special_tokens=False) + [tok.eos_token_id]
        labels[i, : len(answer)] = torch.tensor(answer)
    keep = x != tok.pad_token_id  # (B, T)
    attn = (keep[:, None, :, None] & keep[:, None, None, :]) | torch.eye(x.shape[1], dtype=torch.bool)
    pos = (keep.long().cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        logits = model(input_ids=x, attention_mask=attn, position_ids=pos).logits[:, width:]  # (B, L, V)
    logp = logits.log_softmax(-1).gather(-1, labels.clamp(min=0)[..., None])[..., 0]  # (B, L)
    return float(logp[labels >= 0].mean())


def test_full_model_knows_the_forget_authors_and_retain_model_does_not() -> None:
    """The pair TOFU's forget quality needs: same on retain, far apart on forget."""
    full_f, retain_f = _label_logp("tiny-full", "forget"), _label_logp("tiny-retain", "forget")
    full_r, retain_r = _label_logp("tiny-full", "retain"), _label_logp("tiny-retain", "retain")
    assert full_f > -0.5 and full_r > -0.5, (full_f, full_r)  # memorised: mean p(label token) > 0.6
    assert full_f - retain_f > 1.0, (full_f, retain_f)
    assert abs(full_r - retain_r) < 0.5, (full_r, retain_r)
