"""`make demo`: two netCDF files read as one Zarr dataset, without copying a byte.

Writes two small daily netCDF4 files into a temporary folder, records where
each chunk of their ``t2m`` variable lives, joins both manifests along time,
and opens the result with ``xr.open_zarr`` through a :class:`ManifestStore`.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import h5py
import numpy as np
import xarray as xr

from zarr_manifest_store import ChunkManifest, ManifestArray, ManifestGroup, ManifestStore


def write_sample(folder: Path) -> list[Path]:
    """Two netCDF4 files of hourly 2 m temperature, one day each."""
    paths = []
    rng = np.random.default_rng(42)
    for day in (1, 2):
        ds = xr.Dataset(
            {"t2m": (("time", "lat", "lon"), rng.normal(280, 8, (24, 18, 36)).astype("float32"))},
            attrs={"title": "demo archive"},
        )
        path = folder / f"t2m_2026-01-0{day}.nc"
        encoding = {
            "t2m": {"chunksizes": (6, 18, 36), "zlib": True, "shuffle": True, "complevel": 1}
        }
        ds.to_netcdf(path, engine="h5netcdf", encoding=encoding)
        paths.append(path)
    return paths


def chunk_references(path: Path, name: str) -> dict[str, dict[str, object]]:
    """``{"i.j.k": {"path", "offset", "length"}}`` for every stored chunk of a dataset."""
    refs: dict[str, dict[str, object]] = {}
    with h5py.File(path) as f:
        ds = f[name]

        def record(info: h5py.h5d.StoreInfo) -> None:
            coords = (o // c for o, c in zip(info.chunk_offset, ds.chunks, strict=True))
            refs[".".join(map(str, coords))] = {
                "path": str(path),
                "offset": info.byte_offset,
                "length": info.size,
            }

        ds.id.chunk_iter(record)
    return refs


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_sample(Path(tmp))
        entries: dict[str, dict[str, object]] = {}
        for day, path in enumerate(paths):
            for key, ref in chunk_references(path, "t2m").items():
                t, y, x = map(int, key.split("."))
                entries[f"{t + 4 * day}.{y}.{x}"] = ref  # each day holds 4 time chunks
        metadata = {
            "shape": [48, 18, 36],
            "data_type": "float32",
            "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [6, 18, 36]}},
            "chunk_key_encoding": {"name": "default"},
            "fill_value": "NaN",
            "codecs": [
                {"name": "bytes", "configuration": {"endian": "little"}},
                {"name": "numcodecs.shuffle", "configuration": {"elementsize": 4}},
                {"name": "numcodecs.zlib", "configuration": {"level": 1}},
            ],
            "dimension_names": ["time", "lat", "lon"],
        }
        t2m = ManifestArray(metadata=metadata, manifest=ChunkManifest.from_dict(entries))
        store = ManifestStore(
            ManifestGroup(arrays={"t2m": t2m}, attributes={"title": "demo archive"})
        )
        ds = xr.open_zarr(store)
        print(ds)
        original = xr.concat([xr.open_dataset(p, engine="h5netcdf") for p in paths], dim="time")
        same = bool((ds["t2m"].values == original["t2m"].values).all())
        print(
            f"\n{len(entries)} chunk references over {len(paths)} files; identical to the files: {same}"
        )


if __name__ == "__main__":
    main()
