"""Icechunk repositories back into ManifestGroups: their virtual references, their small chunks.

``scan_icechunk`` reads a repository's hierarchy (Zarr v3 metadata) and, array
by array, its chunk references in columnar batches (Icechunk's
``array_chunk_iterator``): virtual references keep their source (URLs become
the paths a manifest uses: ``file:///data/a%20b.nc`` -> ``/data/a b.nc``),
chunks Icechunk holds itself (inline in its manifests, or native objects) are
read and kept inline, up to a total size; beyond it the scan is refused.
"""

from __future__ import annotations

import importlib
import itertools
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import fsspec.asyn
import numpy as np
import zarr
from zarr.buffer import default_buffer_prototype

from zarr_manifest_store.array import ManifestArray, grid_shape
from zarr_manifest_store.errors import UnsupportedDatasetError
from zarr_manifest_store.group import ManifestGroup
from zarr_manifest_store.io.paths import is_local, local_path
from zarr_manifest_store.io.remote import io_loop
from zarr_manifest_store.manifest import INLINE, MISSING, ChunkManifest
from zarr_manifest_store.scan.registry import Folder, Format

__all__ = ["FORMAT", "MAX_MATERIALISED_BYTES", "path_of", "scan_icechunk", "scan_repository"]

MAX_MATERIALISED_BYTES = 64 * 2**20
"""How many bytes of chunks stored in the repository itself a scan keeps inline (all arrays)."""

_BATCH = 100_000
"""Chunk references per batch from Icechunk."""

_REPO_MAGIC = "ICE🧊CHUNK".encode()
"""How an Icechunk repository's ``repo`` file starts."""

_VIRTUAL, _NATIVE, _INLINE = 2, 1, 3
"""Icechunk's chunk kinds (``icechunk.ChunkType``)."""


def scan_icechunk(
    source: Any,
    group: str | None = None,
    *,
    branch: str = "main",
    max_materialised_bytes: int = MAX_MATERIALISED_BYTES,
) -> ManifestGroup:
    """The hierarchy at ``group`` of an Icechunk repository, as a :class:`ManifestGroup`.

    ``source`` is a ``Repository`` (read at the tip of ``branch``), a
    ``Session`` or its ``store``. Virtual references become chunk references;
    chunks the repository holds itself are read and kept inline, up to
    ``max_materialised_bytes`` in all (``UnsupportedDatasetError`` beyond,
    naming the array and the limit). Fingerprints are not recorded: Icechunk
    keeps its checksums to itself, so a ManifestStore checks sources at first use.

    >>> import icechunk
    >>> repo = icechunk.Repository.create(icechunk.in_memory_storage())
    >>> session = repo.writable_session("main")
    >>> _ = xr.Dataset({"v": ("x", np.arange(4.0))}).to_zarr(session.store, consolidated=False)
    >>> snapshot = session.commit("chunks held by the repository")
    >>> zms.scan_icechunk(repo)["v"].manifest.inline.keys()
    dict_keys([(0,)])
    """
    store = _store_of(source, branch)
    prefix = (group or "").strip("/")
    try:
        root = zarr.open_group(store, path=prefix, mode="r", use_consolidated=False)
    except FileNotFoundError:
        raise FileNotFoundError(f"the Icechunk repository has no group {prefix or '/'!r}") from None
    return _group(root, store, _Budget(max_materialised_bytes))


def path_of(location: str) -> str:
    """The manifest path of an Icechunk location: a local path for ``file://``, the URL with
    its key decoded otherwise (``http(s)`` URLs are kept as they are)."""
    parts = urlsplit(location)
    if parts.scheme == "file":
        return unquote(parts.path)
    if parts.scheme in ("http", "https"):
        return location
    return f"{parts.scheme}://{parts.netloc}{unquote(parts.path)}"


def _store_of(source: Any, branch: str) -> Any:
    if hasattr(source, "readonly_session"):
        return source.readonly_session(branch).store
    store = source if hasattr(source, "array_chunk_iterator") else getattr(source, "store", None)
    if not hasattr(store, "array_chunk_iterator"):
        raise TypeError(
            f"scan_icechunk reads an icechunk Repository, Session or IcechunkStore, "
            f"got {type(source).__name__}"
        )
    return store


@dataclass
class _Budget:
    """Bytes of chunks held by the repository that a scan may still keep inline."""

    limit: int
    used: int = 0

    def take(self, path: str, nbytes: int) -> None:
        self.used += nbytes
        if self.used > self.limit:
            raise UnsupportedDatasetError(
                f"array {path!r}: the chunks the Icechunk repository holds itself exceed "
                f"max_materialised_bytes={self.limit} once read to be kept inline; pass a "
                "larger max_materialised_bytes to scan_icechunk"
            )


def _group(node: zarr.Group, store: Any, budget: _Budget) -> ManifestGroup:
    arrays = {name: _array(a, store, budget) for name, a in node.arrays()}
    groups = {name: _group(g, store, budget) for name, g in node.groups()}
    return ManifestGroup(arrays=arrays, groups=groups, attributes=node.attrs.asdict())


def _array(array: zarr.Array, store: Any, budget: _Budget) -> ManifestArray:
    metadata = array.metadata
    grid = grid_shape(metadata)
    index = np.full(grid, MISSING, dtype=np.uint32)
    offsets = np.zeros(grid, dtype=np.uint64)
    lengths = np.zeros(grid, dtype=np.uint64)
    paths: dict[str, int] = {}  # path -> row of the path table
    rows_of: dict[str, int] = {}  # location -> row (several locations may name one path)

    def row_of(location: str) -> int:
        row = rows_of.get(location)
        if row is None:
            row = rows_of[location] = paths.setdefault(path_of(location), len(paths))
        return row

    inline: dict[tuple[int, ...], bytes] = {}
    path = array.path
    for coords, kinds, locations, offs, lens, held in _batches(store, path):
        cells = tuple(coords.T.astype(np.intp))
        virtual = kinds == _VIRTUAL
        rows = [row_of(loc) for loc in itertools.compress(locations, virtual.tolist())]
        picked = tuple(c[virtual] for c in cells)
        index[picked] = rows
        offsets[picked] = offs[virtual]
        lengths[picked] = lens[virtual]
        for i in np.flatnonzero(~virtual).tolist():
            at = tuple(int(c) for c in coords[i])
            data = held.get(i) if kinds[i] == _INLINE else _read_chunk(store, path, at)
            budget.take(path, len(data))
            inline[at] = data
            index[at] = INLINE
    manifest = ChunkManifest(
        paths=list(paths), path_index=index, offsets=offsets, lengths=lengths, inline=inline
    )
    return ManifestArray(metadata=metadata, manifest=manifest)


def _batches(store: Any, path: str) -> Iterator[tuple[Any, ...]]:
    """Icechunk's batches of the array's chunk references, one at a time."""
    batches = store.array_chunk_iterator(path, _BATCH)

    async def following() -> tuple[Any, ...] | None:
        return await anext(batches, None)

    while (batch := fsspec.asyn.sync(io_loop(), following)) is not None:
        yield batch


def _read_chunk(store: Any, path: str, coords: tuple[int, ...]) -> bytes:
    key = "/".join([path, "c", *map(str, coords)])
    buffer = fsspec.asyn.sync(io_loop(), store.get, key, default_buffer_prototype())
    return buffer.to_bytes()


def scan_repository(
    url: str | os.PathLike[str],
    *,
    group: str | None = None,
    drop_variables: Iterable[str] = (),
    branch: str = "main",
    storage_options: Mapping[str, Any] | None = None,
) -> ManifestGroup:
    """The hierarchy an Icechunk repository folder holds (``zms.scan("repo/")``), as
    :func:`scan_icechunk` reads it, arrays in ``drop_variables`` left out.

    Only repositories on the local file system are opened from a path (``icechunk``
    is imported here, when one is given: it is an optional dependency); open others
    with ``icechunk.Repository.open`` and pass the repository to :func:`scan_icechunk`.
    """
    url = os.fspath(url)
    if storage_options or not is_local(url):
        raise UnsupportedDatasetError(
            f"{url}: zms.scan opens Icechunk repositories on the local file system only; open "
            "it with icechunk.Repository.open(...) and pass it to zms.scan_icechunk"
        )
    icechunk = importlib.import_module("icechunk")
    storage = icechunk.local_filesystem_storage(os.path.abspath(local_path(url)))
    root = scan_icechunk(icechunk.Repository.open(storage), group, branch=branch)
    dropped = set(drop_variables)
    return ManifestGroup(
        arrays={k: a for k, a in root.arrays.items() if k not in dropped},
        groups=dict(root.groups),
        attributes=dict(root.attributes),
    )


def _is_repository(folder: Folder) -> bool:
    """Whether the folder is an Icechunk repository (its ``repo`` file, or, before Icechunk 2,
    its ``refs`` and ``snapshots`` folders)."""
    head = folder.read("repo")
    if head is not None:
        return head.startswith(_REPO_MAGIC)
    return folder.exists("snapshots") and folder.exists("refs")


FORMAT = Format(
    name="icechunk",
    scan=scan_repository,
    description="Icechunk repositories (a folder)",
    sniff_folder=_is_repository,
    folder_description="an Icechunk repository (its repo file or refs/ and snapshots/)",
)
"""Icechunk repository folders in the format registry."""
