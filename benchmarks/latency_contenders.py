"""The contenders of ``remote_latency.py``: how zarr-manifest-store, VirtualiZarr (obstore)
and kerchunk (fsspec) open the same chunks for reading, and scan the same files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from remote_read import BUCKET, storage_options


def open_store(contender: str, job: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """(store, keyword arguments for xr.open_zarr) of a contender."""
    s3 = job["backend"] == "s3"
    if contender == "zms":
        import zarr_manifest_store as zms

        options = storage_options(job["endpoint"]) if s3 else None
        store = zms.ManifestStore.open(
            job["document"], allow=[job["prefix"]], storage_options=options
        )
        return store, {}
    refs = json.loads(Path(job["refs"]).read_text())
    if contender == "virtualizarr":
        return virtualizarr_store(job, refs), {"consolidated": False}
    if contender == "kerchunk":
        return kerchunk_store(job, refs), {"consolidated": False}
    raise ValueError(contender)


def zarr_v3_metadata(refs: dict[str, Any]) -> dict[str, Any]:
    return {
        "zarr_format": 3,
        "node_type": "array",
        "shape": refs["shape"],
        "data_type": "float32",
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": refs["chunks"]}},
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
        "fill_value": 0.0,
        "codecs": [
            {"name": "bytes", "configuration": {"endian": "little"}},
            {"name": "numcodecs.shuffle", "configuration": {"elementsize": 4}},
            {"name": "numcodecs.zlib", "configuration": {"level": 1}},
        ],
        "dimension_names": ["time", "lat", "lon"],
        "attributes": {},
    }


def s3_store(job: dict[str, Any]) -> Any:
    """An obstore store of the benchmark's bucket on the moto server behind the link."""
    from obstore.store import S3Store

    return S3Store(
        BUCKET,
        endpoint=job["endpoint"],
        access_key_id="testing",
        secret_access_key="testing",
        region="us-east-1",
        virtual_hosted_style_request=False,
        client_options={"allow_http": True},
    )


def obstore_registry(job: dict[str, Any]) -> Any:
    from obspec_utils.registry import ObjectStoreRegistry
    from obstore.store import HTTPStore

    if job["backend"] == "s3":
        return ObjectStoreRegistry({f"s3://{BUCKET}": s3_store(job)})
    store = HTTPStore.from_url(job["endpoint"], client_options={"allow_http": True})
    return ObjectStoreRegistry({job["endpoint"]: store})


def virtualizarr_store(job: dict[str, Any], refs: dict[str, Any]) -> Any:
    from virtualizarr.manifests import ChunkManifest, ManifestArray, ManifestGroup, ManifestStore
    from zarr.core.metadata.v3 import ArrayV3Metadata

    grid = [refs["shape"][i] // refs["chunks"][i] for i in range(3)]
    paths = np.array(refs["paths"], dtype=np.dtypes.StringDType()).reshape(grid)
    manifest = ChunkManifest.from_arrays(
        paths=paths,
        offsets=np.array(refs["offsets"], dtype="uint64").reshape(grid),
        lengths=np.array(refs["lengths"], dtype="uint64").reshape(grid),
    )
    array = ManifestArray(
        metadata=ArrayV3Metadata.from_dict(zarr_v3_metadata(refs)), chunkmanifest=manifest
    )
    return ManifestStore(ManifestGroup(arrays={"t2m": array}), registry=obstore_registry(job))


def kerchunk_store(job: dict[str, Any], refs: dict[str, Any]) -> Any:
    import fsspec
    from zarr.storage import FsspecStore

    zarray = {
        "shape": refs["shape"],
        "chunks": refs["chunks"],
        "dtype": "<f4",
        "compressor": {"id": "zlib", "level": 1},
        "filters": [{"id": "shuffle", "elementsize": 4}],
        "fill_value": None,
        "order": "C",
        "zarr_format": 2,
    }
    spec: dict[str, Any] = {
        ".zgroup": json.dumps({"zarr_format": 2}),
        "t2m/.zarray": json.dumps(zarray),
        "t2m/.zattrs": json.dumps({"_ARRAY_DIMENSIONS": ["time", "lat", "lon"]}),
    }
    for i, (path, offset, length) in enumerate(
        zip(refs["paths"], refs["offsets"], refs["lengths"], strict=True)
    ):
        spec[f"t2m/{i}.0.0"] = [path, offset, length]
    remote, options = remote_of(job)
    fs = fsspec.filesystem(
        "reference",
        fo={"version": 1, "refs": spec},
        remote_protocol=remote,
        remote_options=options,
        asynchronous=True,
    )
    return FsspecStore(fs, read_only=True)


def remote_of(job: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    if job["backend"] == "s3":
        return "s3", {**storage_options(job["endpoint"]), "asynchronous": True}
    return "http", {"asynchronous": True}


def scan_zms(job: dict[str, Any], urls: list[str]) -> tuple[int, ...]:
    import zarr_manifest_store as zms

    options = storage_options(job["endpoint"]) if job["backend"] == "s3" else None
    ds = zms.open_virtual_mfdataset(
        urls, combine="nested", concat_dim="time", storage_options=options
    )
    return ds["t2m"].shape


def scan_virtualizarr(job: dict[str, Any], urls: list[str]) -> tuple[int, ...]:
    from virtualizarr import open_virtual_mfdataset
    from virtualizarr.parsers import HDFParser

    ds = open_virtual_mfdataset(
        urls,
        registry=obstore_registry(job),
        parser=HDFParser(),
        combine="nested",
        concat_dim="time",
    )
    return ds["t2m"].shape


def scan_kerchunk(job: dict[str, Any], urls: list[str]) -> tuple[int, ...]:
    from kerchunk.combine import MultiZarrToZarr
    from kerchunk.hdf import SingleHdf5ToZarr

    remote, options = remote_of(job)
    options = {k: v for k, v in options.items() if k != "asynchronous"}
    singles = [SingleHdf5ToZarr(url, storage_options=options).translate() for url in urls]
    combined = MultiZarrToZarr(
        singles, concat_dims=["time"], remote_protocol=remote, remote_options=options
    ).translate()
    return tuple(json.loads(combined["refs"]["t2m/.zarray"])["shape"])


SCANS = {"zms": scan_zms, "virtualizarr": scan_virtualizarr, "kerchunk": scan_kerchunk}
"""Scan + combine of the files at some URLs, each contender's way: the combined shape."""
