"""Arrays of many small uncompressed row chunks (netCDF-3 records) are served in chunks of many
rows: few zarr reads and dask tasks, values equal to scipy's, every odd row exact or refused."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import zarr
from helpers import GZIP_SHUFFLE_CODECS, array_metadata
from scipy.io import netcdf_file

import zarr_manifest_store as zms
from zarr_manifest_store import served_rows
from zarr_manifest_store.io.sources import Sources
from zarr_manifest_store.served_rows import MIN_ROW_CHUNKS

RECORDS, GATES = 300, 50


def _records_file(path: Path) -> None:
    with netcdf_file(path, "w", version=2) as f:
        f.createDimension("time", None)
        f.createDimension("range", GATES)
        t = f.createVariable("time", "f8", ("time",))
        t[:RECORDS] = np.arange(RECORDS, dtype="f8")
        for i, name in enumerate(("reflectivity", "velocity")):
            v = f.createVariable(name, "f4", ("time", "range"))
            v[:RECORDS] = np.arange(RECORDS * GATES, dtype="f4").reshape(RECORDS, GATES) + i
            v._FillValue = np.float32(-9999.0)


def test_record_variables_are_served_in_chunks_of_many_records(tmp_path, monkeypatch):
    path = tmp_path / "records.nc"
    _records_file(path)
    group = zms.scan(str(path))
    assert group["reflectivity"].manifest.shape == (
        RECORDS,
        1,
    )  # the document keeps one chunk a record
    monkeypatch.setattr(served_rows, "ROW_SPAN_BYTES", 16 << 10)
    store = zms.ManifestStore(group)
    served = zarr.open_group(store, mode="r")["reflectivity"]
    stride = 8 + 2 * GATES * 4  # a record: the time, then both variables' rows
    chunks = -(-RECORDS // ((16 << 10) // stride))  # as many records as 16 KiB of the file holds
    rows = -(-RECORDS // chunks)  # shared evenly
    assert served.chunks == (rows, GATES)
    assert zarr.open_group(store, mode="r")["time"].chunks == (rows,)  # aligned on records

    reads = []
    original = Sources.read_sync
    monkeypatch.setattr(
        Sources, "read_sync", lambda self, *a: reads.append(a) or original(self, *a)
    )
    expected = xr.open_dataset(path, engine="scipy").load()
    for chunks in ({}, None):
        actual = xr.open_zarr(store, chunks=chunks).load()
        xr.testing.assert_identical(actual, expected)
    dask = xr.open_zarr(store)
    assert dask.reflectivity.data.numblocks == (-(-RECORDS // rows), 1)
    served[:]
    assert len([r for r in reads if r[0] == str(path)]) <= 4 * -(-RECORDS // rows)


def _raw_array(
    tmp_path: Path, order: np.ndarray, stride: int
) -> tuple[zms.ManifestArray, np.ndarray]:
    """A (rows, 4) float32 array stored one uncompressed row per chunk, row ``i`` at
    ``order[i] * stride`` in one file."""
    rows = len(order)
    values = np.arange(rows * 4, dtype="<f4").reshape(rows, 4)
    raw = bytearray(stride * rows)
    for i, slot in enumerate(order):
        raw[slot * stride : slot * stride + 16] = values[i].tobytes()
    path = tmp_path / "raw.bin"
    path.write_bytes(bytes(raw))
    manifest = zms.ChunkManifest.from_arrays(
        paths=np.full((rows, 1), str(path)),
        offsets=(order * stride).reshape(rows, 1),
        lengths=np.full((rows, 1), 16),
    )
    meta = array_metadata((rows, 4), (1, 4), fill_value=-1.0, dimension_names=["y", "x"])
    return zms.ManifestArray(metadata=meta, manifest=manifest), values


@pytest.mark.parametrize("layout", ["interleaved", "reversed", "contiguous"])
def test_rows_are_joined_exactly_whatever_their_layout(tmp_path, layout):
    rows = 2 * MIN_ROW_CHUNKS + 5
    order = np.arange(rows)[::-1].copy() if layout == "reversed" else np.arange(rows)
    array, values = _raw_array(tmp_path, order, 16 if layout == "contiguous" else 40)
    store = zms.ManifestStore(zms.ManifestGroup(arrays={"v": array}))
    arr = zarr.open_group(store, mode="r")["v"]
    assert arr.chunks[0] > 1
    np.testing.assert_array_equal(arr[:], values)
    np.testing.assert_array_equal(arr[7:9], values[7:9])
    np.testing.assert_array_equal(asyncio.run(_async_read(store)), values)


async def _async_read(store: zms.ManifestStore) -> np.ndarray:
    arr = await zarr.api.asynchronous.open_array(store=store, path="v", mode="r")
    return await arr.getitem(slice(None))


def test_missing_and_inline_rows_read_as_stored(tmp_path):
    rows = MIN_ROW_CHUNKS + 3
    array, values = _raw_array(tmp_path, np.arange(rows), 16)
    paths = np.full((rows, 1), array.manifest.paths[0])
    paths[5, 0] = ""  # missing: the fill value
    offsets = (np.arange(rows) * 16).reshape(rows, 1)
    lengths = np.full((rows, 1), 16)
    lengths[5, 0] = 0
    holey = zms.ChunkManifest.from_arrays(paths=paths, offsets=offsets, lengths=lengths)
    inline = np.full(4, 7.5, dtype="<f4")
    holey = holey.with_inline({(9, 0): inline.tobytes()})
    store = zms.ManifestStore(
        zms.ManifestGroup(arrays={"v": zms.ManifestArray(metadata=array.metadata, manifest=holey)})
    )
    expected = values.copy()
    expected[5] = -1.0
    expected[9] = 7.5
    arr = zarr.open_group(store, mode="r")["v"]
    assert arr.chunks[0] > 1
    np.testing.assert_array_equal(arr[:], expected)


def test_a_row_of_the_wrong_length_is_refused_naming_it(tmp_path):
    rows = MIN_ROW_CHUNKS + 3
    array, _ = _raw_array(tmp_path, np.arange(rows), 16)
    lengths = np.full((rows, 1), 16)
    lengths[4, 0] = 12
    bad = array.manifest.replace(lengths=lengths)
    store = zms.ManifestStore(
        zms.ManifestGroup(arrays={"v": zms.ManifestArray(metadata=array.metadata, manifest=bad)})
    )
    with pytest.raises(zms.ManifestError, match=r"array 'v', chunk 4 .* 12 bytes.* 16"):
        zarr.open_group(store, mode="r")["v"][:]


def test_listing_names_the_served_chunks(tmp_path):
    rows = MIN_ROW_CHUNKS * 2
    array, _ = _raw_array(tmp_path, np.arange(rows), 16)
    store = zms.ManifestStore(zms.ManifestGroup(arrays={"v": array}))
    factor = zarr.open_group(store, mode="r")["v"].chunks[0]
    assert factor > 1
    keys = asyncio.run(_keys(store, "v/c/"))
    assert keys == [f"v/c/{i}/0" for i in range(-(-rows // factor))]
    assert asyncio.run(store.getsize("v/c/0/0")) == factor * 16


async def _keys(store: zms.ManifestStore, prefix: str) -> list[str]:
    return [k async for k in store.list_prefix(prefix)]


def test_few_small_interleaved_rows_are_joined_but_others_served_as_stored(tmp_path):
    array, values = _raw_array(tmp_path, np.arange(3), 40)  # records among other bytes
    store = zms.ManifestStore(zms.ManifestGroup(arrays={"v": array}))
    small = zarr.open_group(store, mode="r")["v"]
    assert small.chunks == (3, 4)
    np.testing.assert_array_equal(small[:], values)

    array, _ = _raw_array(tmp_path, np.arange(3), 16)  # side by side: a chunked array's
    store = zms.ManifestStore(zms.ManifestGroup(arrays={"v": array}))
    assert zarr.open_group(store, mode="r")["v"].chunks == (1, 4)

    rows, width = MIN_ROW_CHUNKS - 1, served_rows.SMALL_ROW_BYTES // 4 + 1
    meta = array_metadata((rows, width), (1, width))
    manifest = zms.ChunkManifest.from_arrays(
        paths=np.full((rows, 1), "/nowhere"),
        offsets=(np.arange(rows) * width * 4).reshape(rows, 1),
        lengths=np.full((rows, 1), width * 4),
    )
    store = zms.ManifestStore(
        zms.ManifestGroup(arrays={"w": zms.ManifestArray(metadata=meta, manifest=manifest)})
    )
    assert zarr.open_group(store, mode="r")["w"].chunks == (1, width)


def test_compressed_chunks_are_served_as_stored(tmp_path):
    meta = array_metadata((200, 4), (1, 4), codecs=GZIP_SHUFFLE_CODECS)
    manifest = zms.ChunkManifest.from_arrays(
        paths=np.full((200, 1), "/nowhere"),
        offsets=np.zeros((200, 1), int),
        lengths=np.ones((200, 1), int),
    )
    store = zms.ManifestStore(
        zms.ManifestGroup(arrays={"z": zms.ManifestArray(metadata=meta, manifest=manifest)})
    )
    assert zarr.open_group(store, mode="r")["z"].chunks == (1, 4)
