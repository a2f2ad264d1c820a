"""Scanners: build a ManifestGroup from archival files without copying their data.

:func:`scan` identifies a file by its first bytes and hands it to the scanner
for its format: ``scan_hdf5`` (HDF5 / netCDF4), ``scan_netcdf3`` (classic,
64-bit offset, CDF5) or ``scan_kerchunk`` (kerchunk references, JSON or a
parquet folder).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any, Literal

import fsspec

from zarr_manifest_store.errors import UnsupportedDatasetError
from zarr_manifest_store.group import ManifestGroup
from zarr_manifest_store.io.paths import is_local, local_path

__all__ = ["scan", "sniff"]

type Format = Literal["hdf5", "netcdf3", "kerchunk"]

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
NETCDF3_SIGNATURES = (b"CDF\x01", b"CDF\x02", b"CDF\x05")
_HEAD = 4096
_USERBLOCK_LIMIT = 2**20
"""HDF5 files may start with a user block of 512 bytes or a larger power of two; probed up to this."""


def scan(url: str | os.PathLike[str] | Mapping[str, Any], **options: Any) -> ManifestGroup:
    """Scan a file of any supported format into a ManifestGroup, identified by its first bytes.

    HDF5 / netCDF4 files go to ``scan_hdf5``, netCDF3 files to
    ``scan_netcdf3``, kerchunk references (a JSON file, a parquet folder or a
    dict) to ``scan_kerchunk``; ``options`` (``group``, ``drop_variables``,
    ``on_unsupported``, ``storage_options``, ...) are passed on. Remote URLs
    cost a few small reads to identify. A file of another format raises
    ``UnsupportedDatasetError`` naming the bytes it starts with.

    >>> g = scan("data/era_2026-01-01.nc")
    >>> sorted(g.arrays), g["t2m"].shape
    (['lat', 'lon', 't2m', 'time', 'tp'], (24, 73, 144))
    >>> g = scan("s3://bucket/refs.json", storage_options={"anon": True})  # doctest: +SKIP
    """
    if isinstance(url, Mapping):
        return _scanner("kerchunk")(url, **options)
    fmt = sniff(url, storage_options=options.get("storage_options"))
    return _scanner(fmt)(url, **options)


def sniff(
    url: str | os.PathLike[str], *, storage_options: Mapping[str, Any] | None = None
) -> Format:
    """The format of ``url``: ``"hdf5"``, ``"netcdf3"`` or ``"kerchunk"``, from its first bytes.

    >>> sniff("data/era_2026-01-01.nc"), sniff("stations.nc"), sniff("refs.json")
    ('hdf5', 'netcdf3', 'kerchunk')
    """
    path = os.fspath(url)
    if is_local(path) and not os.path.isdir(local_path(path)):
        # Read directly: going through fsspec costs several times more than the reading.
        with open(local_path(path), "rb") as f:
            size = os.fstat(f.fileno()).st_size
            head = f.read(_HEAD)
            return _identify(
                path, size, head, lambda start, end: os.pread(f.fileno(), end - start, start)
            )
    fs, fs_path = fsspec.core.url_to_fs(path, **dict(storage_options or {}))
    info = fs.info(fs_path)
    if info.get("type") == "directory":
        return _sniff_folder(path, fs, fs_path.rstrip("/"))
    size = int(info.get("size") or 0)
    head = fs.cat_file(fs_path, start=0, end=min(size, _HEAD)) if size else b""
    return _identify(
        path, size, head, lambda start, end: fs.cat_file(fs_path, start=start, end=end)
    )


def _identify(path: str, size: int, head: bytes, read: Callable[[int, int], bytes]) -> Format:
    """The format of a file of ``size`` bytes that starts with ``head``; ``read(start, end)`` reads more."""
    if head.startswith(HDF5_SIGNATURE):
        return "hdf5"
    if head[:4] in NETCDF3_SIGNATURES:
        return "netcdf3"
    if head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{"):
        return "kerchunk"
    offset = 512
    while offset + len(HDF5_SIGNATURE) <= min(size, _USERBLOCK_LIMIT):
        probe = head[offset : offset + 8] if offset + 8 <= len(head) else None
        if probe is None:
            probe = read(offset, offset + len(HDF5_SIGNATURE))
        if probe == HDF5_SIGNATURE:
            return "hdf5"
        offset *= 2
    raise UnsupportedDatasetError(
        f"cannot identify the format of {path!r}: it starts with {head[:16]!r}"
        f"{' (an empty file)' if not size else ''}. zms.scan reads HDF5 / netCDF4 "
        f"(signature {HDF5_SIGNATURE!r}), netCDF3 ({', '.join(map(repr, NETCDF3_SIGNATURES))}) "
        f"and kerchunk references (a JSON object, or a parquet folder)"
    )


def _sniff_folder(path: str, fs: fsspec.AbstractFileSystem, root: str) -> Format:
    """A folder is parquet references if its ``.zmetadata`` holds a ``record_size``."""
    import json

    try:
        index = json.loads(fs.cat_file(f"{root}/.zmetadata"))
    except (FileNotFoundError, ValueError):
        index = None
    if isinstance(index, dict) and "record_size" in index:
        return "kerchunk"
    hint = (
        "; it looks like a Zarr store: open chunk-manifest documents with ManifestStore.open"
        if fs.exists(f"{root}/zarr.json") or fs.exists(f"{root}/.zgroup")
        else ""
    )
    raise UnsupportedDatasetError(
        f"cannot identify the format of folder {path!r}: it is not kerchunk parquet references "
        f"(a .zmetadata file with a record_size){hint}"
    )


def _scanner(fmt: Format) -> Callable[..., ManifestGroup]:
    """The scanner for a format, imported when first needed."""
    if fmt == "hdf5":
        from zarr_manifest_store.scan.hdf5 import scan_hdf5

        return scan_hdf5
    if fmt == "netcdf3":
        from zarr_manifest_store.scan.netcdf3 import scan_netcdf3

        return scan_netcdf3
    from zarr_manifest_store.scan.kerchunk import scan_kerchunk

    return scan_kerchunk
