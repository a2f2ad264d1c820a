"""Chunk keys resolve as zarr encodes them; cached local reads answer as ``pread`` does."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import pytest
from helpers import GZIP_SHUFFLE_CODECS, array_metadata
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zarr_manifest_store import (
    ChunkManifest,
    ManifestArray,
    ManifestGroup,
    ManifestStore,
)
from zarr_manifest_store import served as served_module
from zarr_manifest_store.io import local as local_module
from zarr_manifest_store.manifest import INLINE, MISSING

ENCODINGS = {
    "default/": ({"name": "default", "configuration": {"separator": "/"}}, "c/", "/"),
    "default.": ({"name": "default", "configuration": {"separator": "."}}, "c.", "."),
    "v2.": ({"name": "v2", "configuration": {"separator": "."}}, "", "."),
    "v2/": ({"name": "v2", "configuration": {"separator": "/"}}, "", "/"),
}
ARRAY_PATHS = ["t2m", "g/u10", "données/v", "g/h/w"]  # one array per encoding


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


def expected_chunks(root: ManifestGroup) -> dict[str, object]:
    """Every chunk key of the hierarchy, encoded by zarr, with what the manifest holds there."""
    out: dict[str, object] = {}
    for path, node in root.walk():
        if isinstance(node, ManifestArray):
            encoding = node.metadata.chunk_key_encoding
            for coords in np.ndindex(node.manifest.shape):
                chunk = node.manifest.get(coords)
                if chunk is not None:
                    value = chunk if isinstance(chunk, bytes) else tuple(chunk)
                    out[f"{path}/{encoding.encode_chunk_key(coords)}"] = value
    return out


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**16), probes=st.lists(keys(), min_size=1, max_size=60))
def test_chunk_keys_resolve_as_zarr_encodes_them(seed, probes):
    """A key resolves to the chunk zarr's own encoding names by it, and to nothing when it
    is not one (non-canonical, outside the grid, no array's); the decimal tables and
    zarr's decoder agree."""
    root = hierarchy(seed)
    store = ManifestStore(root)
    expected = expected_chunks(root)
    with pytest.MonkeyPatch.context() as m:
        m.setattr(served_module, "DECIMAL_TABLE_LENGTH", 1)  # zarr's decoder, not the tables
        general = ManifestStore(root)
        for path in ARRAY_PATHS:
            general._lookup(f"{path}/x")
    for key in [*probes, *list(expected)[:20]]:
        want = expected.get(key)
        got = store._target(key, None)
        assert (tuple(got) if isinstance(got, tuple) else got) == want, key
        got = general._target(key, None)
        assert (tuple(got) if isinstance(got, tuple) else got) == want, key


def test_a_root_array_and_grids_longer_than_the_decimal_tables():
    n = served_module.DECIMAL_TABLE_LENGTH + 5
    manifest = ChunkManifest(
        paths=["/a.nc"],
        path_index=np.zeros(n, np.uint32),
        offsets=np.arange(n, dtype=np.uint64) * 10,
        lengths=np.full(n, 10, np.uint64),
    )
    # compressed: an uncompressed array of so many chunks is served in chunks of many rows
    meta = array_metadata((n,), (1,), codecs=GZIP_SHUFFLE_CODECS)
    store = ManifestStore(ManifestArray(metadata=meta, manifest=manifest))
    for key, expected in {
        "c/0": ("/a.nc", 0, 10),
        f"c/{n - 1}": ("/a.nc", (n - 1) * 10, 10),
        f"c/{n}": None,
        "c/016384": None,
        "c/1/0": None,
    }.items():
        assert store._target(key, None) == expected, key


# ---------------------------------------------------------------------- cached reads


def dropped_from_the_page_cache(fd: int) -> None:
    os.fsync(fd)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)


@pytest.mark.skipif(local_module._RWF_NOWAIT is None, reason="RWF_NOWAIT is Linux-only")
def test_cached_reads_answer_as_pread(tmp_path: Path):
    """A non-blocking read returns the bytes ``pread`` does, or None when a byte is not in
    the page cache or lies past the end of the file."""
    path = tmp_path / "f.bin"
    content = np.random.default_rng(0).bytes(300_000)
    path.write_bytes(content)
    fd = os.open(path, os.O_RDONLY)
    read = local_module._preadv_nowait
    try:
        rng = np.random.default_rng(1)
        spans = [(0, 0), (0, len(content)), (len(content) - 5, 5), (len(content) - 5, 6)]
        spans += [(int(rng.integers(300_000)), int(rng.integers(1, 150_000))) for _ in range(50)]
        for offset, length in spans:
            got = read(fd, offset, length)
            if offset + length > len(content):
                assert got is None
                continue
            assert got.dtype == np.uint8
            assert got.tobytes() == os.pread(fd, length, offset) == content[offset:][:length]
        dropped_from_the_page_cache(fd)
        assert read(fd, 4096, 3000) is None
        os.pread(fd, 3000, 4096)
        assert read(fd, 4096, 3000).tobytes() == content[4096:7096]
    finally:
        os.close(fd)
    with pytest.raises(OSError, match="Bad file descriptor") as closed:
        read(fd, 0, 10)
    assert closed.value.errno == errno.EBADF
