"""HDF5's LZF, LZ4 and bitshuffle filters, read exactly (issue 18: every odd HDF5 file).

Each file is written here with h5py (LZF is h5py's own filter) and hdf5plugin (LZ4,
bitshuffle alone, with LZ4 and with zstd), in several data types and chunkings whose
element counts leave bitshuffle a partial last block and elements outside any block;
every dataset must read equal to h5py, through the scanned hierarchy and through a
written document. A corrupted chunk is refused naming the array and the chunk.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

import fsspec
import h5py
import hdf5plugin
import numpy as np
import pytest
import zarr

import zarr_manifest_store as zms

filters = importlib.import_module("zarr_manifest_store.scan.hdf5.filters")

pytestmark = pytest.mark.filterwarnings("ignore::zarr.errors.UnstableSpecificationWarning")

FILTERS = {
    "lzf": {"compression": "lzf"},
    "lzf+shuffle": {"compression": "lzf", "shuffle": True},
    "lz4": dict(hdf5plugin.LZ4()),
    "lz4 in 64-byte blocks": dict(hdf5plugin.LZ4(nbytes=64)),
    "bitshuffle": dict(hdf5plugin.Bitshuffle(cname="none")),
    "bitshuffle of 16-element blocks": dict(hdf5plugin.Bitshuffle(nelems=16, cname="none")),
    "bitshuffle+lz4": dict(hdf5plugin.Bitshuffle(cname="lz4")),
    "bitshuffle+lz4 of 16-element blocks": dict(hdf5plugin.Bitshuffle(nelems=16, cname="lz4")),
    "bitshuffle+zstd": dict(hdf5plugin.Bitshuffle(cname="zstd", clevel=5)),
    "shuffle, bitshuffle+lz4, fletcher32": {
        **hdf5plugin.Bitshuffle(nelems=24, cname="lz4"),
        "shuffle": True,
        "fletcher32": True,
    },
}
CODECS = {  # the codec of the filters whose name holds the key (the first such key)
    "bitshuffle": "zarr_manifest_store.hdf5_bitshuffle",
    "lzf": "zarr_manifest_store.hdf5_lzf",
    "lz4": "zarr_manifest_store.hdf5_lz4",
}
DTYPES = ["u1", "<i2", ">f4", "<u4", "<f8", ">i8"]
SHAPES = {  # chunk element counts: 2 past whole blocks of 16; a last block of 8 and 2 past it; < 8
    "210": ((37, 53), (10, 21)),
    "250": ((23, 60), (10, 25)),
    "7": ((30,), (7,)),
}


def write(path, options) -> None:
    """Every data type in every chunking, one dataset partly unwritten (fill value)."""
    rng = np.random.default_rng(7)
    with h5py.File(path, "w") as f:
        for dtype in DTYPES:
            for label, (shape, chunks) in SHAPES.items():
                values = (
                    np.arange(np.prod(shape)).reshape(shape) // 16 % 97 - rng.integers(0, 2)
                ).astype(dtype)
                f.create_dataset(f"{dtype[-2:]}_{label}", data=values, chunks=chunks, **options)
        sparse = f.create_dataset(
            "sparse", (40, 40), "<f4", chunks=(8, 8), fillvalue=-7.5, **options
        )
        sparse[3:11, 20:30] = 1.25  # two chunks written, the rest never stored


def same_as_h5py(group: zarr.Group, path) -> list[str]:
    """The datasets whose values (or data type, but for byte order) differ from h5py's."""
    wrong = []
    with h5py.File(path, "r") as f:
        for name, dataset in f.items():
            expected, got = dataset[...], group[name][...]
            if got.dtype != expected.dtype.newbyteorder("=") or not np.array_equal(got, expected):
                wrong.append(name)
    return wrong


@pytest.mark.parametrize("name", sorted(FILTERS))
def test_every_dataset_reads_exactly_as_h5py_reads_it(name, tmp_path):
    path = tmp_path / "filtered.h5"
    write(path, FILTERS[name])
    scanned = zms.scan(path)
    for array in scanned.arrays.values():
        codecs = [c["name"] for c in array.metadata.to_dict()["codecs"]]
        assert CODECS[next(c for c in CODECS if c in name)] in codecs, codecs
        # referenced in place, not materialised (h5py stores a chunk LZF cannot shrink as it is)
        assert not array.manifest.inline or ("lzf" in name and array.shape == (30,))
    assert same_as_h5py(zarr.open_group(zms.ManifestStore(scanned), mode="r"), path) == []
    zms.write_manifest(scanned, tmp_path / "doc.zarr")
    store = zms.ManifestStore.open(tmp_path / "doc.zarr", allow=[str(tmp_path)])
    assert same_as_h5py(zarr.open_group(store, mode="r"), path) == []


def test_lzf_chunks_that_skipped_the_filter_are_stored_inline_exactly(tmp_path):
    path = tmp_path / "noise.h5"
    noise = np.random.default_rng(0).integers(0, 2**32, (64, 64), dtype="<u4")  # incompressible
    with h5py.File(path, "w") as f:
        f.create_dataset("noise", data=noise, chunks=(16, 16), compression="lzf")
    scanned = zms.scan(path)
    assert len(scanned["noise"].manifest.inline) == 16  # h5py stored each chunk unfiltered
    np.testing.assert_array_equal(zarr.open_array(zms.ManifestStore(scanned["noise"]))[...], noise)


@pytest.mark.parametrize("encoding", ["json", "columnar"])
def test_a_document_of_an_array_whose_every_chunk_is_inline_opens(encoding, tmp_path):
    path = tmp_path / "noise.h5"
    noise = np.random.default_rng(1).integers(0, 256, 30, dtype="u1")  # LZF cannot shrink it
    with h5py.File(path, "w") as f:
        f.create_dataset("noise", data=noise, chunks=(7,), compression="lzf")
    scanned = zms.scan(path)
    assert len(scanned["noise"].manifest.inline) == 5
    zms.write_manifest(scanned, tmp_path / "doc.zarr", encoding=encoding)
    store = zms.ManifestStore.open(tmp_path / "doc.zarr")  # reads no source: no allow-list
    np.testing.assert_array_equal(zarr.open_group(store, mode="r")["noise"][...], noise)


def test_bitshuffle_after_fletcher32_of_8_byte_elements_is_read_as_hdf5_reads_it(tmp_path):
    """HDF5 skips that bitshuffle on every chunk (it fails on 8-byte elements + 4 bytes)."""
    path = tmp_path / "never.h5"
    values = np.arange(60, dtype=">f8").reshape(6, 10)
    with h5py.File(path, "w") as f:
        dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        dcpl.set_chunk((4, 3))
        dcpl.set_fletcher32()
        dcpl.set_filter(32008, h5py.h5z.FLAG_OPTIONAL, (0, 2))  # bitshuffle + lz4
        space = h5py.h5s.create_simple(values.shape)
        dsid = h5py.h5d.create(f.id, b"d", h5py.h5t.IEEE_F64BE, space, dcpl=dcpl)
        h5py.Dataset(dsid)[...] = values
        assert dsid.get_chunk_info(0).filter_mask == 2  # bitshuffle skipped
    scanned = zms.scan(path)  # materialised: read with h5py, stored inline
    np.testing.assert_array_equal(zarr.open_array(zms.ManifestStore(scanned["d"]))[...], values)
    with h5py.File(path) as f, pytest.raises(filters.UnmappableFilter, match="never applies"):
        filters.filter_codecs(filters.pipeline(f["d"].id.get_create_plist()))


def test_pipeline_codecs_converts_each_pipeline_once_and_hands_out_copies(tmp_path):
    path = tmp_path / "pipelines.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("a", data=np.arange(8.0), chunks=(4,), compression="gzip", shuffle=True)
        f.create_dataset("b", data=np.arange(8.0), chunks=(4,), compression="gzip", shuffle=True)
        f.create_dataset("c", data=np.arange(8.0), chunks=(4,), compression="gzip")
    with h5py.File(path) as f:
        dcpls = {name: f[name].id.get_create_plist() for name in "abc"}
        first = filters.pipeline_codecs(dcpls["a"])
        assert first == filters.filter_codecs(filters.pipeline(dcpls["a"]))
        first[0]["configuration"]["elementsize"] = 99  # a caller's change stays its own
        assert filters.pipeline_codecs(dcpls["b"]) == filters.filter_codecs(
            filters.pipeline(dcpls["b"])
        )
        assert filters.pipeline_codecs(dcpls["c"]) == [
            {"name": "numcodecs.zlib", "configuration": {"level": 4}}
        ]


def test_pipeline_codecs_keeps_values_marshal_would_turn_into_bytes(tmp_path, monkeypatch):
    def numpy_level(cd):
        return {"name": "numcodecs.zlib", "configuration": {"level": np.int64(cd[0])}}

    monkeypatch.setitem(filters._BUILDERS, 1, numpy_level)
    path = tmp_path / "level.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset(
            "a", data=np.arange(8.0), chunks=(4,), compression="gzip", compression_opts=7
        )
    with h5py.File(path) as f:
        codecs = filters.pipeline_codecs(f["a"].id.get_create_plist())
    assert codecs[0]["configuration"]["level"] == 7  # not the number's bytes


def test_the_filters_parameters_are_checked():
    assert filters.filter_codecs([filters.Filter(32008, 0, (0, 4, 8, 0, 2))]) == [
        {
            "name": CODECS["bitshuffle"],
            "configuration": {"element_size": 8, "block_size": 1024, "compression": "lz4"},
        }
    ]
    for stage, problem in [
        (filters.Filter(32008, 0, (0, 4, 4, 0, 1)), "unknown parameters"),  # compression 1
        (filters.Filter(32008, 0, (0, 4, 4, 12, 2)), "unknown parameters"),  # not 8 elements
        (filters.Filter(32008, 0, (0, 4, 0)), "unknown parameters"),  # no element size
        (filters.Filter(32008, 0, (0, 4, 4, 0, 3, 3, 9)), "unknown parameters"),
        (filters.Filter(32008, 0, (0, 4, 4, 2**32 - 8)), "block_size must be"),
        (filters.Filter(32004, 0, (0, 1)), "unknown parameters"),
        (filters.Filter(32000, 0, (4, 261, 800, 1)), "unknown parameters"),
        (filters.Filter(32026, 0, ()), "no Zarr codec"),
    ]:
        with pytest.raises(filters.UnmappableFilter, match=problem):
            filters.filter_codecs([stage])


def test_without_imagecodecs_the_dataset_alone_is_refused_naming_the_extra(tmp_path, monkeypatch):
    monkeypatch.setattr(filters, "imagecodecs_available", lambda: False)
    path = tmp_path / "two.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("lzf", data=np.arange(4096.0), chunks=(512,), compression="lzf")
        f.create_dataset("zlib", data=np.arange(4096.0), chunks=(512,), compression="gzip")
    with pytest.warns(
        UserWarning, match=r"'lzf'.*lzf.*pip install 'zarr-manifest-store\[formats\]'"
    ):
        kept = zms.scan(path, on_unsupported="skip", max_inline_bytes=0)
    assert list(kept.arrays) == ["zlib"]
    with pytest.raises(zms.UnsupportedDatasetError, match=r"'lzf'.*needs imagecodecs"):
        zms.scan(path, max_inline_bytes=0)


def chunk_of(tmp_path, options, dtype="<f4"):
    """A one-chunk dataset of 1000 ``dtype`` values: its array, and its stored chunk's bytes."""
    path = tmp_path / "one.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("a", data=np.arange(1000, dtype=dtype) % 37, chunks=(1000,), **options)
        stored = f["a"].id.read_direct_chunk((0,))[1]
    return zms.scan(path)["a"], bytes(stored)


def read_instead(array: zms.ManifestArray, chunk: bytes, tmp_path) -> np.ndarray:
    """``array`` read with ``chunk`` (written to a file of its own) as its one chunk."""
    bad = tmp_path / "bad.bin"
    bad.write_bytes(chunk)
    manifest = zms.ChunkManifest.from_arrays(
        paths=np.array([str(bad)]), offsets=np.array([0]), lengths=np.array([len(chunk)])
    )
    group = zms.ManifestGroup(
        arrays={"a": zms.ManifestArray(metadata=array.metadata, manifest=manifest)}
    )
    return zarr.open_group(zms.ManifestStore(group), mode="r")["a"][...]


def with_bytes(chunk: bytes, at: int, new: bytes) -> bytes:
    return chunk[:at] + new + chunk[at + len(new) :]


CORRUPTIONS = {
    "lzf: cut short": ("lzf", lambda c: c[:-9], "LZF"),
    "lzf: garbage": ("lzf", lambda c: b"\xff" * len(c), "LZF"),
    "lz4: a larger decoded size": (
        "lz4",
        lambda c: with_bytes(c, 0, (4001).to_bytes(8, "big")),
        "declares 4001 bytes",
    ),
    "lz4: blocks of 0 bytes": ("lz4", lambda c: with_bytes(c, 8, bytes(4)), "blocks of 0"),
    "lz4: cut short": ("lz4", lambda c: c[:-9], "LZ4 data does not decode"),
    "bitshuffle: cut short": ("bitshuffle", lambda c: c[:-4], "3996 bytes"),
    "bitshuffle+lz4: a smaller decoded size": (
        "bitshuffle+lz4",
        lambda c: with_bytes(c, 0, (3968).to_bytes(8, "big")),
        "declares 3968 bytes",
    ),
    "bitshuffle+lz4: a block size of 12 bytes": (
        "bitshuffle+lz4",
        lambda c: with_bytes(c, 8, (12).to_bytes(4, "big")),
        "blocks of 12 bytes",
    ),
    "bitshuffle+lz4: a block running past the chunk": (
        "bitshuffle+lz4",
        lambda c: with_bytes(c, 12, (1 << 30).to_bytes(4, "big")),
        "runs past the chunk",
    ),
    "bitshuffle+lz4: cut short": ("bitshuffle+lz4", lambda c: c[:-30], "lz4 block|runs past"),
    "bitshuffle+lz4: bytes after the blocks": ("bitshuffle+lz4", lambda c: c + b"x", "end 1 bytes"),
    "bitshuffle+zstd: cut short": ("bitshuffle+zstd", lambda c: c[:-5], "zstd block|runs past"),
}


@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
def test_a_corrupt_chunk_is_refused_naming_the_array_and_chunk(corruption, tmp_path):
    name, corrupt, reason = CORRUPTIONS[corruption]
    array, chunk = chunk_of(tmp_path, FILTERS[name])
    np.testing.assert_array_equal(read_instead(array, chunk, tmp_path), np.arange(1000) % 37)
    with pytest.raises(zms.ManifestError, match=rf"array 'a', chunk 'c/0'.*({reason})"):
        read_instead(array, corrupt(chunk), tmp_path)


def test_kerchunk_references_name_imagecodecs_numcodecs_codecs(tmp_path, monkeypatch):
    import imagecodecs.numcodecs
    import numcodecs.registry

    for codec in (
        imagecodecs.numcodecs.Lzf,
        imagecodecs.numcodecs.Lz4h5,
        imagecodecs.numcodecs.Bitshuffle,
    ):
        monkeypatch.setitem(numcodecs.registry.codec_registry, codec.codec_id, codec)
    path = tmp_path / "three.h5"
    with h5py.File(path, "w") as f:
        for name in ("lzf+shuffle", "lz4 in 64-byte blocks", "bitshuffle of 16-element blocks"):
            values = np.arange(1234, dtype="<i4").reshape(2, 617) // 16
            f.create_dataset(name.split()[0], data=values, chunks=(1, 100), **FILTERS[name])
    refs = zms.to_kerchunk(zms.scan(path))
    assert [
        json.loads(refs["refs"][f"{n}/.zarray"])["compressor"]["id"]
        for n in ("lzf+shuffle", "lz4", "bitshuffle")
    ] == ["imagecodecs_lzf", "imagecodecs_lz4h5", "imagecodecs_bitshuffle"]
    mapper = fsspec.get_mapper("reference://", fo=refs, remote_protocol="file")
    assert same_as_h5py(zarr.open_group(mapper, mode="r", zarr_format=2), path) == []


@pytest.mark.parametrize(
    "name",
    ["lzf+shuffle", "lz4 in 64-byte blocks", "bitshuffle", "bitshuffle of 16-element blocks"],
)
def test_kerchunk_references_of_the_filters_import_as_their_codecs(tmp_path, name):
    """Without imagecodecs' numcodecs codecs registered: the references our export writes
    import as the package's own codecs, and read the same values."""
    path = tmp_path / "one.h5"
    values = np.arange(1234, dtype="<i4").reshape(2, 617) // 16
    with h5py.File(path, "w") as f:
        f.create_dataset("a", data=values, chunks=(1, 100), **FILTERS[name])
    refs = zms.to_kerchunk(zms.scan(path))
    imported = zms.scan_kerchunk(refs)
    codecs = [c.to_dict()["name"] for c in imported.arrays["a"].metadata.codecs]
    assert CODECS[next(k for k in CODECS if k in name)] in codecs
    store = zms.ManifestStore(imported)
    np.testing.assert_array_equal(zarr.open_group(store, mode="r")["a"][...], values)


def test_imported_bitshuffle_of_block_size_0_takes_the_library_default(tmp_path):
    path = tmp_path / "one.h5"
    values = np.arange(5000, dtype="<i2") // 7
    with h5py.File(path, "w") as f:
        f.create_dataset("a", data=values, chunks=(2500,), **FILTERS["bitshuffle"])
    refs = zms.to_kerchunk(zms.scan(path))
    zarray = json.loads(refs["refs"]["a/.zarray"])
    zarray["compressor"]["blocksize"] = 0  # what imagecodecs' codec means by its default
    refs["refs"]["a/.zarray"] = json.dumps(zarray)
    store = zms.ManifestStore(zms.scan_kerchunk(refs))
    np.testing.assert_array_equal(zarr.open_group(store, mode="r")["a"][...], values)


@pytest.mark.parametrize(
    "compressor",
    [
        {"id": "imagecodecs_lzf"},  # with its 4-byte size header: not HDF5's chunks
        {"id": "imagecodecs_bitshuffle", "itemsize": 0},
        {"id": "imagecodecs_bitshuffle", "itemsize": 4, "blocksize": 12},
    ],
)
def test_imagecodecs_settings_that_hdf5_filters_never_write_are_refused_naming_the_array(
    compressor,
):
    zarray = {
        "zarr_format": 2,
        "shape": [4],
        "chunks": [4],
        "dtype": "<f4",
        "fill_value": None,
        "order": "C",
        "filters": None,
        "compressor": compressor,
    }
    refs = {
        "version": 1,
        "refs": {".zgroup": '{"zarr_format": 2}', "a/.zarray": json.dumps(zarray)},
    }
    with pytest.raises(zms.UnsupportedDatasetError, match=rf"'a' the codec '{compressor['id']}'"):
        zms.scan_kerchunk(refs)


def test_the_kerchunk_writer_refuses_bitshuffle_with_lz4_clearly(tmp_path):
    array, _ = chunk_of(tmp_path, FILTERS["bitshuffle+lz4"])
    with pytest.raises(zms.UnsupportedDatasetError, match=r"'a'.*hdf5_bitshuffle"):
        zms.to_kerchunk(zms.ManifestGroup(arrays={"a": array}))


NO_IMAGECODECS = """
import sys
sys.modules["imagecodecs"] = None  # as if the formats extra were not installed
import zarr, zarr_manifest_store as zms
try:
    zarr.open_group(zms.ManifestStore.open({document!r}, allow=[{folder!r}]), mode="r")["a"][...]
except zms.ManifestError as e:
    print(e)
"""


def test_reading_without_imagecodecs_names_the_chunk_and_the_extra(tmp_path):
    array, _ = chunk_of(tmp_path, FILTERS["bitshuffle+lz4"])
    zms.write_manifest(zms.ManifestGroup(arrays={"a": array}), tmp_path / "doc.zarr")
    code = NO_IMAGECODECS.format(document=str(tmp_path / "doc.zarr"), folder=str(tmp_path))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "array 'a', chunk 'c/0'" in done.stdout, done.stdout + done.stderr
    assert "pip install 'zarr-manifest-store[formats]'" in done.stdout
    assert "hostile" not in done.stdout  # the document is not at fault


@pytest.mark.parametrize(
    "name", ["lzf+shuffle", "lz4", "bitshuffle", "bitshuffle+lz4", "bitshuffle+zstd"]
)
def test_ragged_files_concatenate_with_their_edge_chunks_re_encoded(name, tmp_path):
    parts, arrays = [], []
    for i, length in enumerate((1000, 700)):  # 700 is not a multiple of the 256-row chunks
        path = tmp_path / f"part{i}.h5"
        values = (np.arange(length * 3, dtype="<i4") // 16 + i).reshape(length, 3)
        with h5py.File(path, "w") as f:
            f.create_dataset("a", data=values, chunks=(256, 3), **FILTERS[name])
        parts.append(values)
        arrays.append(zms.scan(path)["a"])
    joined = zms.concat(arrays[::-1], edge_chunks="inline")  # the short file's last chunk inside
    assert len(joined.manifest.inline) == 1  # decoded, cropped and encoded again
    got = zarr.open_array(zms.ManifestStore(joined))[...]
    np.testing.assert_array_equal(got, np.concatenate(parts[::-1]))
