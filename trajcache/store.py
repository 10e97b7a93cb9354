"""The run store (DESIGN §6): one zarr v3 store per recorded run, written in committed shards.

Owns the on-disk layout, commit markers, resume, verification and description of a run. Knows
nothing of metrics, models or samplers: it stores named per-item arrays with declared dtypes and
shapes (`store_schema`), plus JSON attrs given by the caller. Only the store modules import zarr.

Layout, schema 1:
    RUN.zarr/                          root attrs {"trajcache": {schema, fingerprint, provenance,
                                                   created, version, complete}}
      <split>/                         attrs {"trajcache_split": caller attrs, "n_items", "shard_size"}
        <field>                        (N, *shape); one inner chunk per item, one shard per B items
      _commits/<split>/<shard:06d>/    a zarr group whose attrs {"trajcache_commit": marker}
                                       commit one shard; written after all of its data
      _assets/<name>/                  files the run needs to be read alone (the tokenizer), one
                                       uint8 array each; attrs {"files": {file name: array name}}
Markers are zarr groups rather than loose JSON files because zarr 3.1.6 warns on every non-zarr
key it meets while listing members; as groups, plain `tree()` and `members()` stay clean.

A reader uses committed shards only. A shard is written once, whole (one write per field), then
its marker: zarr writes each key atomically, not a record across arrays, so the marker is the
record's commit (notes/storage_and_anchors.md §1c). Local filesystem only: creation and overwrite
swap whole directories with atomic renames. No fsync: a power loss can tear files, which the
crc32c codecs and `verify_run` detect.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import NamedTuple

import numpy as np
import zarr
from numpy.typing import NDArray
from zarr.errors import ZarrUserWarning

from . import __version__
from .errors import ConfigError, FingerprintMismatchError, StoreError, StoreNotFoundError
from .store_schema import (
    FieldSpec,
    Items,
    JSONDict,
    SplitLayout,
    array_args,
    array_layout,
    expected_layout,
    inner_codecs,
    normalize_json,
)

__all__ = ["BadShard", "FieldSpec", "Items", "Run", "RunWriter", "SplitLayout", "VerifyReport", "create_run", "describe_run", "open_run", "verify_run"]

SCHEMA = 1
COMMITS = "_commits"
ASSETS = "_assets"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


def _marker_key(split: str, shard: int) -> str:
    return f"{COMMITS}/{split}/{shard:06d}"


def _open_root(path: Path, writable: bool) -> zarr.Group:
    """The one place a run is opened: read-only unless a `RunWriter` asks, so a `Run` cannot write.

    A writer ignores consolidated metadata: it is written at finalize and goes stale on any later
    change (notes §1e).
    """
    if writable:
        return zarr.open_group(path, mode="r+", use_consolidated=False)
    return zarr.open_group(path, mode="r")


def _run_attrs(path: Path) -> JSONDict:
    """The root `trajcache` attrs at `path` (any schema), or the error saying why there is no run."""
    if not path.exists():
        raise StoreNotFoundError(f"no run at {path}; record one with `trajcache record --out {path}`")
    try:
        meta = json.loads((path / "zarr.json").read_text())["attributes"]["trajcache"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise StoreError(f"{path} is not a trajcache run (no trajcache attrs in its zarr.json: {e!r}); choose another path") from e
    if not isinstance(meta, dict):
        raise StoreError(f"{path} is not a trajcache run (its 'trajcache' attrs are not an object); choose another path")
    return meta


def _check_schema(path: Path, meta: JSONDict) -> None:
    if meta.get("schema") != SCHEMA:
        raise StoreError(f"{path} has store schema {meta.get('schema')!r}; trajcache {__version__} reads schema {SCHEMA}; re-record it with --overwrite")


def _committed_shards(path: Path, split: str) -> set[int]:
    """Shards of `split` whose marker exists (a crash mid-marker leaves only a *.partial file)."""
    folder = path / COMMITS / split
    try:
        entries = [d for d in folder.iterdir() if (d / "zarr.json").is_file()]
    except OSError as e:
        raise StoreError(f"{path}: commit folder {folder} is unreadable ({e}); re-record the run with --overwrite") from e
    foreign = [d.name for d in entries if not d.name.isdigit()]
    if foreign:
        raise StoreError(f"{path}: {folder} holds entries that are not shard markers: {sorted(foreign)}; remove them")
    return {int(d.name) for d in entries}


def _read_layout(path: Path, group: zarr.Group) -> SplitLayout:
    """A split's layout rebuilt from its group: fields from the arrays, the rest from its attrs."""
    try:
        fields = tuple(FieldSpec(name, str(a.dtype), tuple(a.shape[1:])) for name, a in group.arrays())  # type: ignore[arg-type]
        attrs = group.attrs
        return SplitLayout(group.basename, attrs["n_items"], fields, attrs["trajcache_split"], attrs["shard_size"])  # type: ignore[arg-type]
    except (KeyError, ConfigError) as e:
        raise StoreError(f"{path}: group {group.basename!r} is not a trajcache split ({e!r}); re-record the run with --overwrite") from e


class Run:
    """A recorded run (DESIGN §6). Read-only when opened by `open_run`; a `RunWriter` writes it."""

    def __init__(self, path: Path, root: zarr.Group) -> None:
        self.path = path
        self._root = root
        self.splits: dict[str, SplitLayout] = {
            name: _read_layout(path, group) for name, group in sorted(root.groups()) if name not in (COMMITS, ASSETS)
        }

    @property
    def _meta(self) -> JSONDict:
        return dict(self._root.attrs["trajcache"])  # type: ignore[arg-type]

    @property
    def fingerprint(self) -> str:
        return str(self._meta["fingerprint"])

    @property
    def provenance(self) -> JSONDict:
        return self._meta["provenance"]  # type: ignore[return-value]

    @property
    def complete(self) -> bool:
        return bool(self._meta["complete"])

    def layout(self, split: str) -> SplitLayout:
        if split not in self.splits:
            raise StoreError(f"{self.path} has no split {split!r}; splits: {sorted(self.splits)}")
        return self.splits[split]

    def committed(self, split: str) -> NDArray[np.bool_]:
        """Per item: whether its shard is committed, i.e. whether `read` may return it."""
        layout = self.layout(split)
        mask = np.zeros(layout.n_items, dtype=bool)  # (N,)
        for shard in _committed_shards(self.path, split):
            rows = layout.shard_items(shard)
            mask[rows.start : rows.stop] = True
        return mask

    def marker(self, split: str, shard: int) -> JSONDict:
        """The commit marker of a shard: {shard, items: [start, stop], sha256: {field: hex}, written}."""
        self.layout(split).shard_items(shard)
        try:
            group = json.loads((self.path / _marker_key(split, shard) / "zarr.json").read_text())
        except OSError as e:
            raise StoreError(f"{self.path}: shard {shard} of split {split!r} is not committed ({e.strerror})") from e
        return group["attributes"]["trajcache_commit"]  # type: ignore[no-any-return]

    def read(self, split: str, field: str, items: Items = None) -> np.ndarray:
        """One field for `items` (all when None), shape (n, *field shape); committed items only."""
        return self.read_many(split, (field,), items)[field]

    def read_asset(self, name: str) -> dict[str, bytes]:
        """The files stored under `name` by `RunWriter.write_asset`."""
        key = f"{ASSETS}/{name}"
        if key not in self._root:
            raise StoreError(f"{self.path} has no asset {name!r}; re-record the run with this version of trajcache")
        group = self._root[key]
        return {file: np.asarray(group[array][:]).tobytes() for file, array in group.attrs["files"].items()}  # type: ignore[union-attr]

    def read_many(self, split: str, fields: Sequence[str], items: Items = None) -> dict[str, np.ndarray]:
        """Several fields for the same items, checking the commit markers once."""
        layout = self.layout(split)
        specs = [layout.field(name) for name in fields]
        index = layout.item_index(items)
        shards = set((index // layout.shard_size).tolist())
        missing = sorted(shards - _committed_shards(self.path, split))
        if missing:
            raise StoreError(
                f"{self.path}: split {split!r} shards {missing} are not committed; resume the recording "
                "(run the same record command) or read only items where Run.committed() is True"
            )
        return {spec.name: self._read_rows(split, spec, index) for spec in specs}

    def _read_rows(self, split: str, spec: FieldSpec, index: NDArray[np.intp]) -> np.ndarray:
        array = self._root[f"{split}/{spec.name}"]
        try:
            if index.size and index[-1] - index[0] == index.size - 1 and np.all(np.diff(index) == 1):
                return array[int(index[0]) : int(index[-1]) + 1]  # (n, *shape)
            return array.oindex[index]  # (n, *shape)
        except ValueError as e:  # crc32c or shard-index checksum failure
            raise StoreError(f"{self.path}: split {split!r} field {spec.name!r} does not decode ({e}); run `trajcache verify {self.path}`") from e


class RunWriter:
    """Writes whole shards of a run and their commit markers; the only object that writes a store.

    Several processes may hold writers on one run if they write disjoint shards (a shard is the
    unit of concurrency: two writers in one shard lose updates, notes §1d).
    """

    def __init__(self, run: Run) -> None:
        self.run = run

    @property
    def path(self) -> Path:
        return self.run.path

    def pending_shards(self, split: str) -> list[int]:
        """Shards of `split` without a commit marker, in order."""
        done = _committed_shards(self.path, split)
        return [k for k in range(self.run.layout(split).n_shards) if k not in done]

    def shard_items(self, split: str, shard: int) -> range:
        return self.run.layout(split).shard_items(shard)

    def write_shard(self, split: str, shard: int, tables: Mapping[str, np.ndarray]) -> None:
        """Write every field of one shard (first axis = the shard's items), then its marker.
        An uncommitted shard's leftovers (a crash before its marker) are overwritten."""
        layout = self.run.layout(split)
        rows = layout.shard_items(shard)
        if shard in _committed_shards(self.path, split):
            raise StoreError(f"{self.path}: shard {shard} of split {split!r} is already committed; shards are written once (re-record with --overwrite)")
        blocks = layout.check_tables(shard, tables)
        self._remove_orphans(layout, shard)
        digests = {}
        for spec in layout.fields:
            array = self.run._root[f"{split}/{spec.name}"]
            # An item equal to the fill value is otherwise not stored and reads back as the
            # canonical NaN, losing NaN payload bits (and the sha256 below).
            array.with_config({"write_empty_chunks": True})[rows.start : rows.stop] = blocks[spec.name]
            digests[spec.name] = hashlib.sha256(blocks[spec.name].tobytes()).hexdigest()
        marker = {"shard": shard, "items": [rows.start, rows.stop], "sha256": digests, "written": _now()}
        self.run._root.create_group(_marker_key(split, shard), attributes={"trajcache_commit": marker})

    def write_asset(self, name: str, files: Mapping[str, bytes]) -> None:
        """Store small files under `name` (replacing an earlier copy): a run must be readable alone."""
        group = self.run._root.require_group(ASSETS).create_group(name, overwrite=True)
        names = {file: f"f{i}" for i, file in enumerate(sorted(files))}
        for file, array in names.items():
            data = np.frombuffer(files[file], dtype=np.uint8)
            group.create_array(array, shape=data.shape, dtype="uint8", chunks=(max(1, data.size),), fill_value=0)[:] = data
        group.update_attributes({"files": names})

    def _remove_orphans(self, layout: SplitLayout, shard: int) -> None:
        """Delete temporary files a crashed writer of this shard left: LocalStore writes
        `<key>.<uuid>.partial` then renames it, and plain zarr warns about strays in group folders.
        Shard keys follow zarr's default encoding: `c/<shard>/0/...` (one shard across other axes).
        """
        keys = [f"{_marker_key(layout.name, shard)}/zarr.json"]
        keys += [f"{layout.name}/{spec.name}/c/{shard}" + "/0" * len(spec.shape) for spec in layout.fields]
        for key in keys:
            target = self.path / key
            for orphan in target.parent.glob(f"{target.stem}.*.partial"):
                orphan.unlink()

    def finalize(self) -> None:
        """Mark the run complete and consolidate its metadata; every shard must be committed."""
        pending = {split: self.pending_shards(split) for split in self.run.splits}
        pending = {split: shards for split, shards in pending.items() if shards}
        if pending:
            raise StoreError(f"{self.path} is incomplete, shards without a commit marker: {pending}; run the same record command to resume")
        self.run._root.update_attributes({"trajcache": {**self.run._meta, "complete": True}})
        with warnings.catch_warnings():
            # Consolidated metadata is a zarr-python convention, not yet v3 core spec; DESIGN §6 adopts it.
            warnings.filterwarnings("ignore", message="Consolidated metadata", category=ZarrUserWarning)
            zarr.consolidate_metadata(self.run._root.store)


def open_run(path: str | os.PathLike[str]) -> Run:
    """Open a run read-only (StoreNotFoundError if absent, StoreError if not a schema-1 run)."""
    path = Path(path)
    _check_schema(path, _run_attrs(path))
    return Run(path, _open_root(path, writable=False))


def create_run(
    path: str | os.PathLike[str],
    fingerprint: str,
    provenance: JSONDict,
    splits: Sequence[SplitLayout],
    *,
    overwrite: bool = False,
) -> RunWriter:
    """Create a run, or reopen it to resume when it holds the same fingerprint (DESIGN §6).

    All metadata is written here, once: writers only add shards and markers. A store with another
    fingerprint is refused unless `overwrite`; a path holding anything but a trajcache run (other
    than an empty directory) is never replaced. A resumed run keeps its original provenance.
    """
    path = Path(path)
    if not isinstance(fingerprint, str) or not fingerprint:
        raise ConfigError(f"fingerprint {fingerprint!r} must be a non-empty string")
    provenance = normalize_json(provenance, "provenance")
    names = [layout.name for layout in splits]
    if not names or len(set(names)) != len(names):
        raise ConfigError(f"a run needs one or more splits with distinct names; got {names}")
    if path.is_dir() and not any(path.iterdir()):
        path.rmdir()
    if path.exists():
        meta = _run_attrs(path)
        if not overwrite:
            _check_schema(path, meta)
            if meta.get("fingerprint") != fingerprint:
                raise FingerprintMismatchError(
                    f"{path} holds a run with fingerprint {str(meta.get('fingerprint'))[:12]}, not {fingerprint[:12]} "
                    "(other model, tokenizer, sampler, items or schema); pass --overwrite to replace it or choose another --out"
                )
            writer = RunWriter(Run(path, _open_root(path, writable=True)))
            _check_resume(writer.run, splits)
            return writer
    _swap_in(_build(path, fingerprint, provenance, splits), path)
    return RunWriter(Run(path, _open_root(path, writable=True)))


def _build(path: Path, fingerprint: str, provenance: JSONDict, splits: Sequence[SplitLayout]) -> Path:
    """Build the complete metadata of a new run in a hidden sibling folder; return that folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.{uuid.uuid4().hex}.creating")
    meta = {"schema": SCHEMA, "fingerprint": fingerprint, "provenance": provenance, "created": _now(), "version": __version__, "complete": False}
    root = zarr.open_group(staging, mode="w-", attributes={"trajcache": meta})
    commits = root.create_group(COMMITS)
    for layout in splits:
        group = root.create_group(layout.name, attributes={"trajcache_split": layout.attrs, "n_items": layout.n_items, "shard_size": layout.shard_size})
        commits.create_group(layout.name)
        for spec in layout.fields:
            group.create_array(spec.name, **array_args(spec, layout.n_items, layout.shard_size))  # type: ignore[arg-type]
    return staging


def _swap_in(staging: Path, path: Path) -> None:
    """Move a built run to `path`, replacing an old run there; a crash leaves one or the other, whole."""
    if not path.exists():
        os.rename(staging, path)
        return
    trash = path.with_name(f".{path.name}.{uuid.uuid4().hex}.deleting")
    os.rename(path, trash)
    os.rename(staging, path)
    shutil.rmtree(trash)


def _check_resume(run: Run, splits: Sequence[SplitLayout]) -> None:
    """Refuse to resume into a run whose layout differs from `splits`, saying what differs."""
    wanted = {layout.name: layout for layout in splits}
    diffs = [] if set(wanted) == set(run.splits) else [f"splits {sorted(run.splits)} vs requested {sorted(wanted)}"]
    for name in sorted(set(wanted) & set(run.splits)):
        diffs += _layout_diffs(run, run.splits[name], wanted[name])
    if diffs:
        raise StoreError(f"{run.path} has fingerprint {run.fingerprint[:12]} but another layout: {'; '.join(diffs)}; pass --overwrite to re-record it")


def _layout_diffs(run: Run, stored: SplitLayout, wanted: SplitLayout) -> list[str]:
    diffs = stored.diff(wanted)
    if diffs:
        return diffs
    return [
        f"split {stored.name!r} field {spec.name!r} has other chunks, shards, fill or codecs than this version declares"
        for spec in stored.fields
        if array_layout(run._root[f"{stored.name}/{spec.name}"]) != expected_layout(spec, stored.n_items, stored.shard_size)
    ]


class BadShard(NamedTuple):
    split: str
    shard: int
    field: str  # "*" when the marker itself is wrong
    reason: str


@dataclass(frozen=True)
class VerifyReport:
    """What `verify_run` found; `ok` means every shard is committed and reads back as written."""

    bad: tuple[BadShard, ...]
    missing: tuple[tuple[str, int], ...]  # (split, shard) without a commit marker

    @property
    def ok(self) -> bool:
        return not self.bad and not self.missing


def verify_run(path: str | os.PathLike[str]) -> VerifyReport:
    """Decode every committed chunk (crc32c) and compare each field's shard with its marker's sha256."""
    run = open_run(path)
    bad: list[BadShard] = []
    missing: list[tuple[str, int]] = []
    for name, layout in run.splits.items():
        done = _committed_shards(run.path, name)
        missing += [(name, k) for k in range(layout.n_shards) if k not in done]
        for shard in sorted(done):
            bad += _verify_shard(run, layout, shard)
    return VerifyReport(tuple(bad), tuple(missing))


def _verify_shard(run: Run, layout: SplitLayout, shard: int) -> list[BadShard]:
    if shard >= layout.n_shards:
        return [BadShard(layout.name, shard, "*", f"a marker for a shard beyond the split's {layout.n_shards}")]
    rows = layout.shard_items(shard)
    marker = run.marker(layout.name, shard)
    if marker.get("items") != [rows.start, rows.stop]:
        return [BadShard(layout.name, shard, "*", f"marker items {marker.get('items')} are not [{rows.start}, {rows.stop}]")]
    digests = marker.get("sha256")
    bad = []
    for spec in layout.fields:
        try:
            block = run._read_rows(layout.name, spec, np.arange(rows.start, rows.stop))
        except StoreError as e:
            bad.append(BadShard(layout.name, shard, spec.name, f"does not decode: {e}"))
            continue
        if not isinstance(digests, dict) or hashlib.sha256(block.tobytes()).hexdigest() != digests.get(spec.name):
            bad.append(BadShard(layout.name, shard, spec.name, "sha256 differs from the commit marker"))
    return bad


def describe_run(path: str | os.PathLike[str]) -> JSONDict:
    """Everything `trajcache info` prints: identity, completeness, and per field layout and sizes.

    `bytes_raw` is the uncompressed size of the committed items; `bytes_on_disk` sums file sizes.
    """
    run = open_run(path)
    splits: JSONDict = {}
    for name, layout in run.splits.items():
        committed = int(run.committed(name).sum())
        fields = {spec.name: _describe_field(run, layout, spec, committed) for spec in layout.fields}
        splits[name] = {
            "n_items": layout.n_items,
            "committed_items": committed,
            "shard_size": layout.shard_size,
            "n_shards": layout.n_shards,
            "fields": fields,
            "bytes_on_disk": sum(f["bytes_on_disk"] for f in fields.values()),
            "bytes_raw": sum(f["bytes_raw"] for f in fields.values()),
        }
    meta = run._meta
    return {"path": str(run.path), **{k: meta[k] for k in ("schema", "fingerprint", "created", "version", "complete", "provenance")},
            "splits": splits, "bytes_on_disk": _disk_bytes(run.path)}


def _describe_field(run: Run, layout: SplitLayout, spec: FieldSpec, committed: int) -> dict[str, object]:
    array = run._root[f"{layout.name}/{spec.name}"]
    return {
        "dtype": spec.dtype,
        "shape": list(spec.shape),
        "chunks": list(array.chunks),
        "shards": list(array.shards or ()),
        "codecs": inner_codecs(array),
        "bytes_on_disk": _disk_bytes(run.path / layout.name / spec.name),
        "bytes_raw": committed * spec.item_bytes,
    }


def _disk_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
