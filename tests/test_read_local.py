"""The local read path: coalescing, page-cache reads, threads, descriptors, pickling."""

from __future__ import annotations

import asyncio
import errno
import gc
import json
import os
import pickle
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import zarr
from read_fixtures import (
    count_calls,
    local_store,
    manifest_for,
    open_fds,
    reads_of,
    store_over,
    write_source,
)
from zarr.abc.store import RangeByteRequest
from zarr.core.buffer import default_buffer_prototype

from zarr_manifest_store import ChunkManifest, ManifestArray, ManifestStore
from zarr_manifest_store.io import local as local_module
from zarr_manifest_store.io.sources import Sources, coalesce

PROTO = default_buffer_prototype()


def test_coalesce_plans_merged_reads():
    plan = coalesce(
        [(100, 110), (0, 10), (10, 20), (25, 30), (200, 400), (105, 108)],
        max_gap_bytes=5,
        max_coalesced_bytes=50,
    )
    assert plan == [(0, 30, [1, 2, 3]), (100, 110, [0, 5]), (200, 400, [4])]
    # adjacent ranges stop merging at the size limit; a range bigger than it is read alone
    assert coalesce([(0, 10), (10, 20), (20, 30)], max_gap_bytes=0, max_coalesced_bytes=20) == [
        (0, 20, [0, 1]),
        (20, 30, [2]),
    ]
    assert coalesce([(0, 10), (11, 20)], max_gap_bytes=0, max_coalesced_bytes=100) == [
        (0, 10, [0]),
        (11, 20, [1]),
    ]
    assert coalesce([], max_gap_bytes=0, max_coalesced_bytes=1) == []


def chunk_keys(n: int) -> list[str]:
    return [f"v/c/{i}/0" for i in range(n)]


def in_threads(n: int, work: Callable[[int], object]) -> None:
    """Run ``work(0)`` ... ``work(n - 1)`` in ``n`` threads released together; fail if any did."""
    errors: list[BaseException] = []
    start = threading.Barrier(n)

    def run(i: int) -> None:
        try:
            start.wait()
            work(i)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


async def test_concurrent_gets_of_one_file_become_one_read(tmp_path, monkeypatch):
    monkeypatch.setattr(local_module, "_RWF_NOWAIT", None)  # no page-cache shortcut
    store, _, path = local_store(tmp_path)
    preads = count_calls(monkeypatch, os, "pread", reads_of(path))
    expected = [(await store.get(k, PROTO)).to_bytes() for k in chunk_keys(24)]
    assert len(preads) == 24  # one after the other: one read each

    preads.clear()
    values = await asyncio.gather(*(store.get(k, PROTO) for k in chunk_keys(24)))
    assert [v.to_bytes() for v in values] == expected
    assert len(preads) == 1  # HDF5 wrote the chunks back to back: one read serves them all

    preads.clear()
    parts = await store.get_partial_values(
        PROTO, [(k, RangeByteRequest(1, 9)) for k in chunk_keys(24)[::3]]
    )
    assert [p.to_bytes() for p in parts] == [e[1:9] for e in expected[::3]]
    assert len(preads) == 1


async def test_gap_and_size_limits_split_reads(tmp_path, monkeypatch):
    monkeypatch.setattr(local_module, "_RWF_NOWAIT", None)
    path = tmp_path / "src.h5"
    write_source(path)
    store = store_over(manifest_for(path), max_coalesced_bytes=1)  # nothing merges
    preads = count_calls(monkeypatch, os, "pread", reads_of(path))
    await asyncio.gather(*(store.get(k, PROTO) for k in chunk_keys(6)))
    assert len(preads) == 6


async def test_cached_bytes_are_read_without_a_thread(tmp_path, monkeypatch):
    if local_module._RWF_NOWAIT is None:
        pytest.skip("preadv(RWF_NOWAIT) is Linux-only")
    store, data, _ = local_store(tmp_path)
    arr = zarr.open_group(store, mode="r")["v"]
    np.testing.assert_array_equal(arr[:], data)  # the file is now in the page cache

    def no_thread(*args):
        raise AssertionError("a cached read went to a worker thread")

    monkeypatch.setattr(local_module.LocalFiles, "read_batch", no_thread)
    values = await asyncio.gather(*(store.get(k, PROTO) for k in chunk_keys(24)))
    assert b"".join(v.to_bytes() for v in values)  # served inline, exactly
    np.testing.assert_array_equal(arr[:], data)


async def test_files_are_opened_and_checked_off_the_event_loop(tmp_path, monkeypatch):
    store, data, path = local_store(tmp_path)
    path.read_bytes()  # in the page cache, but not yet opened by the store
    opened_in = []
    original = local_module._open_readonly

    def spy(lpath):
        opened_in.append(threading.current_thread())
        return original(lpath)

    monkeypatch.setattr(local_module, "_open_readonly", spy)
    first = await store.get("v/c/0/0", PROTO)
    again = await asyncio.gather(*(store.get(k, PROTO) for k in chunk_keys(24)))
    assert len(opened_in) == 1  # opened once, then read from its open descriptor
    assert opened_in[0] is not threading.current_thread()  # in a worker, not on the loop
    assert first.to_bytes() == again[0].to_bytes()
    np.testing.assert_array_equal(zarr.open_group(store, mode="r")["v"][:], data)


async def test_a_file_system_that_cannot_tell_what_is_cached_is_read_in_threads(
    tmp_path, monkeypatch
):
    if local_module._RWF_NOWAIT is None:
        pytest.skip("preadv(RWF_NOWAIT) is Linux-only")
    store, data, path = local_store(tmp_path)
    arr = zarr.open_group(store, mode="r")["v"]
    np.testing.assert_array_equal(arr[:], data)  # opened, and in the page cache

    expected = [(await store.get(k, PROTO)).to_bytes() for k in chunk_keys(24)]
    attempts = []

    def unsupported(fd, *args):
        attempts.append(fd)
        raise OSError(errno.EOPNOTSUPP, "RWF_NOWAIT is not supported here")

    monkeypatch.setattr(local_module, "_preadv_nowait", unsupported)
    preads = count_calls(monkeypatch, os, "pread", reads_of(path))
    for _ in range(2):
        values = await asyncio.gather(*(store.get(k, PROTO) for k in chunk_keys(24)))
        assert [v.to_bytes() for v in values] == expected
    assert len(attempts) == 1  # refused once: from then on the file is read in threads
    assert preads  # by blocking preads, exactly
    np.testing.assert_array_equal(arr[:], data)


def test_reads_on_many_loops_while_descriptors_are_evicted_get_their_own_files(
    tmp_path, monkeypatch
):
    """Threads read distinct files at random (cached reads on their own event loops, blocking
    reads in workers) while two descriptors are kept open: every read returns the bytes of
    the file it names, never those of a descriptor closed and reused meanwhile."""
    monkeypatch.setattr(local_module, "MAX_OPEN_FILES", 2)
    contents = {}
    for i in range(8):
        path = tmp_path / f"f{i}.bin"
        path.write_bytes(np.random.default_rng(i).bytes(64 << 10))
        contents[str(path)] = path.read_bytes()
    sources = Sources()

    async def read_many(seed: int) -> None:
        rng = np.random.default_rng(seed)
        for _ in range(300):
            path = list(contents)[rng.integers(len(contents))]
            offset, length = int(rng.integers(60 << 10)), int(rng.integers(1, 4096))
            want = contents[path][offset : offset + length]
            if rng.random() < 0.2:
                assert bytes(sources.read_sync(path, offset, length)) == want
            else:
                assert bytes(await sources.read(path, offset, length)) == want

    in_threads(6, lambda i: asyncio.run(read_many(i)))
    sources.close()


def test_file_out_of_the_page_cache_reads_exactly(tmp_path):
    store, data, path = local_store(tmp_path)
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)  # drop the file from the page cache
    finally:
        os.close(fd)
    np.testing.assert_array_equal(zarr.open_group(store, mode="r")["v"][:], data)


def test_eight_threads_reading_one_store_agree(tmp_path):
    store, data, _ = local_store(tmp_path)
    arr = zarr.open_group(store, mode="r")["v"]
    results: dict[int, list[np.ndarray]] = {}

    def reader(i: int) -> None:
        got = []
        for k in range(6):  # whole array, slices, single chunks, the sync store API
            got.append(arr[:])
            got.append(arr[(i + k) % 40 : (i + k) % 40 + 7, 3:41])
            got.append(np.frombuffer(store.get_sync(f"v/c/{(i + k) % 24}/0").to_bytes(), "u1"))
            got.append(asyncio.run(store.get(f"v/c/{(i * 5 + k) % 24}/0", PROTO)).to_bytes())
        results[i] = got

    in_threads(8, reader)
    for i, got in results.items():
        for k in range(6):
            np.testing.assert_array_equal(got[4 * k], data)
            lo = (i + k) % 40
            np.testing.assert_array_equal(got[4 * k + 1], data[lo : lo + 7, 3:41])
    single = {}
    for i, got in results.items():
        for k in range(6):
            single.setdefault((i + k) % 24, []).append(got[4 * k + 2].tobytes())
            single.setdefault((i * 5 + k) % 24, []).append(got[4 * k + 3])
    assert all(len(set(v)) == 1 for v in single.values())


def source_fds(folder: Path) -> set[str]:
    """This test's open source files (other tests' stores may close theirs meanwhile)."""
    return {f for f in open_fds() if f.startswith(f"{folder}/")}


def test_no_descriptor_leaks(tmp_path, monkeypatch):
    monkeypatch.setattr(local_module, "MAX_OPEN_FILES", 4)
    paths = [tmp_path / f"f{i}.h5" for i in range(10)]
    data = [write_source(p) for p in paths][-1]  # ten identical files
    m = manifest_for(paths[0])
    spread = ChunkManifest(  # chunk i is read from file i % 10
        paths=[str(p) for p in paths],
        path_index=(np.arange(24, dtype=np.uint32) % 10).reshape(24, 1),
        offsets=m.offsets,
        lengths=m.lengths,
    )
    before = source_fds(tmp_path)
    store = store_over(spread)
    for _ in range(3):
        np.testing.assert_array_equal(zarr.open_group(store, mode="r")["v"][:], data)
        assert len(source_fds(tmp_path) - before) <= 4  # least recently used descriptors closed
    store.close()
    assert source_fds(tmp_path) == before

    forgotten = store_over(spread)
    np.testing.assert_array_equal(zarr.open_group(forgotten, mode="r")["v"][:], data)
    assert source_fds(tmp_path) - before
    del forgotten  # dropped without close(): its descriptors close all the same
    gc.collect()
    # zarr's event-loop thread may hold the last read's task, and the store with it, a moment
    # longer on a loaded machine: the descriptors must close once that goes too
    deadline = time.monotonic() + 10
    while source_fds(tmp_path) != before and time.monotonic() < deadline:
        time.sleep(0.05)
        gc.collect()
    assert source_fds(tmp_path) == before


def test_pickling_keeps_options_and_reads(tmp_path):
    store, data, _ = local_store(
        tmp_path, verify="always", max_gap_bytes=10, max_coalesced_bytes=1000, retries=1
    )
    zarr.open_group(store, mode="r")["v"][:2]  # descriptors open: they must not travel
    clone = pickle.loads(pickle.dumps(store))
    assert clone == store
    assert clone.sources.options == {
        "verify": "always",
        "max_concurrency": 64,
        "max_gap_bytes": 10,
        "max_coalesced_bytes": 1000,
        "read_budget_bytes": 256 << 20,
        "retries": 1,
        "timeout": 15.0,
        "deadline": 25.0,
        "read_ahead_bytes": 64 << 20,
    }
    np.testing.assert_array_equal(zarr.open_group(clone, mode="r")["v"][:], data)
    assert clone.with_read_only(True) == store
    assert store_over(manifest_for(tmp_path / "src.h5"), verify="never") != store


def test_bad_options_are_refused(tmp_path):
    path = tmp_path / "src.h5"
    write_source(path)
    for bad, match in [
        ({"verify": "sometimes"}, "verify must be one of"),
        ({"max_concurrency": 0}, "max_concurrency must be a positive integer"),
        ({"max_gap_bytes": -1}, "max_gap_bytes must be a non-negative integer"),
        ({"timeout": 0}, "timeout must be a positive number"),
    ]:
        with pytest.raises(ValueError, match=match):
            store_over(manifest_for(path), **bad)
    with pytest.raises(TypeError, match="unexpected keyword"):
        store_over(manifest_for(path), max_gap=3)


async def test_allow_list_guards_every_read(tmp_path):
    store, _, path = local_store(tmp_path, allow=[str(tmp_path / "elsewhere")])
    with pytest.raises(PermissionError, match=r"src\.h5.*outside the allowed prefixes.*'v/c/0/0'"):
        await store.get("v/c/0/0", PROTO)
    with pytest.raises(PermissionError, match=r"src\.h5"):
        store.get_sync("v/c/1/0")
    with pytest.raises(PermissionError, match=r"src\.h5"):
        await store.get_partial_values(PROTO, [("v/c/2/0", RangeByteRequest(0, 4))])
    with pytest.raises(PermissionError, match=r"src\.h5"):
        zarr.open_group(store, mode="r")["v"][:]
    with pytest.raises(PermissionError):
        store.sources.fingerprint(str(path))
    report = store.verify()
    assert [s.status for s in report.sources] == ["forbidden"]
    # metadata is not a source read: the hierarchy still opens
    assert zarr.open_group(store, mode="r")["v"].shape == (48, 50)


def test_sharded_chunks_are_read_through_partial_reads(tmp_path):
    """A chunk may be a whole shard: zarr reads its index and inner chunks as byte ranges."""
    data = np.arange(16 * 16, dtype="<i4").reshape(16, 16)
    written = zarr.create_array(
        zarr.storage.LocalStore(tmp_path / "z"),
        shape=(16, 16),
        chunks=(4, 4),
        shards=(8, 16),
        dtype="<i4",
        compressors=None,
    )
    written[:] = data
    meta = json.loads((tmp_path / "z" / "zarr.json").read_text())
    shards = {f"{i}.0": tmp_path / "z" / "c" / str(i) / "0" for i in range(2)}
    manifest = ChunkManifest.from_dict(
        {k: {"path": str(p), "offset": 0, "length": p.stat().st_size} for k, p in shards.items()}
    )
    store = ManifestStore(ManifestArray(metadata=meta, manifest=manifest))
    arr = zarr.open_array(store, mode="r")
    np.testing.assert_array_equal(arr[:], data)
    np.testing.assert_array_equal(arr[5:7, 3:9], data[5:7, 3:9])  # index + a few inner chunks
