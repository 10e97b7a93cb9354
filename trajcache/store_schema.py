"""What a run stores: field and split declarations, their checks, and their zarr array layout.

Declares dtypes, fill values, chunks, shards and codec chains, here and nowhere else (DESIGN §6),
and checks caller input (tables to write, items to read) against a split's declaration. They hold spec codecs only
(bytes, zstd, blosc, crc32c inside sharding_indexed), so any zarr v3 reader can decode a run:
Transpose and numcodecs filters silently corrupted round trips in zarr 3.1.6
(notes/storage_and_anchors.md §1b). Knows nothing of runs, markers or files.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, get_args

import numpy as np
import zarr
from numpy.typing import NDArray
from zarr.abc.codec import BytesBytesCodec
from zarr.codecs import BloscCodec, BytesCodec, Crc32cCodec, ZstdCodec

from .errors import ConfigError, StoreError

FieldDtype = Literal["int16", "int32", "int64", "float16", "float32", "bool"]
JSONDict = dict[str, object]
Chain = tuple[BytesCodec, BytesBytesCodec, Crc32cCodec]
# Which items to read: all (None), a slice or range, 1-D integer indices, or a boolean mask over N.
Items = slice | range | NDArray[np.integer] | NDArray[np.bool_] | None

# Token ids are long runs of the mask id then the final token: plain zstd beats byte-shuffling
# compressors 4-15x on them; level 3 writes as fast as level 1 (notes §1b).
_INT_CHAIN: Chain = (BytesCodec(), ZstdCodec(level=3), Crc32cCodec())
# Log-probs are nearly incompressible losslessly; blosc-zstd with bitshuffle is the best of the
# spec codecs measured (notes §1b). crc32c ends both chains: without it a flipped byte in a float
# chunk decodes silently. Inside a shard it guards each item; the shard index has its own crc32c.
_FLOAT_CHAIN: Chain = (BytesCodec(), BloscCodec(cname="zstd", clevel=5, shuffle="bitshuffle"), Crc32cCodec())
CODEC_CHAINS: dict[str, Chain] = {
    "int16": _INT_CHAIN,
    "int32": _INT_CHAIN,
    "int64": _INT_CHAIN,
    "bool": _INT_CHAIN,
    "float16": _FLOAT_CHAIN,
    "float32": _FLOAT_CHAIN,
}


def check_name(kind: str, name: str) -> None:
    """Refuse names that are not a single zarr node name (or that the store reserves)."""
    if not isinstance(name, str) or not name or "/" in name or name.startswith(("_", ".")):
        raise ConfigError(f"{kind} name {name!r} is invalid; use a non-empty name without '/' that does not start with '_' or '.'")


def normalize_json(value: JSONDict, what: str) -> JSONDict:
    """`value` as it reads back from store attrs (tuples become lists), or a ConfigError."""
    try:
        return json.loads(json.dumps(value, allow_nan=False))  # type: ignore[no-any-return]
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{what} must be JSON (no NaN, no numpy scalars): {e}") from e


@dataclass(frozen=True)
class FieldSpec:
    """One stored per-item array: its name, dtype and per-item shape (the first axis is the item)."""

    name: str
    dtype: FieldDtype
    shape: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        check_name("field", self.name)
        if self.dtype not in get_args(FieldDtype):
            raise ConfigError(f"field {self.name!r}: dtype {self.dtype!r} is not storable; use one of {get_args(FieldDtype)}")
        if not isinstance(self.shape, tuple) or not all(type(n) is int and n >= 1 for n in self.shape):
            raise ConfigError(f"field {self.name!r}: shape {self.shape!r} must be a tuple of ints >= 1 (per item)")

    @property
    def fill(self) -> float | int | bool:
        """What never-written items read as: NaN for floats, -1 for ints, False for bool."""
        if self.dtype.startswith("float"):
            return math.nan
        return False if self.dtype == "bool" else -1

    @property
    def item_bytes(self) -> int:
        return int(np.dtype(self.dtype).itemsize * math.prod(self.shape))

    def to_dict(self) -> JSONDict:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}


@dataclass(frozen=True)
class SplitLayout:
    """What one split of a run holds: N items, their fields, and the caller's JSON attrs.

    Fields are kept sorted by name and attrs in their JSON form, so a layout equals the one read
    back from a store exactly when the store holds that layout.
    """

    name: str
    n_items: int
    fields: tuple[FieldSpec, ...]
    attrs: JSONDict = field(default_factory=dict)
    # 32 items per shard: one file per 32 items per field, and a crash loses at most 31 items
    # (notes §0 and §1a measured 16-64 as the useful range).
    shard_size: int = 32

    def __post_init__(self) -> None:
        check_name("split", self.name)
        if type(self.n_items) is not int or self.n_items < 1:
            raise ConfigError(f"split {self.name!r}: n_items {self.n_items!r} must be an int >= 1")
        if type(self.shard_size) is not int or self.shard_size < 1:
            raise ConfigError(f"split {self.name!r}: shard_size {self.shard_size!r} must be an int >= 1")
        if not self.fields or not all(isinstance(f, FieldSpec) for f in self.fields):
            raise ConfigError(f"split {self.name!r}: fields must be a non-empty sequence of FieldSpec")
        names = [f.name for f in self.fields]
        if len(set(names)) != len(names):
            raise ConfigError(f"split {self.name!r}: field names repeat: {sorted(names)}")
        object.__setattr__(self, "fields", tuple(sorted(self.fields, key=lambda f: f.name)))
        object.__setattr__(self, "attrs", normalize_json(self.attrs, f"split {self.name!r} attrs"))

    @property
    def n_shards(self) -> int:
        return -(-self.n_items // self.shard_size)

    def shard_items(self, shard: int) -> range:
        """The items of `shard`; the last shard may hold fewer than shard_size."""
        if type(shard) is not int or not 0 <= shard < self.n_shards:
            raise StoreError(f"split {self.name!r}: shard {shard!r} is out of range [0, {self.n_shards})")
        return range(shard * self.shard_size, min(self.n_items, (shard + 1) * self.shard_size))

    def field(self, name: str) -> FieldSpec:
        for spec in self.fields:
            if spec.name == name:
                return spec
        raise StoreError(f"split {self.name!r} has no field {name!r}; fields: {[f.name for f in self.fields]}")

    def item_index(self, items: Items) -> NDArray[np.intp]:
        """`items` as integer indices (any order, repeats allowed), refusing any outside [0, N)."""
        if items is None:
            return np.arange(self.n_items)
        if isinstance(items, slice):
            return np.arange(self.n_items)[items]
        index = np.asarray(items)
        if index.dtype == np.bool_:
            if index.shape != (self.n_items,):
                raise StoreError(f"split {self.name!r}: a boolean item mask needs shape ({self.n_items},); got {index.shape}")
            return np.flatnonzero(index)
        if index.ndim != 1 or not (index.size == 0 or np.issubdtype(index.dtype, np.integer)):
            raise StoreError(f"split {self.name!r}: items must be a slice, 1-D integer indices or a boolean mask; got {index.dtype} {index.shape}")
        if index.size and (index.min() < 0 or index.max() >= self.n_items):
            raise StoreError(f"split {self.name!r}: items must lie in [0, {self.n_items}); got {index.min()}..{index.max()}")
        return index.astype(np.intp)

    def check_tables(self, shard: int, tables: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The shard's blocks, C-contiguous, once names, dtypes and shapes match the declaration."""
        rows = self.shard_items(shard)
        names = {spec.name for spec in self.fields}
        if set(tables) != names:
            raise StoreError(
                f"split {self.name!r} shard {shard}: tables must hold exactly the fields {sorted(names)}; "
                f"missing {sorted(names - set(tables))}, unknown {sorted(set(tables) - names)}"
            )
        blocks = {}
        for spec in self.fields:
            block = tables[spec.name]
            expected = (len(rows), *spec.shape)  # (shard items, *shape)
            if not isinstance(block, np.ndarray) or block.dtype != np.dtype(spec.dtype) or block.shape != expected:
                got = f"{block.dtype} {block.shape}" if isinstance(block, np.ndarray) else type(block).__name__
                raise StoreError(
                    f"split {self.name!r} shard {shard} (items {rows.start}..{rows.stop - 1}): field {spec.name!r} "
                    f"is {got}, declared {spec.dtype} {expected}; cast or pad it before writing"
                )
            blocks[spec.name] = np.ascontiguousarray(block)
        return blocks

    def diff(self, other: SplitLayout) -> list[str]:
        """What differs between two layouts of a split, one phrase per difference."""
        where = f"split {self.name!r}"
        diffs = [
            f"{where} {key} {getattr(self, key)} vs requested {getattr(other, key)}"
            for key in ("n_items", "shard_size")
            if getattr(self, key) != getattr(other, key)
        ]
        keys = sorted(k for k in set(self.attrs) | set(other.attrs) if self.attrs.get(k) != other.attrs.get(k))
        if keys:
            diffs.append(f"{where} attrs differ in {keys}")
        if self.fields != other.fields:
            diffs.append(f"{where} fields {[f.to_dict() for f in self.fields]} vs requested {[f.to_dict() for f in other.fields]}")
        return diffs


# Fields smaller than this per item get one inner chunk per shard instead of one per item: each
# chunk costs ~0.2 ms to decode whatever its size, and a shard is written whole anyway.
SMALL_ITEM_BYTES = 1024


def array_args(spec: FieldSpec, n_items: int, shard_size: int) -> JSONDict:
    """`zarr.create_array` arguments for a field: one inner chunk per item (per shard for small
    fields), one shard per B items."""
    serializer, *compressors = CODEC_CHAINS[spec.dtype]
    per_chunk = shard_size if spec.item_bytes < SMALL_ITEM_BYTES else 1
    return {
        "shape": (n_items, *spec.shape),  # (N, *shape)
        "dtype": spec.dtype,
        "chunks": (per_chunk, *spec.shape),
        "shards": (shard_size, *spec.shape),
        "serializer": serializer,
        "compressors": tuple(compressors),
        "filters": (),
        "fill_value": spec.fill,
    }


def array_layout(array: zarr.Array) -> JSONDict:
    """An array's metadata without its attributes: shape, dtype, chunk grid, fill and codecs."""
    layout = array.metadata.to_dict()
    layout.pop("attributes", None)
    return layout


def expected_layout(spec: FieldSpec, n_items: int, shard_size: int) -> JSONDict:
    """The metadata `array_args` produces, built in memory so the declaration is the only source."""
    return array_layout(zarr.create_array(zarr.storage.MemoryStore(), **array_args(spec, n_items, shard_size)))  # type: ignore[arg-type]


def inner_codecs(array: zarr.Array) -> list[JSONDict]:
    """The per-item codec chain of a sharded array, as JSON (for `describe_run`)."""
    return [c.to_dict() for c in (array.serializer, *array.compressors)]  # type: ignore[misc]
