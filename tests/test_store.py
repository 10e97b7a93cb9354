"""Tests for the run store (`trajcache.store`, `trajcache.store_schema`): layout, codecs, commits,
resume, overwrite, verification and plain-zarr readability."""

from __future__ import annotations

import hashlib
import json
import warnings
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import zarr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from zarr.codecs import BloscCodec, Crc32cCodec, ZstdCodec
from zarr.storage import LocalStore

from trajcache.errors import ConfigError, FingerprintMismatchError, StoreError, StoreNotFoundError
from trajcache.store import (
    FieldSpec,
    RunWriter,
    SplitLayout,
    create_run,
    describe_run,
    open_run,
    verify_run,
)
from trajcache.store_schema import CODEC_CHAINS, FieldDtype

FP = "a" * 64
FP2 = "b" * 64
DTYPES: tuple[FieldDtype, ...] = ("int16", "int32", "int64", "float16", "float32", "bool")


def _fields() -> tuple[FieldSpec, ...]:
    return (
        FieldSpec("logp", "float32", (3, 2)),
        FieldSpec("tokens", "int32", (3,)),
        FieldSpec("fixation", "int16", (3,)),
        FieldSpec("eos_len", "int32"),
    )


def _layout(n: int = 10, shard_size: int = 4, name: str = "forget", **attrs: object) -> SplitLayout:
    return SplitLayout(name, n, _fields(), {"S": 3, **attrs}, shard_size)


def _tables(layout: SplitLayout, shard: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Deterministic tables for a shard; values depend on the item index and `seed`."""
    rows = layout.shard_items(shard)
    rng = np.random.default_rng([seed, shard])
    out = {}
    for spec in layout.fields:
        shape = (len(rows), *spec.shape)
        if spec.dtype.startswith("float"):
            out[spec.name] = rng.normal(size=shape).astype(spec.dtype)
        else:
            out[spec.name] = rng.integers(-1, 100, size=shape).astype(spec.dtype)
    return out


def _record(path: Path, layout: SplitLayout, shards: list[int] | None = None, seed: int = 0) -> RunWriter:
    writer = create_run(path, FP, {"who": "test"}, [layout])
    for shard in writer.pending_shards(layout.name) if shards is None else shards:
        writer.write_shard(layout.name, shard, _tables(layout, shard, seed))
    return writer


def _all_tables(layout: SplitLayout, seed: int = 0) -> dict[str, np.ndarray]:
    parts = [_tables(layout, k, seed) for k in range(layout.n_shards)]
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


def _shard_file(path: Path, split: str, field: str, shard: int) -> Path:
    spec = open_run(path).splits[split].field(field)
    return path / split / field / "c" / str(shard) / Path(*["0"] * len(spec.shape))


# --- codec chains ------------------------------------------------------------------------------


def test_codec_chains_are_spec_only_and_end_with_crc32c() -> None:
    assert set(CODEC_CHAINS) == set(DTYPES)
    for dtype, chain in CODEC_CHAINS.items():
        assert isinstance(chain[-1], Crc32cCodec), dtype
        assert all(type(c).__module__.startswith("zarr.codecs") and "numcodecs" not in type(c).__module__ for c in chain)
        assert not any(type(c).__name__ == "TransposeCodec" for c in chain)
    assert CODEC_CHAINS["int32"][1] == ZstdCodec(level=3)
    blosc = CODEC_CHAINS["float32"][1]
    assert isinstance(blosc, BloscCodec) and (blosc.cname.value, blosc.clevel, blosc.shuffle.value) == ("zstd", 5, "bitshuffle")


def test_stored_arrays_carry_the_declared_chains(tmp_path: Path) -> None:
    _record(tmp_path / "r.zarr", _layout(), shards=[])
    info = describe_run(tmp_path / "r.zarr")["splits"]["forget"]["fields"]
    assert [c["name"] for c in info["tokens"]["codecs"]] == ["bytes", "zstd", "crc32c"]
    assert info["tokens"]["codecs"][1]["configuration"]["level"] == 3
    assert [c["name"] for c in info["logp"]["codecs"]] == ["bytes", "blosc", "crc32c"]
    assert info["logp"]["codecs"][1]["configuration"] | {"typesize": 4} == {"typesize": 4, "cname": "zstd", "clevel": 5, "shuffle": "bitshuffle", "blocksize": 0}
    # Small per-item fields: one inner chunk per shard; large ones: one per item.
    assert (info["logp"]["chunks"], info["logp"]["shards"]) == ([4, 3, 2], [4, 3, 2])
    assert (info["eos_len"]["chunks"], info["eos_len"]["shards"]) == ([4], [4])


def test_large_fields_have_one_chunk_per_item(tmp_path: Path) -> None:
    big = SplitLayout("forget", 10, (FieldSpec("label_logp", "float32", (16, 32, 7)), FieldSpec("eos_len", "int32")), {}, 4)
    create_run(tmp_path / "r.zarr", "f" * 64, {}, [big])
    info = describe_run(tmp_path / "r.zarr")["splits"]["forget"]["fields"]
    assert info["label_logp"]["chunks"] == [1, 16, 32, 7] and info["eos_len"]["chunks"] == [4]


# --- exact round trips ---------------------------------------------------------------------------


def _edge_values(dtype: str) -> np.ndarray:
    """Hand-picked edge values; floats include NaN (two payloads), ±inf, ±0, denormals, extremes."""
    dt = np.dtype(dtype)
    if dt == np.bool_:
        return np.array([True, False, True, True, False, False])
    if dt.kind == "i":
        info = np.iinfo(dt)
        return np.array([-1, -1, 0, info.min, info.max, 7], dtype=dt)
    info = np.finfo(dt)
    values = np.array([np.nan, -np.inf, np.inf, -0.0, info.smallest_subnormal, -info.smallest_subnormal, info.max, info.tiny, 1.5, np.nan], dtype=dt)
    bits = values.view(np.uint16 if dt.itemsize == 2 else np.uint32)
    bits[-1] |= 1  # a NaN with a payload bit set
    return values


@pytest.mark.parametrize("dtype", DTYPES)
def test_exact_round_trip_of_edge_values(tmp_path: Path, dtype: FieldDtype) -> None:
    values = _edge_values(dtype)
    n = values.size // 2
    layout = SplitLayout("s", n, (FieldSpec("x", dtype, (2,)),), shard_size=2)
    data = values.reshape(n, 2)
    writer = create_run(tmp_path / "r.zarr", FP, {}, [layout])
    for shard in range(layout.n_shards):
        rows = layout.shard_items(shard)
        writer.write_shard("s", shard, {"x": data[rows.start : rows.stop]})
    back = open_run(tmp_path / "r.zarr").read("s", "x")
    assert back.dtype == data.dtype and back.tobytes() == data.tobytes()


@pytest.mark.parametrize("dtype", DTYPES)
def test_items_equal_to_the_fill_value_keep_their_bytes(tmp_path: Path, dtype: FieldDtype) -> None:
    spec = FieldSpec("x", dtype, (3,))
    data = np.full((2, 3), spec.fill, dtype=dtype)
    if dtype.startswith("float"):
        data.view(np.uint16 if data.itemsize == 2 else np.uint32)[0] |= 1  # NaN payloads
    layout = SplitLayout("s", 2, (spec,), shard_size=2)
    create_run(tmp_path / "r.zarr", FP, {}, [layout]).write_shard("s", 0, {"x": data})
    assert open_run(tmp_path / "r.zarr").read("s", "x").tobytes() == data.tobytes()
    assert verify_run(tmp_path / "r.zarr").ok


@st.composite
def _stored_arrays(draw: st.DrawFn) -> tuple[SplitLayout, np.ndarray]:
    dtype = draw(st.sampled_from(DTYPES))
    shape = tuple(draw(st.lists(st.integers(1, 4), max_size=3)))
    n = draw(st.integers(1, 9))
    layout = SplitLayout("s", n, (FieldSpec("x", dtype, shape),), shard_size=draw(st.integers(1, 4)))
    elements = st.floats(width=16 if dtype == "float16" else 32, allow_nan=True, allow_infinity=True, allow_subnormal=True) if dtype.startswith("float") else None
    data = draw(hnp.arrays(np.dtype(dtype), (n, *shape), elements=elements))
    return layout, data


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=_stored_arrays(), picks=st.lists(st.integers(0, 8), max_size=6))
def test_round_trip_property(tmp_path_factory: pytest.TempPathFactory, case: tuple[SplitLayout, np.ndarray], picks: list[int]) -> None:
    layout, data = case
    path = tmp_path_factory.mktemp("prop") / "r.zarr"
    writer = create_run(path, FP, {}, [layout])
    for shard in range(layout.n_shards):
        rows = layout.shard_items(shard)
        writer.write_shard("s", shard, {"x": data[rows.start : rows.stop]})
    run = open_run(path)
    assert run.read("s", "x").tobytes() == data.tobytes()
    index = np.array([p % layout.n_items for p in picks], dtype=np.int64)
    assert run.read("s", "x", index).tobytes() == data[index].tobytes()
    assert run.read("s", "x", slice(None, None, 2)).tobytes() == data[::2].tobytes()


# --- shards and reads ----------------------------------------------------------------------------


def test_partial_last_shard_is_one_write_per_field(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    layout = _layout(n=10, shard_size=4)
    writer = _record(tmp_path / "r.zarr", layout, shards=[0, 1])
    keys: list[str] = []
    original = LocalStore.set

    async def spy(self: LocalStore, key: str, value: object) -> None:
        keys.append(key)
        await original(self, key, value)  # type: ignore[arg-type]

    monkeypatch.setattr(LocalStore, "set", spy)
    assert list(writer.shard_items("forget", 2)) == [8, 9]
    writer.write_shard("forget", 2, _tables(layout, 2))
    data_keys = sorted(k for k in keys if "/c/" in k)
    assert data_keys == ["forget/eos_len/c/2", "forget/fixation/c/2/0", "forget/logp/c/2/0/0", "forget/tokens/c/2/0"]
    expected = _all_tables(layout)
    run = open_run(tmp_path / "r.zarr")
    for name, values in expected.items():
        assert np.array_equal(run.read("forget", name), values, equal_nan=True)


def test_shard_larger_than_the_split(tmp_path: Path) -> None:
    layout = _layout(n=3, shard_size=32)
    _record(tmp_path / "r.zarr", layout).finalize()
    assert layout.n_shards == 1
    assert np.array_equal(open_run(tmp_path / "r.zarr").read("forget", "tokens"), _tables(layout, 0)["tokens"])


def test_item_selections(tmp_path: Path) -> None:
    layout = _layout(n=10, shard_size=4)
    _record(tmp_path / "r.zarr", layout)
    run, tokens = open_run(tmp_path / "r.zarr"), _all_tables(layout)["tokens"]
    mask = np.arange(10) % 3 == 0
    assert np.array_equal(run.read("forget", "tokens", mask), tokens[mask])
    assert np.array_equal(run.read("forget", "tokens", slice(7, 1, -2)), tokens[7:1:-2])
    assert np.array_equal(run.read("forget", "tokens", range(2, 5)), tokens[2:5])
    assert run.read("forget", "tokens", np.array([], dtype=int)).shape == (0, 3)
    many = run.read_many("forget", ["eos_len", "logp"], np.array([9, 0, 9]))
    assert set(many) == {"eos_len", "logp"} and many["logp"].shape == (3, 3, 2)
    assert np.array_equal(many["eos_len"], _all_tables(layout)["eos_len"][[9, 0, 9]])
    for bad in (np.array([10]), np.array([-1]), np.ones(9, dtype=bool), np.zeros((2, 2), dtype=int), np.array([0.5])):
        with pytest.raises(StoreError, match="forget"):
            run.read("forget", "tokens", bad)


def test_unknown_split_or_field_names_what_exists(tmp_path: Path) -> None:
    _record(tmp_path / "r.zarr", _layout())
    run = open_run(tmp_path / "r.zarr")
    with pytest.raises(StoreError, match=r"no field 'x0'; fields: \['eos_len', 'fixation', 'logp', 'tokens'\]"):
        run.read("forget", "x0")
    with pytest.raises(StoreError, match=r"no split 'retain'; splits: \['forget'\]"):
        run.read("retain", "tokens")


def test_reading_uncommitted_items_is_refused(tmp_path: Path) -> None:
    layout = _layout(n=10, shard_size=4)
    _record(tmp_path / "r.zarr", layout, shards=[1])
    run = open_run(tmp_path / "r.zarr")
    assert run.committed("forget").tolist() == [False] * 4 + [True] * 4 + [False] * 2
    assert np.array_equal(run.read("forget", "eos_len", slice(4, 8)), _tables(layout, 1)["eos_len"])
    with pytest.raises(StoreError, match=r"shards \[0, 2\] are not committed"):
        run.read("forget", "eos_len")
    with pytest.raises(StoreError, match=r"shards \[2\] are not committed"):
        run.read("forget", "eos_len", np.array([5, 9]))
    assert np.array_equal(run.read("forget", "eos_len", run.committed("forget")), _tables(layout, 1)["eos_len"])


def test_marker_records_items_hashes_and_time(tmp_path: Path) -> None:
    layout = _layout(n=10, shard_size=4)
    _record(tmp_path / "r.zarr", layout, shards=[2])
    marker = open_run(tmp_path / "r.zarr").marker("forget", 2)
    tables = _tables(layout, 2)
    assert marker["shard"] == 2 and marker["items"] == [8, 10]
    assert marker["sha256"] == {k: hashlib.sha256(v.tobytes()).hexdigest() for k, v in tables.items()}
    datetime.fromisoformat(str(marker["written"]))
    with pytest.raises(StoreError, match="shard 1 of split 'forget' is not committed"):
        open_run(tmp_path / "r.zarr").marker("forget", 1)


def test_write_shard_checks_tables(tmp_path: Path) -> None:
    layout = _layout(n=10, shard_size=4)
    writer = _record(tmp_path / "r.zarr", layout, shards=[0])
    good = _tables(layout, 1)
    with pytest.raises(StoreError, match=r"missing \['tokens'\], unknown \['x'\]"):
        writer.write_shard("forget", 1, {**{k: v for k, v in good.items() if k != "tokens"}, "x": good["tokens"]})
    with pytest.raises(StoreError, match=r"field 'tokens' is int64 \(4, 3\), declared int32 \(4, 3\)"):
        writer.write_shard("forget", 1, {**good, "tokens": good["tokens"].astype(np.int64)})
    with pytest.raises(StoreError, match=r"field 'logp' is float32 \(2, 3, 2\), declared float32 \(4, 3, 2\)"):
        writer.write_shard("forget", 1, {**good, "logp": good["logp"][:2]})
    with pytest.raises(StoreError, match="out of range"):
        writer.write_shard("forget", 3, good)
    with pytest.raises(StoreError, match="shard 0 of split 'forget' is already committed"):
        writer.write_shard("forget", 0, _tables(layout, 0))
    assert writer.pending_shards("forget") == [1, 2]


# --- resume, fingerprints, overwrite -------------------------------------------------------------


def test_resume_after_a_crash_rewrites_only_uncommitted_shards(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path, layout = tmp_path / "r.zarr", _layout(n=10, shard_size=4)
    writer = _record(path, layout, shards=[0])
    with monkeypatch.context() as m:  # the process dies after the data of shard 1, before its marker
        m.setattr(zarr.Group, "create_group", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
        with pytest.raises(KeyboardInterrupt):
            writer.write_shard("forget", 1, _tables(layout, 1, seed=99))
    (path / "_commits" / "forget" / "000001").mkdir()
    orphans = [path / "_commits" / "forget" / "000001" / "zarr.0123.partial", _shard_file(path, "forget", "logp", 1).with_suffix(".4567.partial")]
    for orphan in orphans:  # a marker and a chunk torn mid-write
        orphan.write_bytes(b"{")
    assert _shard_file(path, "forget", "tokens", 1).exists()
    committed_file = _shard_file(path, "forget", "tokens", 0)
    before = (committed_file.stat().st_mtime_ns, open_run(path).marker("forget", 0))

    resumed = create_run(path, FP, {"who": "someone else"}, [layout])
    assert resumed.pending_shards("forget") == [1, 2]
    assert not open_run(path).committed("forget")[4:].any()
    for shard in resumed.pending_shards("forget"):
        resumed.write_shard("forget", shard, _tables(layout, shard))
    resumed.finalize()

    run = open_run(path)
    assert run.complete and run.provenance == {"who": "test"}
    for name, values in _all_tables(layout).items():
        assert np.array_equal(run.read("forget", name), values)
    assert (committed_file.stat().st_mtime_ns, run.marker("forget", 0)) == before
    assert not any(orphan.exists() for orphan in orphans)
    assert verify_run(path).ok


def test_two_writers_on_disjoint_shards(tmp_path: Path) -> None:
    path, layout = tmp_path / "r.zarr", _layout(n=10, shard_size=4)
    first = create_run(path, FP, {}, [layout])
    second = create_run(path, FP, {}, [layout])
    first.write_shard("forget", 0, _tables(layout, 0))
    second.write_shard("forget", 2, _tables(layout, 2))
    assert first.pending_shards("forget") == second.pending_shards("forget") == [1]
    first.write_shard("forget", 1, _tables(layout, 1))
    second.finalize()
    assert verify_run(path).ok


def test_another_fingerprint_is_refused(tmp_path: Path) -> None:
    _record(tmp_path / "r.zarr", _layout(), shards=[0])
    with pytest.raises(FingerprintMismatchError, match=r"fingerprint aaaaaaaaaaaa, not bbbbbbbbbbbb.*--overwrite.*--out"):
        create_run(tmp_path / "r.zarr", FP2, {}, [_layout()])
    assert open_run(tmp_path / "r.zarr").committed("forget")[:4].all()


def test_resume_with_another_layout_says_what_differs(tmp_path: Path) -> None:
    path = tmp_path / "r.zarr"
    _record(path, _layout())
    with pytest.raises(StoreError, match="n_items 10 vs requested 11"):
        create_run(path, FP, {}, [_layout(n=11)])
    with pytest.raises(StoreError, match=r"attrs differ in \['S'\]"):
        create_run(path, FP, {}, [SplitLayout("forget", 10, _fields(), {"S": 4}, 4)])
    with pytest.raises(StoreError, match="fields"):
        create_run(path, FP, {}, [SplitLayout("forget", 10, _fields()[:3], {"S": 3}, 4)])
    with pytest.raises(StoreError, match=r"splits \['forget'\] vs requested \['forget', 'retain'\]"):
        create_run(path, FP, {}, [_layout(), _layout(name="retain")])


def test_resume_refuses_other_codecs(tmp_path: Path) -> None:
    path, layout = tmp_path / "r.zarr", _layout()
    _record(path, layout, shards=[])
    meta_file = path / "forget" / "tokens" / "zarr.json"
    meta = json.loads(meta_file.read_text())
    meta["codecs"][0]["configuration"]["codecs"][1]["configuration"]["level"] = 9
    meta_file.write_text(json.dumps(meta))
    with pytest.raises(StoreError, match="field 'tokens' has other chunks, shards, fill or codecs"):
        create_run(path, FP, {}, [layout])


@pytest.mark.parametrize("same_fingerprint", [True, False])
def test_overwrite_replaces_the_run(tmp_path: Path, same_fingerprint: bool) -> None:
    path = tmp_path / "r.zarr"
    _record(path, _layout()).finalize()
    fingerprint = FP if same_fingerprint else FP2
    writer = create_run(path, fingerprint, {"new": True}, [_layout(n=5, name="retain")], overwrite=True)
    run = open_run(path)
    assert (run.fingerprint, run.complete, run.provenance, sorted(run.splits)) == (fingerprint, False, {"new": True}, ["retain"])
    assert writer.pending_shards("retain") == [0, 1]
    assert not (path / "forget").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.zarr"]  # no staging or trash left behind


def test_an_interrupted_overwrite_leaves_one_whole_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "r.zarr"
    _record(path, _layout()).finalize()
    with monkeypatch.context() as m:  # killed while building the new run: the old one stays whole
        m.setattr(zarr.Group, "create_array", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
        with pytest.raises(KeyboardInterrupt):
            create_run(path, FP2, {}, [_layout()], overwrite=True)
    assert (open_run(path).fingerprint, open_run(path).complete) == (FP, True) and verify_run(path).ok
    with monkeypatch.context() as m:  # killed while deleting the old run: the new one is in place
        m.setattr("shutil.rmtree", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
        with pytest.raises(KeyboardInterrupt):
            create_run(path, FP2, {}, [_layout()], overwrite=True)
    assert (open_run(path).fingerprint, open_run(path).complete) == (FP2, False)
    assert create_run(path, FP2, {}, [_layout()]).pending_shards("forget") == [0, 1, 2]


def test_a_path_that_is_not_a_run_is_never_replaced(tmp_path: Path) -> None:
    folder = tmp_path / "results"
    folder.mkdir()
    (folder / "keep.txt").write_text("mine")
    plain = zarr.open_group(tmp_path / "plain.zarr", mode="w")
    plain.create_array("x", shape=(2,), dtype="int32")
    (tmp_path / "file.zarr").write_text("not a folder")
    for path in (folder, tmp_path / "plain.zarr", tmp_path / "file.zarr"):
        for overwrite in (False, True):
            with pytest.raises(StoreError, match="is not a trajcache run"):
                create_run(path, FP, {}, [_layout()], overwrite=overwrite)
        with pytest.raises(StoreError, match="is not a trajcache run"):
            open_run(path)
    assert (folder / "keep.txt").read_text() == "mine" and "x" in zarr.open_group(tmp_path / "plain.zarr", mode="r")


def test_an_empty_directory_becomes_a_run(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    create_run(tmp_path / "out", FP, {}, [_layout()])
    assert open_run(tmp_path / "out").fingerprint == FP


def test_open_run_errors(tmp_path: Path) -> None:
    with pytest.raises(StoreNotFoundError, match="no run at .*missing.zarr"):
        open_run(tmp_path / "missing.zarr")
    path = tmp_path / "r.zarr"
    _record(path, _layout(), shards=[])
    root = json.loads((path / "zarr.json").read_text())
    root["attributes"]["trajcache"]["schema"] = 2
    (path / "zarr.json").write_text(json.dumps(root))
    with pytest.raises(StoreError, match="schema 2; trajcache .* reads schema 1"):
        open_run(path)


def test_create_run_checks_its_arguments(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="distinct names"):
        create_run(tmp_path / "r.zarr", FP, {}, [_layout(), _layout()])
    with pytest.raises(ConfigError, match="fingerprint"):
        create_run(tmp_path / "r.zarr", "", {}, [_layout()])
    with pytest.raises(ConfigError, match="provenance must be JSON"):
        create_run(tmp_path / "r.zarr", FP, {"t": np.float32(1)}, [_layout()])
    assert not (tmp_path / "r.zarr").exists()


# --- finalize, plain zarr, verify, describe ------------------------------------------------------


def test_finalize_needs_every_shard(tmp_path: Path) -> None:
    writer = _record(tmp_path / "r.zarr", _layout(n=10, shard_size=4), shards=[1])
    with pytest.raises(StoreError, match=r"\{'forget': \[0, 2\]\}"):
        writer.finalize()
    assert not open_run(tmp_path / "r.zarr").complete


def test_plain_zarr_reads_the_run_before_and_after_finalize(tmp_path: Path) -> None:
    path, layout = tmp_path / "r.zarr", _layout(n=10, shard_size=4)
    writer = _record(path, layout, shards=[0, 2])
    expected = {"forget", "forget/eos_len", "forget/fixation", "forget/logp", "forget/tokens", "_commits", "_commits/forget"}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        members = {name for name, _ in zarr.open_group(path, mode="r").members(max_depth=None)}
        assert members == expected | {"_commits/forget/000000", "_commits/forget/000002"}
        assert "logp (10, 3, 2) float32" in str(zarr.open_group(path, mode="r").tree())
        writer.write_shard("forget", 1, _tables(layout, 1))
        writer.finalize()
        root = zarr.open_group(path, mode="r")
        assert root.metadata.consolidated_metadata is not None
        assert json.loads((path / "zarr.json").read_text())["consolidated_metadata"]["metadata"]["forget/tokens"]["shape"] == [10, 3]
        assert root.attrs["trajcache"]["complete"] is True
        assert {name for name, _ in root.members(max_depth=None)} >= expected
        assert np.array_equal(root["forget/tokens"][:], _all_tables(layout)["tokens"])
        assert zarr.open_consolidated(path, mode="r")["forget"].attrs["trajcache_split"] == {"S": 3}


def test_a_read_only_run_cannot_write(tmp_path: Path) -> None:
    _record(tmp_path / "r.zarr", _layout())
    run = open_run(tmp_path / "r.zarr")
    assert run._root.store.read_only
    with pytest.raises(ValueError, match="read-only"):
        run._root["forget/tokens"][0] = 1


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0xFF
    path.write_bytes(bytes(data))


def test_verify_detects_flipped_truncated_and_missing_data(tmp_path: Path) -> None:
    path, layout = tmp_path / "r.zarr", _layout(n=10, shard_size=4)
    _record(path, layout, shards=[0, 1, 2])
    assert verify_run(path).ok
    _flip_byte(_shard_file(path, "forget", "logp", 1))
    shard_file = _shard_file(path, "forget", "tokens", 2)
    shard_file.write_bytes(shard_file.read_bytes()[: shard_file.stat().st_size // 2])
    _shard_file(path, "forget", "eos_len", 0).unlink()
    report = verify_run(path)
    assert not report.ok and report.missing == ()
    found = {(b.split, b.shard, b.field): b.reason for b in report.bad}
    assert set(found) == {("forget", 1, "logp"), ("forget", 2, "tokens"), ("forget", 0, "eos_len")}
    assert "checksum" in found[("forget", 1, "logp")] and "checksum" in found[("forget", 2, "tokens")]
    assert found[("forget", 0, "eos_len")] == "sha256 differs from the commit marker"
    with pytest.raises(StoreError, match="field 'logp' does not decode.*trajcache verify"):
        open_run(path).read("forget", "logp")


def test_verify_reports_missing_shards_and_bad_markers(tmp_path: Path) -> None:
    path = tmp_path / "r.zarr"
    _record(path, _layout(n=10, shard_size=4), shards=[0, 2])
    marker_file = path / "_commits" / "forget" / "000002" / "zarr.json"
    marker = json.loads(marker_file.read_text())
    marker["attributes"]["trajcache_commit"]["items"] = [8, 12]
    marker_file.write_text(json.dumps(marker))
    report = verify_run(path)
    assert report.missing == (("forget", 1),)
    assert [(b.shard, b.field) for b in report.bad] == [(2, "*")] and "[8, 12]" in report.bad[0].reason


def test_describe_run(tmp_path: Path) -> None:
    path, layout = tmp_path / "r.zarr", _layout(n=10, shard_size=4)
    _record(path, layout, shards=[0, 2])
    info = describe_run(path)
    assert {k: info[k] for k in ("fingerprint", "complete", "schema", "provenance")} == {"fingerprint": FP, "complete": False, "schema": 1, "provenance": {"who": "test"}}
    datetime.fromisoformat(str(info["created"]))
    split = info["splits"]["forget"]
    assert (split["n_items"], split["committed_items"], split["shard_size"], split["n_shards"]) == (10, 6, 4, 3)
    assert split["fields"]["logp"]["bytes_raw"] == 6 * 3 * 2 * 4 and split["fields"]["fixation"]["bytes_raw"] == 6 * 3 * 2
    assert split["bytes_raw"] == sum(f["bytes_raw"] for f in split["fields"].values())
    on_disk = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    assert info["bytes_on_disk"] == on_disk > split["bytes_on_disk"] > 0


# --- declarations --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: FieldSpec("a/b", "int32"), "field name 'a/b' is invalid"),
        (lambda: FieldSpec("_x", "int32"), "field name '_x' is invalid"),
        (lambda: FieldSpec("x", "float64"), "dtype 'float64' is not storable"),
        (lambda: FieldSpec("x", "int32", [3]), "shape"),
        (lambda: FieldSpec("x", "int32", (0,)), "shape"),
        (lambda: SplitLayout("_commits", 1, (FieldSpec("x", "int32"),)), "split name '_commits' is invalid"),
        (lambda: SplitLayout("s", 0, (FieldSpec("x", "int32"),)), "n_items 0"),
        (lambda: SplitLayout("s", 1, (FieldSpec("x", "int32"),), shard_size=0), "shard_size 0"),
        (lambda: SplitLayout("s", 1, ()), "non-empty"),
        (lambda: SplitLayout("s", 1, (FieldSpec("x", "int32"), FieldSpec("x", "bool"))), "repeat"),
        (lambda: SplitLayout("s", 1, (FieldSpec("x", "int32"),), {"S": np.int64(3)}), "attrs must be JSON"),
        (lambda: SplitLayout("s", 1, (FieldSpec("x", "int32"),), {"p": float("nan")}), "attrs must be JSON"),
    ],
)
def test_declarations_are_validated(build: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build()  # type: ignore[operator]


def test_layouts_normalise_to_their_stored_form() -> None:
    a = SplitLayout("s", 5, (FieldSpec("b", "int32"), FieldSpec("a", "bool", (2,))), {"ids": ("x", "y")})
    b = SplitLayout("s", 5, (FieldSpec("a", "bool", (2,)), FieldSpec("b", "int32")), {"ids": ["x", "y"]})
    assert a == b and [f.name for f in a.fields] == ["a", "b"] and a.attrs == {"ids": ["x", "y"]}
    assert (a.n_shards, list(a.shard_items(0))) == (1, [0, 1, 2, 3, 4])
    assert [FieldSpec("x", d).fill for d in ("int16", "bool")] == [-1, False] and np.isnan(FieldSpec("x", "float16").fill)


def test_store_is_the_only_module_importing_zarr() -> None:
    package = Path(__file__).resolve().parents[1] / "trajcache"
    importers = sorted(
        str(p.relative_to(package)) for p in package.rglob("*.py")
        if any(line.strip().startswith(("import zarr", "from zarr")) for line in p.read_text().splitlines())
    )
    assert set(importers) <= {"store.py", "store_schema.py"}, importers
