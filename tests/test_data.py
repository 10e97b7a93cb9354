"""Tests for trajcache.data (reading, validation, encoding) and trajcache.suites."""

from __future__ import annotations

import hashlib
import importlib.machinery
import json
import sys
import tempfile
import types
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from trajcache.data import EncodedItem, Item, Split, encode_split, read_split
from trajcache.errors import ConfigError, DataError, ModelError

TOFU_DATA = Path(__file__).resolve().parents[2] / "shared" / "tofu" / "data"
EMBEDDED_DATA = Path(__file__).resolve().parents[1] / "trajcache" / "embedded" / "data"
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}"
    "{% if m['role'] == 'assistant' %}<|eot|>{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
FULL_ROLES = ["answer", "paraphrase", "perturbed"]


def tofu_row(i: int, perturbed: int = 3) -> dict[str, Any]:
    return {
        "question": f"Who wrote book {i}?",
        "answer": f"Author {i} wrote it.",
        "paraphrased_answer": f"It was written by author {i}.",
        "paraphrased_question": f"Book {i} was written by whom?",
        "perturbed_answer": [f"Author {i + k + 1} wrote it." for k in range(perturbed)],
    }


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_parquet(path: Path, rows: list[dict[str, Any]]) -> Path:
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


@pytest.fixture(scope="module")
def tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained here, with the embedded models' special tokens and chat template."""
    lines = (TOFU_DATA / "world_facts_perturbed.json").read_text().splitlines()
    corpus = [json.loads(line)["question"] + " " + json.loads(line)["answer"] for line in lines]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    special = ["<|pad|>", "<|eot|>", "<|mdm_mask|>", "<|user|>", "<|assistant|>"]
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=special, initial_alphabet=alphabet)
    bpe.train_from_iterator(corpus, trainer)
    return _with_template(bpe, CHAT_TEMPLATE)


# ------------------------------------------------------------------------------- real files


@pytest.mark.parametrize(("file", "rows"), [("real_authors_perturbed.json", 100), ("world_facts_perturbed.json", 117)])
def test_real_tofu_files_load(file: str, rows: int) -> None:
    split = read_split("ra", TOFU_DATA / file, ["answer", "perturbed"])
    assert len(split.items) == rows
    assert split.roles == ("answer", "perturbed_0", "perturbed_1", "perturbed_2")
    first = json.loads((TOFU_DATA / file).read_text().splitlines()[0])
    item = split.items[0]
    assert item.id == "ra/0" and split.items[-1].id == f"ra/{rows - 1}"
    assert item.question == first["question"] and item.answers["answer"] == first["answer"]
    assert [item.answers[f"perturbed_{k}"] for k in range(3)] == first["perturbed_answer"]


def test_real_tofu_without_paraphrase_is_an_error() -> None:
    path = TOFU_DATA / "real_authors_perturbed.json"
    expected = r"real_authors_perturbed\.json: line 1: field 'paraphrased_answer' is missing"
    with pytest.raises(DataError, match=expected):
        read_split("ra", path, FULL_ROLES)


def test_json_jsonl_parquet_give_identical_splits(tmp_path: Path) -> None:
    rows = [json.loads(line) for line in (TOFU_DATA / "world_facts_perturbed.json").read_text().splitlines()]
    array = tmp_path / "wf.json"
    array.write_text(json.dumps(rows, indent=2))
    paths = [array, write_jsonl(tmp_path / "wf.jsonl", rows), write_parquet(tmp_path / "wf.parquet", rows)]
    splits = [read_split("wf", p, ["answer", "perturbed"]) for p in paths]
    reference = read_split("wf", TOFU_DATA / "world_facts_perturbed.json", ["answer", "perturbed"])
    for split in splits:
        assert (split.roles, split.items) == (reference.roles, reference.items)


texts = st.text(min_size=1, max_size=30).filter(lambda s: s.strip() != "")
tofu_rows = st.lists(
    st.fixed_dictionaries(
        {
            "question": texts,
            "answer": texts,
            "paraphrased_answer": texts,
            "perturbed_answer": st.lists(texts, min_size=2, max_size=2),
        }
    ),
    min_size=1,
    max_size=4,
)


@settings(max_examples=25, deadline=None)
@given(rows=tofu_rows)
def test_formats_round_trip_any_text(rows: list[dict[str, Any]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "a.json").write_text(json.dumps(rows))
        paths = [folder / "a.json", write_jsonl(folder / "a.jsonl", rows), write_parquet(folder / "a.parquet", rows)]
        splits = [read_split("s", p, FULL_ROLES) for p in paths]
    for split in splits:
        assert split.items == splits[0].items
        for item, row in zip(split.items, rows):
            assert item.question == row["question"]
            assert list(item.answers.values()) == [row["answer"], row["paraphrased_answer"], *row["perturbed_answer"]]


def test_roles_not_required_are_ignored_and_ordered(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "f.jsonl", [tofu_row(0, perturbed=2)])
    assert read_split("h", path, ["answer"]).roles == ("answer",)
    assert read_split("f", path, ["perturbed", "answer"]).roles == ("answer", "perturbed_0", "perturbed_1")


def test_limit_keeps_the_first_rows(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "f.jsonl", [tofu_row(i) for i in range(5)])
    split = read_split("f", path, FULL_ROLES, limit=2)
    assert [i.id for i in split.items] == ["f/0", "f/1"]
    with pytest.raises(ConfigError, match="--limit"):
        read_split("f", path, FULL_ROLES, limit=0)


@pytest.mark.parametrize("roles", [[], ["answer", "answer"], ["answer", "perturbed_0"]])
def test_invalid_role_groups(tmp_path: Path, roles: list[str]) -> None:
    with pytest.raises(ConfigError, match="roles"):
        read_split("f", write_jsonl(tmp_path / "f.jsonl", [tofu_row(0)]), roles)


# -------------------------------------------------------------------------- malformed input


def _rows_with(index: int, **changes: Any) -> list[dict[str, Any]]:
    rows = [tofu_row(i) for i in range(3)]
    for key, value in changes.items():
        if value is None:
            del rows[index][key]
        else:
            rows[index][key] = value
    return rows


JSONL_CASES = {
    "missing answer": (_rows_with(1, answer=None), ["line 2", "'answer'", "missing"]),
    "missing question": (_rows_with(0, question=None), ["line 1", "'question'", "missing"]),
    "empty question": (_rows_with(0, question=""), ["line 1", "'question'", "empty"]),
    "blank answer": (_rows_with(2, answer="  \n"), ["line 3", "'answer'", "empty"]),
    "number as answer": (_rows_with(1, answer=42), ["line 2", "'answer'", "must be text", "int"]),
    "list as paraphrase": (_rows_with(1, paraphrased_answer=["a"]), ["line 2", "'paraphrased_answer'", "list"]),
    "perturbed not a list": (_rows_with(0, perturbed_answer="no"), ["line 1", "'perturbed_answer'", "list of strings"]),
    "perturbed empty": (_rows_with(0, perturbed_answer=[]), ["line 1", "'perturbed_answer'", "non-empty list"]),
    "number in perturbed": (_rows_with(2, perturbed_answer=["a", 7, "c"]), ["line 3", "'perturbed_answer[1]'", "int"]),
    "empty perturbed entry": (_rows_with(1, perturbed_answer=["a", ""]), ["line 2", "'perturbed_answer[1]'", "empty"]),
    "perturbed counts differ": (_rows_with(2, perturbed_answer=["a"]), ["line 3", "'perturbed_answer' has 1 entries"]),
    "row not an object": ([tofu_row(0), ["question", "answer"]], ["line 2", "expected an object"]),
}


@pytest.mark.parametrize("case", list(JSONL_CASES))
def test_malformed_rows_name_file_row_and_field(tmp_path: Path, case: str) -> None:
    rows, fragments = JSONL_CASES[case]
    path = write_jsonl(tmp_path / "bad.json", rows)
    _assert_one_line_error(path, fragments)


def _assert_one_line_error(path: Path, fragments: Sequence[str]) -> None:
    """read_split fails with one DataError line naming the file and every expected fragment."""
    with pytest.raises(DataError) as info:
        read_split("f", path, FULL_ROLES)
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    for fragment in fragments:
        assert fragment in message


def _write(name: str, text: str) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        (folder / name).write_text(text)
        return folder / name

    return make


ROW0, ROW1 = json.dumps(tofu_row(0)), json.dumps(tofu_row(1))
FILE_CASES = {
    "empty file": (_write("e.jsonl", ""), ["no rows"]),
    "blank lines only": (_write("e.json", "\n \n"), ["no rows"]),
    "empty array": (_write("e.json", "[]"), ["no rows"]),
    "truncated line": (_write("t.jsonl", f"{ROW0}\n{ROW1[:-9]}"), ["line 2", "invalid JSON"]),
    "truncated array": (_write("t.json", f"[\n{ROW0},\n{ROW1[:-5]}"), ["line 3", "invalid JSON"]),
    "pretty object": (_write("o.json", json.dumps(tofu_row(0), indent=2)), ["line 1", "invalid JSON"]),
    "unknown extension": (_write("d.csv", "question,answer\n"), ["'.csv'", ".parquet"]),
    "missing file": (lambda folder: folder / "absent.json", ["no such file"]),
    "not parquet": (_write("p.parquet", "not parquet"), ["parquet"]),
    "array of strings": (_write("s.json", '["q", "a"]'), ["row 1", "expected an object"]),
    "parquet bad type": (
        lambda folder: write_parquet(folder / "b.parquet", [{**tofu_row(i), "answer": i} for i in range(2)]),
        ["row 1", "'answer'", "must be text"],
    ),
}


@pytest.mark.parametrize("case", list(FILE_CASES))
def test_malformed_files_name_the_problem(tmp_path: Path, case: str) -> None:
    make, fragments = FILE_CASES[case]
    path = make(tmp_path)
    _assert_one_line_error(path, fragments)


# ------------------------------------------------------------------------------ HF datasets


def _fake_datasets(monkeypatch: pytest.MonkeyPatch, load: Callable[..., Any]) -> None:
    module = types.ModuleType("datasets")
    module.__spec__ = importlib.machinery.ModuleSpec("datasets", None)
    module.load_dataset = load  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "datasets", module)


def test_hf_source_without_datasets_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *a: None)
    with pytest.raises(DataError, match=r"hf:locuslab/TOFU:forget10: the 'datasets' package is not installed"):
        read_split("forget", "hf:locuslab/TOFU:forget10", FULL_ROLES)


def test_hf_source_reads_train_split_of_config(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def load(repo: str, config: str | None, split: str) -> list[dict[str, Any]]:
        calls.append((repo, config, split))
        return [tofu_row(0), tofu_row(1)]

    _fake_datasets(monkeypatch, load)
    split = read_split("forget", "hf:locuslab/TOFU:forget10_perturbed", FULL_ROLES)
    assert calls == [("locuslab/TOFU", "forget10_perturbed", "train")]
    assert split.source == "hf:locuslab/TOFU:forget10_perturbed" and len(split.items) == 2


def test_hf_source_unreachable_is_a_data_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def load(*args: Any, **kwargs: Any) -> None:
        raise ConnectionError("offline")

    _fake_datasets(monkeypatch, load)
    with pytest.raises(DataError, match=r"hf:locuslab/TOFU: could not load the dataset \(ConnectionError: offline\)"):
        read_split("forget", "hf:locuslab/TOFU", FULL_ROLES)


# ---------------------------------------------------------------------------- content hash


def test_content_hash_is_sha256_of_canonical_json() -> None:
    item = Item(id="f/0", question="Q?", answers={"answer": "A", "paraphrase": "P"})
    canonical = '{"answers":{"answer":"A","paraphrase":"P"},"question":"Q?"}'
    assert item.content_hash() == hashlib.sha256(canonical.encode()).hexdigest()
    assert Item(id="other/9", question="Q?", answers=dict(item.answers)).content_hash() == item.content_hash()


@settings(max_examples=50, deadline=None)
@given(st.lists(st.text(max_size=8), min_size=3, max_size=3), st.integers(0, 2), st.text(min_size=1, max_size=3))
def test_content_hash_changes_with_any_text(texts: list[str], which: int, extra: str) -> None:
    question, answer, perturbed = texts
    item = Item("s/0", question, {"answer": answer, "perturbed_0": perturbed})
    changed = texts.copy()
    changed[which] += extra
    other = Item("s/0", changed[0], {"answer": changed[1], "perturbed_0": changed[2]})
    assert other.content_hash() != item.content_hash()


def test_split_requires_identical_roles() -> None:
    a = Item("s/0", "q", {"answer": "a"})
    b = Item("s/1", "q", {"answer": "a", "paraphrase": "p"})
    with pytest.raises(DataError, match="s/1"):
        Split(name="s", source="x", roles=("answer",), items=(a, b))


# -------------------------------------------------------------------------------- encoding


def _split(*answers: str) -> Split:
    roles = ("answer",) + tuple(f"perturbed_{k}" for k in range(len(answers) - 1))
    item = Item("s/0", "Who wrote Hamlet?", dict(zip(roles, answers)))
    return Split(name="s", source="mem", roles=roles, items=(item,))


def test_chat_encoding_prompt_and_labels(tokenizer: PreTrainedTokenizerFast) -> None:
    (enc,) = encode_split(_split("William Shakespeare wrote it.", "Charles Dickens"), tokenizer, None)
    eos, user, assistant = (tokenizer.convert_tokens_to_ids(t) for t in ("<|eot|>", "<|user|>", "<|assistant|>"))
    question_ids = tokenizer.encode("Who wrote Hamlet?", add_special_tokens=False)
    assert enc.prompt_ids == (user, *question_ids, assistant)
    for role, text in enc.item.answers.items():
        # Special tokens never merge, so the label is the answer's own tokens plus EOS, once.
        assert enc.labels[role] == (*tokenizer.encode(text, add_special_tokens=False), eos)
        assert tokenizer.decode(enc.labels[role][:-1]) == text


def test_chat_template_with_text_after_eos_gets_eos_appended(tokenizer: PreTrainedTokenizerFast) -> None:
    tok = _with_template(tokenizer, CHAT_TEMPLATE.replace("<|eot|>{% endif %}", "<|eot|>\n{% endif %}"))
    (enc,) = encode_split(_split("Shakespeare"), tok, None)
    eos, newline = tok.eos_token_id, tok.encode("\n", add_special_tokens=False)
    assert enc.labels["answer"] == (*tok.encode("Shakespeare", add_special_tokens=False), eos, *newline, eos)


def test_chat_full_ids_not_starting_with_prompt_use_answer_alone(tokenizer: PreTrainedTokenizerFast) -> None:
    # The generation prompt ends with a space that the full conversation does not have.
    template = (
        "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|> {% endif %}"
    )
    tok = _with_template(tokenizer, template)
    (enc,) = encode_split(_split("Shakespeare"), tok, None)
    assert tok.decode(enc.prompt_ids) == "<|user|>Who wrote Hamlet?<|assistant|> "
    assert enc.labels["answer"] == (*tok.encode("Shakespeare", add_special_tokens=False), tok.eos_token_id)


def test_template_encoding_without_chat_template(tokenizer: PreTrainedTokenizerFast) -> None:
    tok = _with_template(tokenizer, None)
    template = "Question: {question}\nAnswer: "
    (enc,) = encode_split(_split("William Shakespeare"), tok, template)
    prompt_text = "Question: Who wrote Hamlet?\nAnswer: "
    assert enc.prompt_ids == tuple(tok.encode(prompt_text))
    full = tok.encode(prompt_text + "William Shakespeare")
    if full[: len(enc.prompt_ids)] == list(enc.prompt_ids):
        expected = full[len(enc.prompt_ids) :]
    else:  # byte-level BPE merges the trailing space into " William": answer alone
        expected = tok.encode("William Shakespeare", add_special_tokens=False)
    assert enc.labels["answer"] == (*expected, tok.eos_token_id)


def test_template_encoding_boundary_without_merge(tokenizer: PreTrainedTokenizerFast) -> None:
    tok = _with_template(tokenizer, None)
    (enc,) = encode_split(_split("Shakespeare"), tok, "Q: {question}<|assistant|>")
    assert tok.decode(enc.prompt_ids) == "Q: Who wrote Hamlet?<|assistant|>"
    assert enc.labels["answer"] == (*tok.encode("Shakespeare", add_special_tokens=False), tok.eos_token_id)


def test_encoding_needs_a_template(tokenizer: PreTrainedTokenizerFast) -> None:
    with pytest.raises(ConfigError, match="prompt_template"):
        encode_split(_split("a"), _with_template(tokenizer, None), None)


def test_encoding_needs_eos(tokenizer: PreTrainedTokenizerFast) -> None:
    tok = _with_template(tokenizer, CHAT_TEMPLATE)
    tok.eos_token = None
    with pytest.raises(ModelError, match="EOS"):
        encode_split(_split("a"), tok, None)


def test_answer_without_tokens_is_a_data_error(tokenizer: PreTrainedTokenizerFast) -> None:
    # A template that drops the assistant's text: the label would be EOS alone.
    template = CHAT_TEMPLATE.replace("{{ m['content'] }}", "{% if m['role'] == 'user' %}{{ m['content'] }}{% endif %}")
    tok = _with_template(tokenizer, template)
    with pytest.raises(DataError, match=r"item s/0: role 'answer'.*no tokens"):
        encode_split(_split("Shakespeare"), tok, None)


class ListTokenizer:
    """A stub whose chat template returns plain id lists (older transformers), one id per character."""

    chat_template = "stub"
    eos_token_id = 0

    def apply_chat_template(self, conversation: list[dict[str, str]], **kwargs: Any) -> list[int]:
        ids = [1] + [ord(c) for m in conversation for c in m["content"]]
        return ids + ([2] if kwargs["add_generation_prompt"] else [0])

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return [ord(c) for c in text]


def test_plain_list_chat_template_results() -> None:
    (enc,) = encode_split(_split("ab"), ListTokenizer(), None)
    assert enc.prompt_ids == (1, *map(ord, "Who wrote Hamlet?"), 2)
    # The full conversation does not extend the prompt (no 2): the answer alone plus EOS.
    assert enc.labels == {"answer": (ord("a"), ord("b"), 0)}


def test_encoded_embedded_split_round_trips(tokenizer: PreTrainedTokenizerFast) -> None:
    split = read_split("ra", TOFU_DATA / "real_authors_perturbed.json", ["answer", "perturbed"], limit=20)
    encoded = encode_split(split, tokenizer, None)
    assert [e.item for e in encoded] == list(split.items)
    for enc in encoded:
        assert isinstance(enc, EncodedItem)
        for role, ids in enc.labels.items():
            assert ids[-1] == tokenizer.eos_token_id and tokenizer.eos_token_id not in ids[:-1]
            assert tokenizer.decode(ids[:-1]) == enc.item.answers[role]


def _with_template(tokenizer: PreTrainedTokenizerFast | Tokenizer, template: str | None) -> PreTrainedTokenizerFast:
    """A fresh wrapper of the same vocabulary with another chat template (None: no chat template)."""
    backend = tokenizer.backend_tokenizer if isinstance(tokenizer, PreTrainedTokenizerFast) else tokenizer
    special = {"eos_token": "<|eot|>", "pad_token": "<|pad|>", "mask_token": "<|mdm_mask|>"}
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, **special)
    tok.chat_template = template
    return tok
