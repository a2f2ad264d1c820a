"""scan_zarr: Zarr v2 and v3 stores written by zarr itself, read back through ManifestStore and
compared with zarr / xarray reading the original store."""

from __future__ import annotations

import contextlib
import json
import shutil
import warnings
from pathlib import Path

import numcodecs
import numpy as np
import pytest
import xarray as xr
import zarr
from test_docs import Page

import zarr_manifest_store as zms
from zarr_manifest_store.scan import REGISTRY
from zarr_manifest_store.scan.registry import Registry
from zarr_manifest_store.scan.zarr import FORMAT
from zarr_manifest_store.scan.zarr.listing import Listing

pytestmark = pytest.mark.filterwarnings(
    "ignore::zarr.errors.ZarrUserWarning", "ignore::zarr.errors.UnstableSpecificationWarning"
)


def served(group: zms.ManifestGroup) -> zarr.Group:
    return zarr.open_group(zms.ManifestStore(group), mode="r")


def dataset(path: Path, zarr_format: int, **to_zarr: object) -> xr.Dataset:
    """A small CF dataset written by xarray, with a nested group."""
    ds = xr.Dataset(
        {
            "t2m": (("time", "lat"), np.arange(60.0).reshape(6, 10), {"units": "K"}),
            "count": ("lat", np.arange(10, dtype="i2")),
        },
        coords={"time": np.arange(6), "lat": np.linspace(-45, 45, 10)},
        attrs={"title": "test"},
    )
    ds["t2m"].encoding = {"chunks": (4, 4), "_FillValue": -9999.0}
    ds.to_zarr(path, zarr_format=zarr_format, mode="w", **to_zarr)
    return ds


@pytest.mark.parametrize("zarr_format", [2, 3])
@pytest.mark.parametrize("consolidated", [True, False])
def test_xarray_reads_the_scan_as_it_reads_the_store(tmp_path, zarr_format, consolidated):
    path = tmp_path / "s.zarr"
    dataset(path, zarr_format, consolidated=consolidated)
    group = zms.scan_zarr(path)
    assert group["t2m"].dimension_names == ("time", "lat")
    expected = xr.open_zarr(path, consolidated=consolidated).load()
    xr.testing.assert_identical(xr.open_zarr(zms.ManifestStore(group)).load(), expected)
    assert group["t2m"].manifest.get((0, 0)).path == str(
        path / ("t2m/0.0" if zarr_format == 2 else "t2m/c/0/0")
    )


@pytest.mark.parametrize(
    ("zarr_format", "chunk_key_encoding", "example"),
    [
        (2, {"name": "v2", "separator": "."}, "a/1.0"),
        (2, {"name": "v2", "separator": "/"}, "a/1/0"),
        (3, {"name": "default", "separator": "/"}, "a/c/1/0"),
        (3, {"name": "default", "separator": "."}, "a/c.1.0"),
        (3, {"name": "v2", "separator": "."}, "a/1.0"),
        (3, {"name": "v2", "separator": "/"}, "a/1/0"),
    ],
)
def test_every_chunk_key_form_and_missing_chunks(
    tmp_path, zarr_format, chunk_key_encoding, example
):
    root = zarr.open_group(tmp_path / "s.zarr", mode="w", zarr_format=zarr_format)
    a = root.create_array(
        "a",
        shape=(7, 5),
        chunks=(2, 3),
        dtype="i4",
        fill_value=-1,
        chunk_key_encoding=chunk_key_encoding,
    )
    a[2:5, :] = np.arange(15).reshape(3, 5)  # chunk rows 0 and 3 stay missing
    s = root.create_array("s", shape=(), dtype="f8", chunk_key_encoding=chunk_key_encoding)
    s[()] = 2.5
    (tmp_path / "s.zarr" / "a" / "stray").write_bytes(b"not a chunk")
    group = zms.scan_zarr(tmp_path / "s.zarr")
    assert (tmp_path / "s.zarr" / example).exists()
    assert group["a"].manifest.nchunks == 4
    np.testing.assert_array_equal(served(group)["a"][:], root["a"][:])
    assert served(group)["s"][()] == 2.5


V2_CODECS = {
    "blosc": {"compressor": numcodecs.Blosc("lz4", 5, shuffle=numcodecs.Blosc.BITSHUFFLE)},
    "zlib": {"compressor": numcodecs.Zlib(3)},
    "gzip": {"compressor": numcodecs.GZip(5)},
    "zstd": {"compressor": numcodecs.Zstd(3)},
    "lz4": {"compressor": numcodecs.LZ4()},
    "bz2": {"compressor": numcodecs.BZ2()},
    "lzma": {"compressor": numcodecs.LZMA()},
    "shuffle": {"filters": [numcodecs.Shuffle(elementsize=8)], "compressor": numcodecs.Zlib()},
    "delta": {"filters": [numcodecs.Delta(dtype="<f8")], "compressor": None},
    "fixedscaleoffset": {
        "filters": [numcodecs.FixedScaleOffset(offset=10, scale=100, dtype="<f8", astype="<i4")],
        "compressor": numcodecs.Zstd(),
    },
    "quantize": {"filters": [numcodecs.Quantize(digits=3, dtype="<f8")]},
    "bitround": {"filters": [numcodecs.BitRound(keepbits=10)]},
    "astype": {"filters": [numcodecs.AsType(encode_dtype="<f4", decode_dtype="<f8")]},
}


def v2_array(path: Path, data: np.ndarray, **options: object) -> zarr.Array:
    """A Zarr v2 array written by zarr with numcodecs ``filters`` / ``compressor``."""
    root = zarr.open_group(path, mode="w", zarr_format=2)
    options = {"compressor": None, **options}
    compressor = options.pop("compressor")
    a = root.create_array(
        "v",
        shape=data.shape,
        chunks=options.pop("chunks", (3,) * data.ndim),
        dtype=options.pop("dtype", data.dtype),
        compressors=compressor,
        **options,
    )
    a[...] = data
    return a


@pytest.mark.parametrize("codec", sorted(V2_CODECS))
def test_v2_compressors_and_filters_read_exactly(tmp_path, codec):
    data = np.linspace(-3, 7, 40).reshape(5, 8)
    original = v2_array(tmp_path / "s.zarr", data, **V2_CODECS[codec])
    np.testing.assert_array_equal(served(zms.scan_zarr(tmp_path / "s.zarr"))["v"][:], original[:])


def hand_written_v2(path: Path, data: np.ndarray, filters: list[numcodecs.abc.Codec]) -> None:
    """A Zarr v2 store of one object array ``v`` (chunks of 2), encoded with numcodecs ``filters``."""
    (path / "v").mkdir(parents=True)
    (path / ".zgroup").write_text(json.dumps({"zarr_format": 2}))
    zarray = {
        "zarr_format": 2,
        "shape": list(data.shape),
        "chunks": [2],
        "dtype": "|O",
        "compressor": None,
        "fill_value": None,
        "order": "C",
        "filters": [f.get_config() for f in filters],
    }
    (path / "v" / ".zarray").write_text(json.dumps(zarray))
    for i in range(0, len(data), 2):
        chunk = data[i : i + 2]
        for f in filters:
            chunk = f.encode(chunk)
        (path / "v" / str(i // 2)).write_bytes(bytes(chunk))


@pytest.mark.parametrize(
    ("filters", "reason"),
    [
        ([numcodecs.Categorize(["a", "b"], dtype=object)], "categorize"),
        ([numcodecs.JSON()], "json"),
        ([numcodecs.Pickle()], "pickle"),
    ],
)
def test_v2_codecs_without_a_v3_codec_are_refused_by_name(tmp_path, filters, reason):
    hand_written_v2(tmp_path / "s.zarr", np.array(["a", "b", "a"], dtype=object), filters)
    with pytest.raises(zms.UnsupportedDatasetError, match=rf"'v'.*{reason}"):
        zms.scan_zarr(tmp_path / "s.zarr")
    with pytest.warns(UserWarning, match=rf"left out dataset 'v'.*{reason}"):
        assert "v" not in zms.scan_zarr(tmp_path / "s.zarr", on_unsupported="skip").arrays


@pytest.mark.parametrize(
    "data",
    [
        np.array(["a", "bcd", "", "é"], dtype=object),
        np.array([b"a", b"bcd", b"", b"\x00\xff"], dtype=object),
    ],
    ids=["vlen-utf8", "vlen-bytes"],
)
def test_v2_object_strings(tmp_path, data):
    root = zarr.open_group(tmp_path / "s.zarr", mode="w", zarr_format=2)
    dtype = str if isinstance(data[0], str) else zarr.dtype.VariableLengthBytes()
    a = root.create_array("v", shape=data.shape, chunks=(3,), dtype=dtype)
    a[:] = data
    np.testing.assert_array_equal(served(zms.scan_zarr(tmp_path / "s.zarr"))["v"][:], a[:])


@pytest.mark.parametrize(
    ("dtype", "fill_value"),
    [
        (">f8", float("nan")),
        ("<f4", float("inf")),
        (">i4", 7),
        ("<M8[ns]", None),
        ("<m8[s]", None),
        ("|S5", b"xy"),
        ("<U4", "z"),
        ("|b1", True),
        ("<c16", None),
        ("<f8", float("-inf")),
        ("<u2", None),
    ],
)
def test_v2_dtypes_and_fill_values(tmp_path, dtype, fill_value):
    n = 10
    values = (
        np.arange(n).astype(dtype)
        if np.dtype(dtype).kind not in "SU"
        else np.array([f"v{i}" for i in range(n)], dtype=dtype)
    )
    root = zarr.open_group(tmp_path / "s.zarr", mode="w", zarr_format=2)
    a = root.create_array("v", shape=(n,), chunks=(4,), dtype=dtype, fill_value=fill_value)
    a[:4] = values[:4]  # the rest stays missing: the fill value
    a.attrs["_ARRAY_DIMENSIONS"] = ["x"]
    g = zms.scan_zarr(tmp_path / "s.zarr")
    np.testing.assert_array_equal(served(g)["v"][:], a[:])
    assert served(g)["v"].dtype == a.dtype.newbyteorder("=")  # Zarr v3 arrays are native-endian
    if np.dtype(dtype).kind not in "SU":  # xarray's Zarr v3 backend cannot decode their _FillValue
        expected = xr.open_zarr(tmp_path / "s.zarr").load()
        xr.testing.assert_identical(xr.open_zarr(zms.ManifestStore(g)).load(), expected)


@pytest.mark.parametrize("shape", [(5, 7), (4, 3, 5)])
def test_v2_order_f_is_a_transpose(tmp_path, shape):
    data = np.arange(np.prod(shape), dtype="<i8").reshape(shape)
    original = v2_array(tmp_path / "s.zarr", data, order="F", compressor=numcodecs.Zlib())
    assert original.metadata.order == "F"
    np.testing.assert_array_equal(served(zms.scan_zarr(tmp_path / "s.zarr"))["v"][:], data)


def test_v2_structured_dtype_is_exact(tmp_path):
    """Zarr v2 writes structured types packed (fields without padding), as Zarr v3's are."""
    data = np.array([(1, 2.5), (3, 4.5), (5, 6.5)], dtype=[("a", "<i2"), ("b", "<f8")])
    root = zarr.open_group(tmp_path / "s.zarr", mode="w", zarr_format=2)
    a = root.create_array("v", shape=(3,), chunks=(2,), dtype=data.dtype)
    a[:] = data
    np.testing.assert_array_equal(served(zms.scan_zarr(tmp_path / "s.zarr"))["v"][:], data)


@pytest.mark.parametrize("missing", [False, True])
def test_v3_sharded_arrays_keep_their_sharding_codec(tmp_path, missing):
    root = zarr.open_group(tmp_path / "s.zarr", mode="w", zarr_format=3)
    a = root.create_array(
        "v",
        shape=(20, 12),
        chunks=(2, 3),
        shards=(10, 6),
        dtype="f4",
        fill_value=np.nan,
        dimension_names=["y", "x"],
    )
    data = np.arange(240, dtype="f4").reshape(20, 12)
    if missing:
        a[0:4, 0:3] = data[0:4, 0:3]  # one shard, partly written; the other three missing
    else:
        a[:] = data
    group = zms.scan_zarr(tmp_path / "s.zarr")
    assert group["v"].manifest.shape == (2, 2)
    assert group["v"].metadata.codecs[0].to_dict()["name"] == "sharding_indexed"
    np.testing.assert_array_equal(served(group)["v"][:], a[:])
    np.testing.assert_array_equal(served(group)["v"][3:7, 2:5], a[3:7, 2:5])


def test_v3_codecs_and_attributes_unchanged(tmp_path):
    root = zarr.open_group(tmp_path / "s.zarr", mode="w", zarr_format=3, attributes={"a": 1})
    sub = root.create_group("deep").create_group("er", attributes={"b": [1, 2]})
    v = sub.create_array(
        "v",
        shape=(9,),
        chunks=(4,),
        dtype=">i8",
        compressors=zarr.codecs.BloscCodec(),
        filters=[zarr.codecs.TransposeCodec(order=(0,))],
        attributes={"units": "m"},
    )
    v[:] = np.arange(9)
    group = zms.scan_zarr(tmp_path / "s.zarr")
    assert group.attributes == {"a": 1}
    assert group["deep/er"].attributes == {"b": [1, 2]}
    scanned = json.loads(json.dumps(group["deep/er/v"].metadata.to_dict()))
    original = json.loads((tmp_path / "s.zarr/deep/er/v/zarr.json").read_text())
    for key in ("codecs", "data_type", "fill_value", "attributes", "chunk_key_encoding"):
        assert scanned[key] == original[key]
    np.testing.assert_array_equal(served(group)["deep/er/v"][:], np.arange(9))


def test_group_and_drop_variables(tmp_path):
    root = zarr.open_group(tmp_path / "s.zarr", mode="w", zarr_format=3)
    sub = root.create_group("sub")
    for name in ("a", "b"):
        sub.create_array(name, shape=(2,), dtype="i1")[:] = [1, 2]
    sub.create_group("inner").create_array("c", shape=(1,), dtype="i1")
    assert sorted(zms.scan_zarr(tmp_path / "s.zarr", group="sub").arrays) == ["a", "b"]
    g = zms.scan_zarr(tmp_path / "s.zarr", group="/sub", drop_variables=["b", "inner"])
    assert sorted(g.arrays) == ["a"]
    assert not g.groups
    with pytest.raises(ValueError, match="no group 'nope'"):
        zms.scan_zarr(tmp_path / "s.zarr", group="nope")


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_consolidated_metadata_saves_reads_but_the_store_decides(
    tmp_path, zarr_format, monkeypatch
):
    path = tmp_path / "s.zarr"
    dataset(path, zarr_format, consolidated=True)
    reads: list[str] = []
    read = Listing.read
    monkeypatch.setattr(
        Listing, "read", lambda self, keys: read(self, reads.extend(asked := list(keys)) or asked)
    )
    zms.scan_zarr(path)
    assert reads == ["zarr.json" if zarr_format == 3 else ".zmetadata"]  # no node's own object
    monkeypatch.undo()

    shutil.rmtree(path / "count")  # still listed by the consolidated metadata
    with pytest.raises(zms.UnsupportedDatasetError, match="'count' is listed by the consolidated"):
        zms.scan_zarr(path)
    with pytest.warns(UserWarning, match="left out dataset 'count'"):
        assert "count" not in zms.scan_zarr(path, on_unsupported="skip").arrays
    assert "count" not in zms.scan_zarr(path, drop_variables="count").arrays


def test_fingerprints_come_from_the_listing_and_catch_a_changed_chunk(tmp_path):
    path = tmp_path / "s.zarr"
    dataset(path, 3)
    group = zms.scan_zarr(path)
    chunk = path / "t2m" / "c" / "0" / "0"
    fp = group["t2m"].manifest.fingerprints[str(chunk)]
    assert (fp.size, fp.mtime_ns) == (chunk.stat().st_size, chunk.stat().st_mtime_ns)
    chunk.write_bytes(chunk.read_bytes() + b"more")
    with pytest.raises(zms.SourceChangedError, match="c/0/0"):
        served(group)["t2m"][:]


def test_chunk_manifest_documents_are_not_zarr_sources(tmp_path):
    path = tmp_path / "s.zarr"
    dataset(path, 3)
    zms.write_manifest(zms.scan_zarr(path), tmp_path / "doc.zarr")
    assert REGISTRY.identify(path).name == "zarr"
    with contextlib.suppress(zms.UnsupportedDatasetError):  # another format's, or none
        assert REGISTRY.identify(tmp_path / "doc.zarr").name != "zarr"
    with pytest.raises(zms.UnsupportedDatasetError, match=r"document.*ManifestStore\.open"):
        Registry(builtin={"zarr": FORMAT}).identify(tmp_path / "doc.zarr")
    with pytest.raises(
        zms.UnsupportedDatasetError, match=r"storage transformer.*ManifestStore\.open"
    ):
        zms.scan_zarr(tmp_path / "doc.zarr")


def test_arrays_zarr_cannot_understand_are_refused(tmp_path):
    root = zarr.open_group(tmp_path / "s.zarr", mode="w", zarr_format=3)
    root.create_array("ok", shape=(2,), dtype="i1")[:] = [1, 2]
    for name, change in {
        "ext": {"my_extension": {"must_understand": True}},
        "codec": {
            "codecs": [
                {"name": "bytes", "configuration": {"endian": "little"}},
                {"name": "no-such-codec"},
            ]
        },
    }.items():
        root.create_array(name, shape=(2,), dtype="i1")
        meta = tmp_path / "s.zarr" / name / "zarr.json"
        meta.write_text(json.dumps({**json.loads(meta.read_text()), **change}))
    with pytest.raises(zms.UnsupportedDatasetError) as caught:
        zms.scan_zarr(tmp_path / "s.zarr")
    assert "'ext'" in str(caught.value)
    assert "my_extension" in str(caught.value)
    assert "'codec'" in str(caught.value)
    assert "no-such-codec" in str(caught.value)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert list(zms.scan_zarr(tmp_path / "s.zarr", on_unsupported="skip").arrays) == ["ok"]


def test_a_store_holding_one_array_is_named_after_its_folder(tmp_path):
    a = zarr.create_array(tmp_path / "temperature.zarr", shape=(4,), chunks=(2,), dtype="f8")
    a[:] = [1, 2, 3, 4]
    g = zms.scan_zarr(tmp_path / "temperature.zarr")
    np.testing.assert_array_equal(served(g)["temperature"][:], [1, 2, 3, 4])


def test_not_a_zarr_store(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(zms.UnsupportedDatasetError, match="not a Zarr store"):
        zms.scan_zarr(tmp_path / "empty")
    with pytest.raises(FileNotFoundError):
        zms.scan_zarr(tmp_path / "nothing")


def test_metadata_objects_over_the_limit_are_refused_unread(tmp_path):
    dataset(tmp_path / "s.zarr", 3, consolidated=True)
    size = (tmp_path / "s.zarr" / "zarr.json").stat().st_size
    with pytest.raises(
        zms.UnsupportedDatasetError, match=r"zarr\.json is .* max_metadata_bytes=100"
    ):
        zms.scan_zarr(tmp_path / "s.zarr", max_metadata_bytes=100)
    assert zms.scan_zarr(tmp_path / "s.zarr", max_metadata_bytes=size)["t2m"].shape == (6, 10)


def test_page_docs_howto_zarr_sources(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert Page("docs/howto/zarr-sources.md").run() >= 4
