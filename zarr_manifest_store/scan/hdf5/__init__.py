"""scan_hdf5: an HDF5 / netCDF-4 file as a ManifestGroup, exact for every dataset or refused.

Each dataset becomes a Zarr v3 array whose chunks are byte ranges of the file:
chunked layouts through their chunk index (read from the file, or with ``chunk_iter``;
straight into the manifest's columns), contiguous layouts as one range (split along
the leading axis when uncompressed and large), external storage as ranges of the
external files. What has no byte range that Zarr could decode exactly — compact
datasets, variable-length strings, chunks that skipped a filter, filters without a
Zarr codec, types HDF5 converts on reading — is read with h5py and materialised as
inline chunks when small, and refused otherwise. netCDF-4 conventions are applied
the way h5netcdf applies them (dimension names, unlimited dimensions padded to their
length, strings, attributes), so that ``xr.open_zarr`` of the result matches
``xr.open_dataset(..., engine="h5netcdf")``. One object that cannot be described is
refused alone (a name Zarr reserves is escaped instead, see ``scan.common.zarr_name``).

The walk reads each link, attribute and dataset property once, through h5py's
low-level API where its high-level objects would read them again on every access;
what depends only on an HDF5 type (how to read an attribute of it, its Zarr data
type) is worked out once per type and shared by the files of a collection. Datasets
with plain headers (the thousands of tiny datasets of a MATLAB v7.3 file, the
variables of a netCDF-4 file) are described from their object headers and chunk
indexes, read from the file's bytes, without an h5py call each; any header it does
not know exactly is read through h5py. Values are exactly those h5py gives.

The modules: ``walk`` (groups, links, the array metadata of each dataset),
``objects`` (links and members as h5py gives them, read once), ``attributes``,
``datatypes`` (HDF5 type -> Zarr data type), ``dimensions`` (netCDF-4 dimension
names), ``layouts`` (storage layouts -> chunk references; ``inline_chunks``: what is
read through h5py and stored inline), ``virtual`` (virtual
datasets), ``chunk_index`` (a chunk index into columns; ``earray``: the chunk
offsets HDF5 2.0 misreports), ``chunk_tree`` and ``chunk_array`` (version 1
B-tree, single-chunk and fixed-array indexes read from the file), ``filters``
(filter pipelines -> codecs), ``text`` (variable-length strings in the data type
h5netcdf shows), ``metadata`` (parsed once), ``headers`` (object headers and global
heaps from the file's bytes), ``messages`` (their messages decoded), ``parsed``
(datasets described from their headers), ``header_attributes`` and
``header_scales`` (their attributes and the dimension scales their dimension lists
name), ``dense_attributes`` with ``fractal_heap`` and ``btree2`` (attributes kept in
dense storage), ``library`` (HDF5 calls h5py does not wrap).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
from collections.abc import Callable, Collection, Iterator, Mapping
from typing import Any, Literal

import h5py
from h5py import h5f, h5p

from zarr_manifest_store.group import ManifestGroup
from zarr_manifest_store.io.paths import is_local, local_path, source_path
from zarr_manifest_store.io.remote_file import shared_remote_file
from zarr_manifest_store.io.sources import Sources
from zarr_manifest_store.manifest import Fingerprint
from zarr_manifest_store.scan.common import CONTIGUOUS_CHUNK_BYTES, Refusals
from zarr_manifest_store.scan.hdf5.dimensions import Dimensions
from zarr_manifest_store.scan.hdf5.headers import FileBytes, Unrecognised
from zarr_manifest_store.scan.hdf5.layouts import Layouts
from zarr_manifest_store.scan.hdf5.walk import Walk
from zarr_manifest_store.scan.registry import Format

__all__ = [
    "CONTIGUOUS_CHUNK_BYTES",
    "FORMAT",
    "MAX_INLINE_BYTES",
    "SIGNATURE",
    "scan_file",
    "scan_hdf5",
]

logger = logging.getLogger(__name__)

MAX_INLINE_BYTES = 2**20
"""Default limit of the bytes one dataset may materialise into its manifest."""
SIGNATURE = b"\x89HDF\r\n\x1a\n"
"""The bytes an HDF5 file starts with, after a user block of 512 bytes or a larger power of two."""
USERBLOCK_LIMIT = 2**20
"""User blocks are looked behind up to this size."""


def scan_hdf5(
    url: str | os.PathLike[str],
    *,
    group: str | None = None,
    drop_variables: Collection[str] | str | None = None,
    on_unsupported: Literal["raise", "skip"] = "raise",
    storage_options: Mapping[str, Any] | None = None,
    contiguous_chunk_bytes: int | None = CONTIGUOUS_CHUNK_BYTES,
    max_inline_bytes: int = MAX_INLINE_BYTES,
) -> ManifestGroup:
    """Scan an HDF5 / netCDF-4 file into a :class:`ManifestGroup` of chunk references.

    ``url`` is a local path or an fsspec URL (``s3://``, ``https://``, ...;
    ``storage_options`` configure the file system). ``group`` scans one group
    (``"forecast/surface"``); ``drop_variables`` names datasets or groups to
    leave out, as paths relative to it. A dataset that cannot be described
    exactly raises :class:`~zarr_manifest_store.UnsupportedDatasetError`
    (``on_unsupported="raise"``) or is left out with a warning (``"skip"``).
    Uncompressed contiguous datasets are split along their first axis into
    chunks of about ``contiguous_chunk_bytes`` (``None``: one chunk); up to
    ``max_inline_bytes`` per dataset may be read and stored inline.

    >>> import h5py, numpy as np, zarr_manifest_store as zms
    >>> with h5py.File("/tmp/scan_hdf5_doc.h5", "w") as f:
    ...     _ = f.create_dataset("t", data=np.arange(6.0), chunks=(3,), compression="gzip")
    >>> g = zms.scan_hdf5("/tmp/scan_hdf5_doc.h5")
    >>> g["t"].manifest.nchunks
    2
    >>> zarr.open_group(zms.ManifestStore(g), mode="r")["t"][:].tolist()
    [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    """
    return scan_file(
        url,
        group=group,
        drop_variables=drop_variables,
        on_unsupported=on_unsupported,
        storage_options=storage_options,
        contiguous_chunk_bytes=contiguous_chunk_bytes,
        max_inline_bytes=max_inline_bytes,
    )


def scan_file(
    url: str | os.PathLike[str],
    *,
    read_headers: bool = True,
    group: str | None = None,
    drop_variables: Collection[str] | str | None = None,
    on_unsupported: Literal["raise", "skip"] = "raise",
    storage_options: Mapping[str, Any] | None = None,
    contiguous_chunk_bytes: int | None = CONTIGUOUS_CHUNK_BYTES,
    max_inline_bytes: int = MAX_INLINE_BYTES,
) -> ManifestGroup:
    """:func:`scan_hdf5`, describing small datasets from their object headers
    (``read_headers``, see :mod:`.parsed`) or every one through h5py (the tests
    compare the two)."""
    path = source_path(url)
    refusals = Refusals(path, on_unsupported)
    if contiguous_chunk_bytes is not None and contiguous_chunk_bytes < 1:
        raise ValueError(f"contiguous_chunk_bytes must be positive, got {contiguous_chunk_bytes}")
    sources = Sources(storage_options)
    dropped = {drop_variables} if isinstance(drop_variables, str) else set(drop_variables or ())
    with _open(path, sources, read_headers) as (h5file, fingerprint, headers):
        if group in (None, "", "/"):
            start = h5file["/"]  # the root as a group: its links and attributes are the group's
        else:
            start = h5file.get(group.strip("/"))
            if not isinstance(start, h5py.Group):
                raise ValueError(f"{path!r} has no group {group!r}")
        layouts = Layouts(
            path=path,
            fingerprint=fingerprint,
            sources=sources,
            contiguous_chunk_bytes=contiguous_chunk_bytes,
            max_inline_bytes=max_inline_bytes,
        )
        walk = Walk(layouts=layouts, refusals=refusals, dropped=dropped)
        result = walk.group(start, "", Dimensions.of_ancestors(start, headers))
    refusals.finish()
    return result


@contextlib.contextmanager
def _open(
    path: str, sources: Sources, read_headers: bool
) -> Iterator[tuple[h5py.File, Fingerprint, FileBytes | None]]:
    """The file opened with h5py, its fingerprint, and its bytes to read object headers
    from (None when ``read_headers`` is false or the superblock is one they do not know):
    local files directly, others as a
    :class:`~zarr_manifest_store.io.remote_file.RemoteFile` (read in large cached blocks,
    the first one with the fingerprint in one request before h5py takes its lock: within
    a ``sharing``, the one the format registry read to identify the file)."""
    if is_local(path):
        fingerprint = sources.fingerprint(path)
        with _naming(path):
            fid = h5f.open(os.fsencode(local_path(path)), h5f.ACC_RDONLY, fapl=_file_access())
        with h5py.File(fid) as f, open(local_path(path), "rb") as raw:
            yield f, fingerprint, _headers(read_headers, lambda: FileBytes.local(raw.fileno()))
        return
    fobj = shared_remote_file(sources, path)
    sources.record({path: fobj.fingerprint})  # checks of other reads need no HEAD of their own
    requests = fobj.requests
    with _naming(path):
        h5file = h5py.File(fobj, "r")
    with h5file as f:
        headers = _headers(read_headers, lambda: FileBytes(fobj.read_range, fobj.size))
        yield f, fobj.fingerprint, headers
    logger.debug("scanned %s in %d more request(s)", path, fobj.requests - requests)


@contextlib.contextmanager
def _naming(path: str) -> Iterator[None]:
    """HDF5's refusal to open a file (truncated, corrupt), with the file named."""
    try:
        yield
    except OSError as e:
        raise type(e)(f"{path}: HDF5 cannot open it ({e})") from e


def _headers(read_headers: bool, open_bytes: Callable[[], FileBytes]) -> FileBytes | None:
    if not read_headers:
        return None
    try:
        return open_bytes()
    except Unrecognised:
        return None


@functools.cache
def _file_access() -> h5p.PropFAID:
    """The file access properties ``h5py.File(path, "r")`` opens with, made once.

    h5py makes them anew (and creation properties it does not need) for every
    file, which costs about a sixth of opening one.
    """
    fapl = h5p.create(h5p.FILE_ACCESS)
    fapl.set_libver_bounds(h5f.LIBVER_EARLIEST, h5f.LIBVER_LATEST)
    fapl.set_alignment(1, 1)
    return fapl


FORMAT = Format(
    name="hdf5",
    scan=scan_hdf5,
    description=f"HDF5 / netCDF4 (signature {SIGNATURE!r})",
    signatures=(SIGNATURE,),
    signature_offsets=(0, *(512 << i for i in range((USERBLOCK_LIMIT // 512).bit_length() - 1))),
)
"""HDF5 in the format registry: its signature at the start, or after a user block."""
