"""QA items: read TOFU-format splits and encode them into prompt and label token ids.

Owns the item model (question + answers by label role), the file formats (TOFU JSON / JSON lines,
JSONL, parquet, HF datasets) and the TOFU tokenisation convention. Knows nothing of models,
samplers or metrics: a tokenizer is the only thing it is handed.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from .errors import ConfigError, DataError, ModelError

RoleGroup = Literal["answer", "paraphrase", "perturbed"]
# Canonical role order inside an item and a split: answer, paraphrase, perturbed_0..K-1.
ROLE_GROUPS: tuple[RoleGroup, ...] = ("answer", "paraphrase", "perturbed")
# TOFU field that carries each role group.
ROLE_FIELDS: dict[RoleGroup, str] = {
    "answer": "answer",
    "paraphrase": "paraphrased_answer",
    "perturbed": "perturbed_answer",
}
HF_PREFIX = "hf:"
SUFFIXES = (".json", ".jsonl", ".parquet")
Row = tuple[str, Any]  # (where: "line 3" | "row 3", 1-based; the decoded row)


@dataclass(frozen=True)
class Item:
    """One question with its answers by label role (`answer`, `paraphrase`, `perturbed_k`)."""

    id: str  # "<split>/<row index>", row index 0-based as TOFU's `index` column
    question: str
    answers: dict[str, str]

    def content_hash(self) -> str:
        """sha256 of the texts, so a run fingerprint changes whenever any text does."""
        payload = {"question": self.question, "answers": self.answers}
        canonical = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Split:
    """Items from one source; every item carries exactly `roles`, in canonical order."""

    name: str
    source: str
    roles: tuple[str, ...]
    items: tuple[Item, ...]

    def __post_init__(self) -> None:
        for item in self.items:
            if tuple(item.answers) != self.roles:
                raise DataError(
                    f"split {self.name!r}: item {item.id} has roles {list(item.answers)}, "
                    f"expected {list(self.roles)}; every item of a split needs the same roles"
                )


def check_role_groups(groups: Sequence[str], where: str) -> tuple[RoleGroup, ...]:
    """Validate required role groups; returns them in canonical order."""
    unknown = sorted(set(groups) - set(ROLE_GROUPS))
    if unknown or not groups or len(set(groups)) != len(groups):
        raise ConfigError(f"{where}: roles {list(groups)} are invalid; give distinct names from {list(ROLE_GROUPS)}")
    return tuple(g for g in ROLE_GROUPS if g in groups)


# ----------------------------------------------------------------------------------- reading


def read_split(name: str, path: Path | str, roles: Sequence[str], limit: int | None = None) -> Split:
    """Read a TOFU-format split; `roles` are the role groups the suite requires of every row.

    `path` is a `.json` (a JSON array, or JSON lines as TOFU ships them), `.jsonl` or `.parquet`
    file, or `hf:<repo>[:<config>]` (needs the optional `datasets` package and the hub). Fields
    that are not required are ignored. Every malformed row is a DataError naming file, row, field.
    """
    groups = check_role_groups(roles, f"split {name!r}")
    if limit is not None and limit < 1:
        raise ConfigError(f"--limit must be >= 1; got {limit}")
    source = str(path)
    rows = _hf_rows(source) if source.startswith(HF_PREFIX) else _file_rows(Path(path))
    if not rows:
        raise DataError(f"{source}: no rows; a split needs at least one item")
    rows = rows[:limit] if limit is not None else rows
    items = tuple(_parse_item(source, name, index, where, row, groups) for index, (where, row) in enumerate(rows))
    _check_perturbed_counts(source, rows, items)
    return Split(name=name, source=source, roles=tuple(items[0].answers), items=items)


def _file_rows(path: Path) -> list[Row]:
    if path.suffix not in SUFFIXES:
        raise DataError(
            f"{path}: unknown extension {path.suffix!r}; use one of {list(SUFFIXES)} or {HF_PREFIX}<repo>[:<config>]"
        )
    if not path.is_file():
        raise DataError(f"{path}: no such file; check the split source or its --source override")
    if path.suffix == ".parquet":
        return _parquet_rows(path)
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json" and text.lstrip().startswith("["):
        return _json_array_rows(path, text)
    return list(_json_lines_rows(path, text))


def _json_array_rows(path: Path, text: str) -> list[Row]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: line {e.lineno}: invalid JSON ({e.msg}); fix or re-export the file") from e
    return [(f"row {i + 1}", row) for i, row in enumerate(data)]


def _json_lines_rows(path: Path, text: str) -> Iterator[Row]:
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield f"line {number}", json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}: line {number}: invalid JSON ({e.msg}); the file may be truncated") from e


def _parquet_rows(path: Path) -> list[Row]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as e:
        raise DataError(f"{path}: not a readable parquet file ({e}); re-export it") from e
    return [(f"row {i + 1}", row) for i, row in enumerate(table.to_pylist())]


def _hf_rows(source: str) -> list[Row]:
    """Rows of the `train` split (the only split of every TOFU config) of an HF dataset."""
    repo, _, config = source[len(HF_PREFIX) :].partition(":")
    if not repo:
        raise DataError(f"{source}: no dataset id; write {HF_PREFIX}<repo>[:<config>]")
    if importlib.util.find_spec("datasets") is None:
        raise DataError(
            f"{source}: the 'datasets' package is not installed; pip install datasets, "
            "or download the split and give its file path"
        )
    import datasets

    try:
        dataset = datasets.load_dataset(repo, config or None, split="train")
    except Exception as e:  # network, auth and missing-config errors all mean: not loadable here
        raise DataError(
            f"{source}: could not load the dataset ({type(e).__name__}: {e}); "
            "check the id and network, or download the split and give its file path"
        ) from e
    return [(f"row {i + 1}", dict(row)) for i, row in enumerate(dataset)]


def _parse_item(source: str, split: str, index: int, where: str, row: Any, groups: tuple[RoleGroup, ...]) -> Item:
    def fail(field: str, problem: str) -> DataError:
        return DataError(f"{source}: {where}: field {field!r} {problem}")

    if not isinstance(row, dict):
        raise DataError(f"{source}: {where}: expected an object with a 'question' field, got {_describe(row)}")
    question = _text(row.get("question"), "question", fail)
    answers: dict[str, str] = {}
    for group in groups:
        field = ROLE_FIELDS[group]
        if group != "perturbed":
            answers[group] = _text(row.get(field), field, fail)
            continue
        values = row.get(field)
        if not isinstance(values, list) or not values:
            raise fail(field, f"must be a non-empty list of strings, got {_describe(values)}")
        for k, value in enumerate(values):
            answers[f"perturbed_{k}"] = _text(value, f"{field}[{k}]", fail)
    return Item(id=f"{split}/{index}", question=question, answers=answers)


def _text(value: Any, field: str, fail: Callable[[str, str], DataError]) -> str:
    """A required, non-blank string."""
    if value is None:
        raise fail(field, "is missing; the suite requires it")
    if not isinstance(value, str):
        raise fail(field, f"must be text, got {_describe(value)}")
    if not value.strip():
        raise fail(field, "is empty; remove the row or fill in the text")
    return value


def _describe(value: Any) -> str:
    return "nothing" if value is None else f"{type(value).__name__} {str(value)[:40]!r}"


def _check_perturbed_counts(source: str, rows: list[Row], items: tuple[Item, ...]) -> None:
    counts = [sum(role.startswith("perturbed_") for role in item.answers) for item in items]
    for (where, _), count in zip(rows, counts):
        if count != counts[0]:
            raise DataError(
                f"{source}: {where}: field 'perturbed_answer' has {count} entries, the first row {counts[0]}; "
                "every row of a split needs the same number"
            )


# ---------------------------------------------------------------------------------- encoding


class Tokenizer(Protocol):
    """The part of a transformers tokenizer that encoding uses."""

    chat_template: str | None
    eos_token_id: int | None

    def apply_chat_template(self, conversation: list[dict[str, str]], **kwargs: Any) -> Any: ...

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]: ...


@dataclass(frozen=True)
class EncodedItem:
    """An item's prompt ids and, per role, the label ids the model should write after the prompt."""

    item: Item
    prompt_ids: tuple[int, ...]
    labels: dict[str, tuple[int, ...]]


def encode_split(split: Split, tokenizer: Tokenizer, prompt_template: str | None) -> list[EncodedItem]:
    """Tokenise prompts and labels the TOFU way (open-unlearning `preprocess_chat_instance`).

    Prompt: the chat template with `add_generation_prompt=True` when the tokenizer has one, else
    `prompt_template` filled with the question and tokenised with special tokens. Label of a role:
    the ids of the full conversation after the prompt prefix, with EOS appended unless already
    last; when the full ids do not start with the prompt ids (a merge across the boundary), the
    answer tokenised alone plus EOS.
    """
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ModelError("the tokenizer has no EOS token; labels end with EOS (TOFU convention); set eos_token")
    use_chat = bool(tokenizer.chat_template)
    if not use_chat and prompt_template is None:
        raise ConfigError(
            f"split {split.name!r}: the tokenizer has no chat template and the suite no prompt_template; "
            "set prompt_template in the suite"
        )
    encoded = []
    for item in split.items:
        prompt, full = _chat_ids(tokenizer, item) if use_chat else _template_ids(tokenizer, item, prompt_template or "")
        labels = {role: _label_ids(tokenizer, item, role, prompt, full[role], eos) for role in item.answers}
        encoded.append(EncodedItem(item=item, prompt_ids=tuple(prompt), labels=labels))
    return encoded


def _chat_ids(tokenizer: Tokenizer, item: Item) -> tuple[list[int], dict[str, list[int]]]:
    user = {"role": "user", "content": item.question}
    prompt = _as_ids(tokenizer.apply_chat_template([user], add_generation_prompt=True, tokenize=True))
    full = {
        role: _as_ids(
            tokenizer.apply_chat_template(
                [user, {"role": "assistant", "content": text}], add_generation_prompt=False, tokenize=True
            )
        )
        for role, text in item.answers.items()
    }
    return prompt, full


def _template_ids(tokenizer: Tokenizer, item: Item, template: str) -> tuple[list[int], dict[str, list[int]]]:
    text = template.format(question=item.question)
    prompt = list(tokenizer.encode(text, add_special_tokens=True))
    full = {
        role: list(tokenizer.encode(text + answer, add_special_tokens=True)) for role, answer in item.answers.items()
    }
    return prompt, full


def _as_ids(result: Any) -> list[int]:
    """Token ids from apply_chat_template, which returns a BatchEncoding (a mapping) in transformers 5."""
    ids = result["input_ids"] if hasattr(result, "keys") else result
    if ids and isinstance(ids[0], list):  # a batch of one
        (ids,) = ids
    return [int(i) for i in ids]


def _label_ids(
    tokenizer: Tokenizer, item: Item, role: str, prompt: list[int], full: list[int], eos: int
) -> tuple[int, ...]:
    if full[: len(prompt)] == prompt:
        ids = full[len(prompt) :]
    else:
        ids = list(tokenizer.encode(item.answers[role], add_special_tokens=False))
    if not ids or ids == [eos]:
        raise DataError(
            f"item {item.id}: role {role!r}: the answer {item.answers[role][:40]!r} encodes to no tokens; "
            "fix the text or the tokenizer"
        )
    return tuple(ids if ids[-1] == eos else [*ids, eos])
