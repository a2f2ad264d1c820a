"""The compiled steps of a read (``_speedups.c``) answer exactly as their Python twins."""

from __future__ import annotations

import asyncio
import errno
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import zarr
from helpers import array_metadata
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from read_fixtures import local_store

from zarr_manifest_store import (
    ChunkManifest,
    ManifestArray,
    ManifestGroup,
    ManifestStore,
    write_manifest,
)
from zarr_manifest_store import manifest as manifest_module
from zarr_manifest_store import sources as sources_module
from zarr_manifest_store import store as store_module
from zarr_manifest_store.manifest import INLINE, MISSING

ENCODINGS = {
    "default/": ({"name": "default", "configuration": {"separator": "/"}}, "c/", "/"),
    "default.": ({"name": "default", "configuration": {"separator": "."}}, "c.", "."),
    "v2.": ({"name": "v2", "configuration": {"separator": "."}}, "", "."),
    "v2/": ({"name": "v2", "configuration": {"separator": "/"}}, "", "/"),
}
ARRAY_PATHS = ["t2m", "g/u10", "données/v", "g/h/w"]  # one array per encoding


def test_the_compiled_steps_are_built():
    """``make test`` builds the extension: without it the Python twins would serve every
    read, and the compiled code would go untested."""
    assert manifest_module.Locator is not None
    assert sources_module._read_nowait is not sources_module._preadv_nowait


def random_manifest(rng: np.random.Generator, grid: tuple[int, ...]) -> ChunkManifest:
    """References to 3 paths at random, some chunks missing, some inline."""
    index = rng.integers(0, 3, size=grid).astype(np.uint32)
    index[rng.random(grid) < 0.2] = MISSING
    inline_at = rng.random(grid) < 0.1
    index[inline_at] = INLINE
    present = index < INLINE
    offsets = np.where(present, rng.integers(0, 2**40, size=grid), 0).astype(np.uint64)
    lengths = np.where(present, rng.integers(1, 2**20, size=grid), 0).astype(np.uint64)
    inline = {tuple(int(c) for c in at): bytes(rng.bytes(3)) for at in np.argwhere(inline_at)}
    return ChunkManifest(
        paths=["/a.nc", "s3://b/b.nc", "/d/é 1%.nc"],
        path_index=index,
        offsets=offsets,
        lengths=lengths,
        inline=inline,
    )


def hierarchy(seed: int) -> ManifestGroup:
    """The arrays of ``ARRAY_PATHS``, one per encoding, on random grids of 1 to 3 dimensions."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for path, (encoding, _, _) in zip(ARRAY_PATHS, ENCODINGS.values(), strict=True):
        grid = tuple(int(n) for n in rng.integers(1, 13, size=rng.integers(1, 4)))
        meta = {**array_metadata(grid, (1,) * len(grid), "uint8"), "chunk_key_encoding": encoding}
        arrays[path] = ManifestArray(metadata=meta, manifest=random_manifest(rng, grid))
    g_h = ManifestGroup(arrays={"w": arrays["g/h/w"]})
    return ManifestGroup(
        arrays={"t2m": arrays["t2m"]},
        groups={
            "g": ManifestGroup(arrays={"u10": arrays["g/u10"]}, groups={"h": g_h}),
            "données": ManifestGroup(arrays={"v": arrays["données/v"]}),
        },
    )


def python_only(store: ManifestStore, monkeypatch: pytest.MonkeyPatch) -> ManifestStore:
    """A fresh twin of ``store`` that looks every key up in Python."""
    with monkeypatch.context() as m:
        m.setattr(store_module, "Locator", None)
        return store.with_read_only(True)


ODD_DECIMALS = ["", "01", "00", "+1", "-0", " 1", "1 ", "\u0661", "1_0", "0x1", "1e1"]
ODD_DECIMALS += ["99999999999999999999999", "1\udc80", "\x00"]  # huge, a lone surrogate, NUL


def decimal_spellings() -> st.SearchStrategy[str]:
    canonical = st.integers(0, 14).map(str)
    return st.one_of(canonical, canonical, st.sampled_from(ODD_DECIMALS))


@st.composite
def keys(draw: st.DrawFn) -> str:
    """Chunk keys of the hierarchy's arrays, mostly well-formed, some subtly not."""
    i = draw(st.integers(0, len(ARRAY_PATHS) - 1))
    _, prefix, separator = list(ENCODINGS.values())[i]
    prefix = draw(st.sampled_from([prefix, prefix, "c/", "c.", "", "C/"]))
    separator = draw(st.sampled_from([separator, separator, separator, "/", "."]))
    parts = draw(st.lists(decimal_spellings(), min_size=0, max_size=4))
    array = draw(
        st.sampled_from([ARRAY_PATHS[i], ARRAY_PATHS[i], "g", "g/h", "g\udc80", "nothing"])
    )
    return f"{array}/{prefix}{separator.join(parts)}"


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**16), probes=st.lists(keys(), min_size=1, max_size=60))
def test_compiled_keys_resolve_as_in_python(seed, probes):
    """Every key resolves to the reference Python finds, and to nothing where Python finds
    none, inline bytes, or a key it refuses (non-canonical, outside the grid, no array's)."""
    store = ManifestStore(hierarchy(seed))
    with pytest.MonkeyPatch.context() as m:
        twin, general = python_only(store, m), python_only(store, m)
        m.setattr(store_module, "DECIMAL_TABLE_LENGTH", 1)  # zarr's decoder, not the tables
        for path in ARRAY_PATHS:  # looked up once: the compiled lookups are built now
            store._lookup(f"{path}/x")
            general._lookup(f"{path}/x")
    assert set(store._located) == set(ARRAY_PATHS)
    assert not twin._located
    for key in probes:
        compiled = manifest_module.resolve(store._located, key)
        expected = twin._target(key, None)
        assert general._target(key, None) == expected, key
        if isinstance(expected, tuple):
            assert compiled == tuple(expected), key
        else:  # nothing, or inline bytes: the store answers those the long way
            assert compiled is None, key
        assert store._target(key, None) == expected, key


def test_a_root_array_and_grids_longer_than_the_decimal_tables():
    n = store_module.DECIMAL_TABLE_LENGTH + 5
    manifest = ChunkManifest(
        paths=["/a.nc"],
        path_index=np.zeros(n, np.uint32),
        offsets=np.arange(n, dtype=np.uint64) * 10,
        lengths=np.full(n, 10, np.uint64),
    )
    store = ManifestStore(ManifestArray(metadata=array_metadata((n,), (1,)), manifest=manifest))
    assert store._target("c/0", None) == ("/a.nc", 0, 10)  # first use, in Python
    assert store._located == {"": store._located[""]}
    for key, expected in {
        f"c/{n - 1}": ("/a.nc", (n - 1) * 10, 10),
        f"c/{n}": None,
        "c/016384": None,
        "zarr.json": None,
        "c/1/0": None,
    }.items():
        assert manifest_module.resolve(store._located, key) == expected, key
    assert manifest_module.resolve({}, "c/0") is None


def test_locators_read_strided_and_narrow_arrays():
    """Transposed and broadcast arrays and 16-bit lengths are read through their strides."""
    index = np.zeros((4, 3), np.uint32).T  # (3, 4), not C-contiguous
    offsets = np.arange(12, dtype=np.uint64).reshape(4, 3).T * 1000
    lengths = np.broadcast_to(np.uint16(77), (3, 4))
    locator = manifest_module.Locator("c/", "/", ("/a.nc",), index, offsets, lengths)
    for i in range(3):
        for j in range(4):
            got = manifest_module.resolve({"x": locator}, f"x/c/{i}/{j}")
            assert got == ("/a.nc", int(offsets[i, j]), 77)
    # a row past the path table (a ChunkManifest never holds one) names no reference
    beyond = manifest_module.Locator(
        "", ".", ("/a.nc",), np.array([0, 1], np.uint32), offsets[0, :2], lengths[0, :2]
    )
    assert manifest_module.resolve({"": beyond}, "0") == ("/a.nc", 0, 77)
    assert manifest_module.resolve({"": beyond}, "1") is None


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        ({"index": np.zeros((2, 2), np.int32)}, TypeError, "index"),
        ({"index": np.zeros((2, 2), ">u4")}, TypeError, "index"),
        ({"index": np.zeros((), np.uint32)}, ValueError, "dimensions"),
        ({"offsets": np.zeros((2, 2), np.float64)}, TypeError, "offsets"),
        ({"offsets": np.zeros((2, 3), np.uint64)}, ValueError, "shape"),
        ({"lengths": np.zeros((2, 2), np.int64)}, TypeError, "lengths"),
        ({"separator": "1"}, ValueError, "separator"),
        ({"separator": "//"}, ValueError, "separator"),
        ({"paths": ("/a.nc", 3)}, TypeError, "paths"),
    ],
)
def test_locators_refuse_arrays_they_cannot_read(change, error, match):
    args = {
        "prefix": "c/",
        "separator": "/",
        "paths": ("/a.nc",),
        "index": np.zeros((2, 2), np.uint32),
        "offsets": np.zeros((2, 2), np.uint64),
        "lengths": np.zeros((2, 2), np.uint32),
        **change,
    }
    with pytest.raises(error, match=match):
        manifest_module.Locator(**args)


def test_a_lazy_manifest_gets_its_locator_once_loaded(tmp_path):
    """Reading one chunk of a columnar document loads one block, not the whole manifest;
    once the manifest is loaded, its keys resolve compiled."""
    src = tmp_path / "a.bin"
    src.write_bytes(bytes(range(200)))
    grid = (10, 10)
    manifest = ChunkManifest(
        paths=[str(src)],
        path_index=np.zeros(grid, np.uint32),
        offsets=np.arange(100, dtype=np.uint64).reshape(grid),
        lengths=np.full(grid, 2, np.uint64),
    )
    array = ManifestArray(metadata=array_metadata((10, 20), (1, 2), "uint8"), manifest=manifest)
    write_manifest(
        ManifestGroup(arrays={"v": array}), tmp_path / "doc.zarr", encoding="columnar", mode="w"
    )
    store = ManifestStore.open(tmp_path / "doc.zarr", allow=[str(tmp_path)])
    lazy = store.root["v"].manifest
    assert store._target("v/c/3/4", None) == (str(src), 34, 2)
    assert not lazy.loaded
    assert not store._located
    lazy.load()
    assert store._target("v/c/3/5", None) == (str(src), 35, 2)  # still in Python: it loads
    assert set(store._located) == {"v"}
    assert manifest_module.resolve(store._located, "v/c/9/9") == (str(src), 99, 2)


# ---------------------------------------------------------------------- cached reads


def dropped_from_the_page_cache(fd: int) -> None:
    os.fsync(fd)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)


@pytest.mark.skipif(sources_module._RWF_NOWAIT is None, reason="RWF_NOWAIT is Linux-only")
def test_compiled_cached_reads_answer_as_preadv(tmp_path: Path):
    path = tmp_path / "f.bin"
    content = np.random.default_rng(0).bytes(300_000)
    path.write_bytes(content)
    fd = os.open(path, os.O_RDONLY)
    compiled, twin = sources_module._read_nowait, sources_module._preadv_nowait
    try:
        rng = np.random.default_rng(1)
        spans = [(0, 0), (0, len(content)), (len(content) - 5, 5), (len(content) - 5, 6)]
        spans += [(int(rng.integers(300_000)), int(rng.integers(1, 150_000))) for _ in range(50)]
        for offset, length in spans:  # small and large (the GIL is let go), and past the end
            a, b = compiled(fd, offset, length), twin(fd, offset, length)
            if offset + length > len(content):
                assert (a, b) == (None, None)
                continue
            assert a.dtype == np.uint8
            assert a.tobytes() == b.tobytes() == content[offset:][:length]
        dropped_from_the_page_cache(fd)
        assert (compiled(fd, 4096, 3000), twin(fd, 4096, 3000)) == (None, None)
        os.pread(fd, 3000, 4096)
        assert compiled(fd, 4096, 3000).tobytes() == content[4096:7096]
    finally:
        os.close(fd)
    assert errno_of(compiled, fd) == errno_of(twin, fd) == errno.EBADF  # closed
    folder = os.open(tmp_path, os.O_RDONLY)
    try:
        assert errno_of(compiled, folder) == errno_of(twin, folder)
    finally:
        os.close(folder)


def errno_of(read: Callable[[int, int, int], object], fd: int) -> int:
    try:
        read(fd, 0, 10)
    except OSError as e:
        return e.errno
    raise AssertionError(f"{read} read from descriptor {fd}")


async def test_python_only_store_reads_what_the_compiled_one_does(tmp_path, monkeypatch):
    """Built without a C compiler, a store reads the same bytes (through its Python twins)."""
    store, _, _ = local_store(tmp_path)
    monkeypatch.setattr(sources_module, "_read_nowait", sources_module._preadv_nowait)
    twin = python_only(store, monkeypatch)
    keys = [f"v/c/{i}/0" for i in range(24)] + ["v/c/24/0", "v/c/01/0", "v/zarr.json"]
    for _ in range(2):  # the first reads open the file; then cached reads, compiled or not
        got = await asyncio.gather(*(store.get(k) for k in keys))
        want = await asyncio.gather(*(twin.get(k) for k in keys))
        assert [g and g.to_bytes() for g in got] == [w and w.to_bytes() for w in want]
    assert store._located
    assert not twin._located


BLOCK_THE_EXTENSION = """
import sys
class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name == "zarr_manifest_store._speedups":
            raise ImportError("built without a C compiler")
sys.meta_path.insert(0, Blocker())
"""


def test_without_the_compiled_module_the_package_reads_the_same(tmp_path):
    """The package as installed without a C compiler: every step in Python, the same values."""
    store, data, _ = local_store(tmp_path)
    np.testing.assert_array_equal(zarr.open_group(store, mode="r")["v"][:], data)
    script = BLOCK_THE_EXTENSION + (
        "import asyncio, sys, zarr\n"
        "from read_fixtures import local_store\n"
        "from zarr_manifest_store import manifest, sources\n"
        "assert manifest.Locator is None and sources._read_nowait is sources._preadv_nowait\n"
        "store, data, path = local_store(__import__('pathlib').Path(sys.argv[1]), name='b.h5')\n"
        "values = zarr.open_group(store, mode='r')['v'][:]\n"
        "again = [asyncio.run(store.get(f'v/c/{i}/0')) for i in range(24)]\n"
        "assert store.get_sync('v/c/24/0') is None\n"
        "sys.stdout.buffer.write(values.tobytes() + b''.join(b.to_bytes() for b in again))\n"
    )
    tests = str(Path(__file__).parent)
    out = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)],
        capture_output=True,
        check=True,
        env={**os.environ, "PYTHONPATH": tests},
    ).stdout
    chunks = [asyncio.run(store.get(f"v/c/{i}/0")).to_bytes() for i in range(24)]
    assert out == data.tobytes() + b"".join(chunks)
