"""Scanners: build a ManifestGroup from archival files without copying their data.

:func:`scan` identifies what it is given through the format registry
(:mod:`.registry`) and hands it to the scanner for its format: ``scan_hdf5``
(HDF5 / netCDF4), ``scan_netcdf3`` (classic, 64-bit offset, CDF5), ``scan_grib`` (GRIB2),
``scan_tiff`` (TIFF, BigTIFF, GeoTIFF, COG), ``scan_fits`` (FITS images),
``scan_dmrpp`` (OPeNDAP's DMR++ sidecars of HDF5 / netCDF-4 files),
``scan_kerchunk`` (kerchunk references, JSON or a parquet folder),
``scan_document`` (a chunk-manifest document's stored hierarchy),
``scan_repository`` (an Icechunk repository folder, through ``scan_icechunk``),
``scan_zarr`` (Zarr v2 and v3 stores), or one
that another package adds through the ``zarr_manifest_store.formats`` entry
points (see ``docs/howto/formats.md``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from zarr_manifest_store.group import ManifestGroup
from zarr_manifest_store.io.remote_file import sharing
from zarr_manifest_store.scan import (
    dmrpp,
    document,
    fits,
    grib,
    hdf5,
    icechunk,
    kerchunk,
    netcdf3,
    tiff,
    zarr,
)
from zarr_manifest_store.scan.registry import (
    ENTRY_POINT_GROUP,
    Deferred,
    Folder,
    Format,
    Head,
    Registry,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "REGISTRY",
    "Deferred",
    "Folder",
    "Format",
    "Head",
    "scan",
    "scan_dmrpp",
    "scan_fits",
    "scan_grib",
    "scan_tiff",
    "scan_zarr",
    "sniff",
]

REGISTRY = Registry(
    builtin={
        f.name: f
        for f in (
            hdf5.FORMAT,
            netcdf3.FORMAT,
            kerchunk.FORMAT,
            grib.FORMAT,
            tiff.FORMAT,
            fits.FORMAT,
            dmrpp.FORMAT,
            document.FORMAT,
            icechunk.FORMAT,
            zarr.FORMAT,
        )
    }
)
"""The formats :func:`scan` reads: the built-in ones, then those of entry points."""
_DEFERRED = {
    fmt.scan.__name__: fmt.scan
    for fmt in REGISTRY.builtin.values()
    if isinstance(fmt.scan, Deferred)
}
"""The built-in scanners imported on first use, by name: ``scan_fits``, ``scan_tiff``, ..."""


def __getattr__(name: str) -> Any:
    """``scan_fits``, ``scan_tiff``, ...: a deferred scanner, its module imported now."""
    if name in _DEFERRED:
        return _DEFERRED[name].function
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def scan(url: str | os.PathLike[str] | Mapping[str, Any], **options: Any) -> ManifestGroup:
    """Scan a file of any supported format into a ManifestGroup, identified by its first bytes.

    HDF5 / netCDF4 files go to ``scan_hdf5``, netCDF3 files to
    ``scan_netcdf3``, kerchunk references (a JSON file, a parquet folder or a
    dict) to ``scan_kerchunk``, GRIB2 files to ``scan_grib``, TIFF / BigTIFF / GeoTIFF /
    COG files to ``scan_tiff``, FITS files to ``scan_fits``, DMR++ sidecars to ``scan_dmrpp``, Zarr v2 and v3 stores (folders or prefixes) to ``scan_zarr``, and formats other packages register (entry
    point group ``zarr_manifest_store.formats``) to theirs; ``options``
    (``group``, ``drop_variables``, ``on_unsupported``, ``storage_options``,
    ...) are passed on; ``allow`` (the prefixes a chunk-manifest document's
    sources may lie under, besides its folder) only to formats that reference
    other files. A remote file is identified from its first MiB, which an
    HDF5 scan reads on from (a file of up to a MiB costs one request in all).
    A file of another format raises ``UnsupportedDatasetError`` naming the
    bytes it starts with.

    >>> g = scan("data/era_2026-01-01.nc")
    >>> sorted(g.arrays), g["t2m"].shape
    (['lat', 'lon', 't2m', 'time', 'tp'], (24, 73, 144))
    >>> g = scan("s3://bucket/refs.json", storage_options={"anon": True})  # doctest: +SKIP
    """
    if isinstance(url, Mapping):
        fmt = REGISTRY.identify_mapping(url)
        _check_options(fmt, options)
        return fmt.scan(url, **options)
    with sharing():  # a remote file's first block, read to identify it, is the scan's too
        fmt = REGISTRY.identify(url, options.get("storage_options"))
        if "allow" in options and fmt.options is not None and "allow" not in fmt.options:
            options = {k: v for k, v in options.items() if k != "allow"}  # reads only the file
        _check_options(fmt, options)
        return fmt.scan(url, **options)


def sniff(url: str | os.PathLike[str], *, storage_options: Mapping[str, Any] | None = None) -> str:
    """The name of the format of ``url`` (``"hdf5"``, ``"netcdf3"``, ``"kerchunk"``, ...).

    >>> sniff("data/era_2026-01-01.nc"), sniff("stations.nc"), sniff("refs.json")
    ('hdf5', 'netcdf3', 'kerchunk')
    """
    return REGISTRY.identify(url, storage_options).name


def _check_options(fmt: Format, options: Mapping[str, Any]) -> None:
    """A TypeError naming the scanner and what it takes, for an option it does not take."""
    accepted = fmt.options
    if accepted is None:
        return
    if unknown := sorted(set(options) - accepted):
        raise TypeError(
            f"{fmt.scan.__name__}() (the {fmt.name} scanner) takes no option "
            f"{', '.join(map(repr, unknown))}; it takes {', '.join(sorted(accepted))}"
        )
