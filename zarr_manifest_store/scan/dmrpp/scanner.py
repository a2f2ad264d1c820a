"""scan_dmrpp: a DMR++ sidecar read whole, its hrefs resolved, its groups walked (see the package)."""

from __future__ import annotations

import functools
import os
from collections.abc import Collection, Mapping
from typing import Any, Literal
from urllib.parse import urljoin
from xml.etree import ElementTree

import fsspec

from zarr_manifest_store.errors import UnsupportedDatasetError
from zarr_manifest_store.group import ManifestGroup
from zarr_manifest_store.io.paths import is_local, local_path, source_path
from zarr_manifest_store.io.sources import Sources
from zarr_manifest_store.scan.common import (
    CONTIGUOUS_CHUNK_BYTES,
    Refusals,
    check_chunk_bytes,
    dropped_names,
)
from zarr_manifest_store.scan.dmrpp.groups import DAP, Dimensions, Walk
from zarr_manifest_store.scan.dmrpp.storage import DMRPP, Storage
from zarr_manifest_store.scan.registry import HEAD_BYTES

__all__ = ["MAX_DMRPP_BYTES", "PLACEHOLDER", "scan_dmrpp"]

PLACEHOLDER = "OPeNDAP_DMRpp_DATA_ACCESS_URL"
"""The ``dmrpp:href`` that OPeNDAP's tools write when the data file's URL is filled in
where the DMR++ is served: the data file is then the DMR++'s own name without ``.dmrpp``."""
MAX_INLINE_BYTES = 2**20
"""Default limit of the bytes one variable may keep inline (``dmrpp:compact`` values)."""
MAX_DMRPP_BYTES = 2**30
"""Default limit of a DMR++ file's size (``max_dmrpp_bytes``): it is read whole."""


def scan_dmrpp(
    url: str | os.PathLike[str],
    *,
    group: str | None = None,
    drop_variables: Collection[str] | str | None = None,
    on_unsupported: Literal["raise", "skip"] = "raise",
    storage_options: Mapping[str, Any] | None = None,
    data_url: str | os.PathLike[str] | None = None,
    contiguous_chunk_bytes: int | None = CONTIGUOUS_CHUNK_BYTES,
    max_inline_bytes: int = MAX_INLINE_BYTES,
    max_dmrpp_bytes: int = MAX_DMRPP_BYTES,
) -> ManifestGroup:
    """Scan a DMR++ sidecar into the :class:`ManifestGroup` of the file it describes.

    The references point at the data file its ``dmrpp:href`` names (a URL, or
    a path relative to the DMR++'s own location), or at ``data_url`` when
    given; OPeNDAP's placeholder href means the DMR++'s own name without
    ``.dmrpp``. A remote DMR++ may name local files only through hrefs it
    marks ``dmrpp:trust="true"``. The other options are ``scan_hdf5``'s:
    ``group`` scans one group, ``drop_variables`` leaves variables or groups
    out, a variable that cannot be described exactly raises
    :class:`~zarr_manifest_store.UnsupportedDatasetError` (or with
    ``on_unsupported="skip"`` is left out with a warning), uncompressed
    contiguous data is split into chunks of about ``contiguous_chunk_bytes``,
    and up to ``max_inline_bytes`` per variable may be kept inline. A DMR++
    over ``max_dmrpp_bytes`` is refused before it is read.

    >>> g = zms.scan_dmrpp("f1.nc.dmrpp")  # doctest: +SKIP
    >>> g["t2m"].manifest.paths  # doctest: +SKIP
    ('/data/f1.nc',)
    """
    path = source_path(url)
    check_chunk_bytes(contiguous_chunk_bytes)
    refusals = Refusals(path, on_unsupported)
    sources = Sources(storage_options)
    root = _parse(path, storage_options, max_dmrpp_bytes)
    resolve = _Hrefs(path)
    storage = Storage(
        data_path=_data_path(path, root, data_url, resolve),
        resolve=resolve,
        fingerprint=functools.cache(sources.fingerprint),  # each source asked once
        ordered_filters=root.get(f"{DMRPP}version") is not None,
        contiguous_chunk_bytes=contiguous_chunk_bytes,
        max_inline_bytes=max_inline_bytes,
    )
    start, prefix, dims = _start(root, group, path)
    dropped = dropped_names(drop_variables)
    walk = Walk(storage=storage, refusals=refusals, dropped={f"{prefix}{d}" for d in dropped})
    result = walk.group(start, prefix, Dimensions.of(start, dims))
    refusals.finish()
    return result


def _data_path(
    path: str,
    root: ElementTree.Element,
    data_url: str | os.PathLike[str] | None,
    resolve: _Hrefs,
) -> str:
    """The data file the DMR++ at ``path`` describes: ``data_url`` if given, else its
    ``dmrpp:href`` resolved, else (OPeNDAP's placeholder) its own name without ``.dmrpp``."""
    href = root.get(f"{DMRPP}href")
    if data_url is not None:
        return source_path(data_url)
    if href not in (None, "", PLACEHOLDER):
        return resolve(href, root.get(f"{DMRPP}trust") == "true")
    if not path.endswith(".dmrpp"):
        raise UnsupportedDatasetError(
            f"{path}: its dmrpp:href does not name the data file and its name does not end "
            "with '.dmrpp'; pass data_url= to name the data file"
        )
    return path.removesuffix(".dmrpp")


class _Hrefs:
    """Resolves the hrefs of a DMR++ at ``base``: relative ones against its own location.

    A remote DMR++ names a local file only through a trusted href: otherwise
    a document fetched from a server could make the scan reference (and a
    later read open) any file of the reader's machine.
    """

    def __init__(self, base: str) -> None:
        self.base = base

    def __call__(self, href: str, trusted: bool) -> str:
        href = href.strip()
        if "://" in href:
            target = href
        elif is_local(self.base):
            folder = os.path.dirname(local_path(self.base))
            target = os.path.join(folder, href)  # an absolute href stays itself
        elif href.startswith("/"):
            target = f"file://{href}"
        else:
            target = urljoin(self.base, href)
        if is_local(target) and not is_local(self.base) and not trusted:
            raise UnsupportedDatasetError(
                f"{self.base}: names the local file {href!r}, which a remote DMR++ may name only "
                'with dmrpp:trust="true"; pass data_url= to name the data file yourself'
            )
        return source_path(local_path(target)) if is_local(target) else target


def _parse(path: str, storage_options: Mapping[str, Any] | None, limit: int) -> ElementTree.Element:
    """The DMR++'s root element (a DAP4 ``Dataset``), its file read whole within ``limit``."""
    if is_local(path):
        with open(local_path(path), "rb") as f:
            size = os.fstat(f.fileno()).st_size
            _check_size(path, size, limit)
            data = f.read(limit + 1)
    else:
        fs, fs_path = fsspec.core.url_to_fs(path, **dict(storage_options or {}))
        _check_size(path, int(fs.info(fs_path).get("size") or 0), limit)
        data = fs.cat_file(fs_path, start=0, end=limit + 1)
    _check_size(path, len(data), limit)
    if b"https://xml.opendap.org/" in data[:HEAD_BYTES]:  # the namespaces, written with https
        for namespace in (b"ns/DAP/4.0#", b"dap/dmrpp/1.0.0#"):
            data = data.replace(
                b"https://xml.opendap.org/" + namespace, b"http://xml.opendap.org/" + namespace
            )
    try:
        root = ElementTree.fromstring(data)
    except ElementTree.ParseError as e:
        raise UnsupportedDatasetError(f"{path}: is not well-formed XML ({e})") from None
    if root.tag != f"{DAP}Dataset":
        raise UnsupportedDatasetError(
            f"{path}: its root element is {root.tag!r}, not a DAP4 Dataset: not a DMR++"
        )
    return root


def _check_size(path: str, size: int, limit: int) -> None:
    if size > limit:
        raise UnsupportedDatasetError(
            f"{path}: the DMR++ holds {size} bytes, more than max_dmrpp_bytes={limit}; "
            "raise max_dmrpp_bytes to read it"
        )


def _start(
    root: ElementTree.Element, group: str | None, path: str
) -> tuple[ElementTree.Element, str, Dimensions | None]:
    """The group element to scan, its path prefix and the dimensions of the groups above it."""
    node, prefix, dims = root, "", None
    for name in (group or "").strip("/").split("/") if group not in (None, "", "/") else []:
        child = node.find(f"{DAP}Group[@name='{name}']") if "'" not in name else None
        if child is None:
            raise ValueError(f"{path!r} has no group {group!r}")
        dims = Dimensions.of(node, dims)
        node, prefix = child, f"{prefix}{name}/"
    return node, prefix, dims
