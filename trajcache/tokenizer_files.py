"""A tokenizer as a dict of file bytes, so a run carries the tokenizer `score` decodes with."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from transformers import AutoTokenizer


def tokenizer_files(tokenizer: Any) -> dict[str, bytes]:
    """The files `save_pretrained` writes, by name."""
    with tempfile.TemporaryDirectory() as folder:
        tokenizer.save_pretrained(folder)
        return {p.name: p.read_bytes() for p in sorted(Path(folder).iterdir()) if p.is_file()}


def load_tokenizer(files: dict[str, bytes]) -> Any:
    """A tokenizer rebuilt from `tokenizer_files` output, with no network and no model."""
    with tempfile.TemporaryDirectory() as folder:
        for name, data in files.items():
            (Path(folder) / name).write_bytes(data)
        return AutoTokenizer.from_pretrained(folder)
