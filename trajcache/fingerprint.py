"""Run fingerprints: sha256 of canonical JSON over everything that produced a run's bytes.

Keyed by content, never by names: weight and tokenizer file hashes (not a model name or a mutable
revision), sampler and capture config, dtype, device type, schema version and every item's content
hash. Batch size and compile are left out on purpose: they do not change the tables.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

SCHEMA_VERSION = 1


def canonical_json(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def fingerprint(identity: dict[str, Any]) -> str:
    """sha256 hex of the canonical JSON of `identity` plus the schema version."""
    payload = canonical_json({"schema": SCHEMA_VERSION, **identity})
    return hashlib.sha256(payload.encode()).hexdigest()


def item_seed(base: int, item_id: str) -> int:
    """A 63-bit seed per item from the base seed and the item id: independent of batch order."""
    digest = hashlib.sha256(f"{base}:{item_id}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1
