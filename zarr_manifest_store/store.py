"""ManifestStore: a read-only zarr-python v3 Store that serves a manifest hierarchy.

Metadata keys (``zarr.json``) are answered by :mod:`.served_metadata` (a group's
carries its descendants' consolidated, so that opening costs one read). Chunk keys
are decoded with the array's own chunk key encoding and answered by reading the
chunk's byte range from its source file.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from typing import Any, Self

import numpy as np
from zarr.abc.buffer import Buffer, BufferPrototype
from zarr.abc.store import ByteRequest, Store
from zarr.buffer import cpu, default_buffer_prototype

from zarr_manifest_store.array import ManifestArray
from zarr_manifest_store.byte_ranges import window, window_of
from zarr_manifest_store.document.assembly import MAX_INLINE_BYTES, Limits
from zarr_manifest_store.document.read import (
    MAX_CHUNKS,
    MAX_INDEX_ELEMENTS,
    MAX_METADATA_BYTES,
    check_index_coordinates,
    read_document,
)
from zarr_manifest_store.group import ManifestGroup, Node
from zarr_manifest_store.io.allow import AllowList
from zarr_manifest_store.io.sources import ByteData, Sources, Verify, VerifyReport
from zarr_manifest_store.manifest import MAX_DENSE_CHUNKS, ChunkRef
from zarr_manifest_store.served import ServedArray
from zarr_manifest_store.served_metadata import METADATA_KEY, ServedMetadata
from zarr_manifest_store.served_rows import Rows, ServedRows, served_arrays

__all__ = ["ManifestStore"]


class ManifestStore(Store):
    """A read-only Zarr v3 store whose chunks are byte ranges of the original files.

    ``root`` is a :class:`ManifestGroup` (or a single :class:`ManifestArray`,
    served as the root array). ``storage_options`` configure remote sources
    the way fsspec takes them (chunks of S3, GCS, Azure and HTTP sources are
    read through obstore, with these options translated; see
    ``docs/howto/remote.md``): one dict, or a mapping from URL prefix to
    options (``{"s3://bucket-a/": {...}, "s3://bucket-b/": {...}}``).
    ``allow`` lists the path / URL prefixes that may be read (``None``: any),
    or is an :class:`~zarr_manifest_store.io.allow.AllowList`.

    ``verify`` says when a source is checked against the fingerprint (size
    and mtime, or ETag) recorded when it was scanned: ``"first-use"`` (when
    the store first opens it), ``"always"`` (before every read) or
    ``"never"``; a mismatch raises :class:`SourceChangedError`. Unless
    ``"never"``, every range read from S3, GCS, Azure or HTTP must also be served with
    the ETag the object was checked with; a recorded fingerprint is checked on the
    data requests themselves (no HEAD first: a random chunk costs one request).
    :meth:`verify` checks every source at once.

    I/O tuning, passed on to :class:`~zarr_manifest_store.io.sources.Sources`:
    ``max_concurrency`` (remote requests in flight per host, 64), ``max_gap_bytes``
    and ``max_coalesced_bytes`` (reads of one file at most 1 MiB apart merge
    into one request of at most 16 MiB), ``read_budget_bytes`` (the stored
    bytes of remote chunks one read holds at once, 256 MiB), ``retries`` (4),
    ``timeout`` (15 s per remote attempt), ``deadline`` (25 s for one request in
    all, retries included: a stalling server costs at most that) and
    ``read_ahead_bytes`` (64 MiB: the memory a remote file read chunk after
    chunk may hold in blocks read ahead, and, apart, the blocks of a file that
    its record variables share, kept for the variables not read yet; 0 turns both off).

    Reads: concurrent ``get`` calls (zarr's, for a slice) and
    ``get_partial_values`` are gathered so that nearby ranges of one file are
    fetched in one request; local bytes already in the page cache are served
    without a thread hop. zarr decodes this store's arrays with
    :class:`~zarr_manifest_store.pipeline.ManifestCodecPipeline` (each local
    chunk read and decoded in one call on a thread pool, through ``get_sync``)
    unless the process chose its own ``codec_pipeline.path``.

    :meth:`open` opens a stored chunk-manifest document instead.

    >>> import zarr
    >>> from zarr_manifest_store import ManifestGroup, ManifestStore
    >>> store = ManifestStore(ManifestGroup(attributes={"title": "empty"}))
    >>> zarr.open_group(store, mode="r").attrs["title"]
    'empty'
    """

    supports_writes = False
    supports_deletes = False
    supports_listing = True

    def __init__(
        self,
        root: ManifestGroup | ManifestArray,
        *,
        storage_options: Mapping[str, Any] | None = None,
        allow: AllowList | Sequence[str] | None = None,
        verify: Verify = "first-use",
        read_only: bool = True,
        **io_options: Any,
    ) -> None:
        if not read_only:
            raise ValueError("ManifestStore is read-only: it cannot be opened with read_only=False")
        if not isinstance(root, ManifestGroup | ManifestArray):
            raise TypeError(
                f"root must be a ManifestGroup or ManifestArray, got {type(root).__name__}"
            )
        super().__init__(read_only=True)
        self._root = root
        nodes: list[tuple[str, Node]] = [("", root)]
        if isinstance(root, ManifestGroup):
            nodes.extend(root.walk())
        self._nodes: dict[str, Node] = dict(nodes)
        self._arrays = {p: n for p, n in nodes if isinstance(n, ManifestArray)}
        self._served = served_arrays(self._arrays)
        self._joins_rows = any(isinstance(s, ServedRows) for s in self._served.values())
        self._documents = ServedMetadata(self._nodes, self._served)
        self._token: str | None = None
        self._sources = Sources(
            storage_options,
            allow=allow,
            verify=verify,
            **io_options,
        )

    @classmethod
    def open(  # type: ignore[override]
        cls,
        url: str | os.PathLike[str],
        *,
        allow: AllowList | Sequence[str] | None = None,
        storage_options: Mapping[str, Any] | None = None,
        load: bool = False,
        max_chunks: int = MAX_CHUNKS,
        max_metadata_bytes: int = MAX_METADATA_BYTES,
        max_dense_chunks: int = MAX_DENSE_CHUNKS,
        max_inline_bytes: int = MAX_INLINE_BYTES,
        max_index_elements: int = MAX_INDEX_ELEMENTS,
        **options: Any,
    ) -> ManifestStore:
        """Open a stored chunk-manifest document (a folder or any fsspec URL).

        Unlike zarr's asynchronous ``Store.open``, this reads the document
        synchronously and returns the store. The document's own folder may
        always be read; ``allow`` adds the prefixes its absolute paths may use.
        ``load=True`` reads and validates every manifest now (else each when
        first needed); ``max_chunks`` caps one array's chunk grid and
        ``max_metadata_bytes`` the size of one file of the document. What a document
        may cost is bounded (``docs/concepts.md``, "Limits"): ``max_dense_chunks``
        chunk references of one array held at once, ``max_inline_bytes`` of inline
        chunks held by one manifest load, ``max_index_elements`` elements of a
        dimension coordinate (which ``xr.open_dataset`` loads at open). Other keyword
        arguments go to the store (``verify``, I/O tuning).

        >>> import xarray as xr, zarr_manifest_store as zms
        >>> zms.write_manifest(zms.scan("data/era_2026-01-01.nc"), "opened.zarr", mode="w")
        >>> store = zms.ManifestStore.open("opened.zarr", allow=["data/"])
        >>> xr.open_zarr(store).t2m.shape
        (24, 73, 144)
        """
        document = read_document(
            url,
            storage_options=storage_options,
            max_chunks=max_chunks,
            max_metadata_bytes=max_metadata_bytes,
            load=load,
            limits=Limits(max_dense_chunks=max_dense_chunks, max_inline_bytes=max_inline_bytes),
        )
        check_index_coordinates(document.root, max_index_elements, os.fspath(url))
        user = AllowList.of([] if allow is None else allow)
        readable = (
            user if user.everything else AllowList(document.allow).with_prefixes(*user.prefixes)
        )
        return cls(document.root, storage_options=storage_options, allow=readable, **options)

    @property
    def root(self) -> ManifestGroup | ManifestArray:
        """The hierarchy this store serves."""
        return self._root

    @property
    def sources(self) -> Sources:
        """The reader of source byte ranges."""
        return self._sources

    # ------------------------------------------------------------------ identity

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, ManifestStore)
            and self._options() == other._options()
            and self._root.equals(other._root)
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        arrays = len(self._arrays)
        return f"<ManifestStore: {arrays} array(s), {len(self._nodes) - arrays} group(s)>"

    def __dask_tokenize__(self) -> str:
        """dask's name for the data served here (xarray names dask arrays with it): one per
        store, made once, rather than dask's fallback of pickling the whole hierarchy on
        every open (a minute for 15,000 arrays)."""
        if self._token is None:
            self._token = f"ManifestStore-{uuid.uuid4().hex}"
        return self._token

    def __getstate__(self) -> dict[str, Any]:
        return {"root": self._root, **self._options()}

    def __setstate__(self, state: dict[str, Any]) -> None:
        root = state.pop("root")
        self.__init__(root, **state)  # type: ignore[misc]

    def with_read_only(self, read_only: bool = False) -> Self:
        """A fresh store over the same hierarchy; only ``read_only=True`` is possible."""
        return type(self)(self._root, **self._options(), read_only=read_only)

    def _options(self) -> dict[str, Any]:
        """The constructor options that, with the root, recreate this store."""
        return {
            "storage_options": self._sources.storage_options,
            "allow": self._sources.allow,
            **self._sources.options,
        }

    def close(self) -> None:
        self._sources.close()
        super().close()

    def verify(self) -> VerifyReport:
        """Check every source file now: present, readable, unchanged, long enough.

        Each source is compared with its recorded fingerprint and with the end
        of the last chunk referenced in it; nothing is decoded.

        >>> store = ManifestStore(ManifestGroup())
        >>> store.verify().ok
        True
        """
        extents: dict[str, int] = {}
        for served in self._served.values():  # array by array, block by block
            self._record(served)
            for path, end in served.array.manifest.source_extents().items():
                extents[path] = max(extents.get(path, 0), end)
        return self._sources.verify(extents)

    # ------------------------------------------------------------------ reading

    async def get(
        self,
        key: str,
        prototype: BufferPrototype | None = None,
        byte_range: ByteRequest | None = None,
    ) -> Buffer | None:
        target = self._target(key, byte_range)
        try:
            if isinstance(target, tuple):
                target = await self._sources.read(*target)
            elif isinstance(target, Rows):
                target = window_of(await target.read(self._sources), byte_range)
        except OSError as e:
            raise _naming_chunk(e, key) from e
        return _buffer(target, prototype)

    def get_sync(
        self,
        key: str,
        *,
        prototype: BufferPrototype | None = None,
        byte_range: ByteRequest | None = None,
    ) -> Buffer | None:
        """Synchronous ``get``, for zarr's synchronous codec pipeline."""
        target = self._target(key, byte_range)
        try:
            if isinstance(target, tuple):
                target = self._sources.read_sync(*target)
            elif isinstance(target, Rows):
                target = window_of(target.read_sync(self._sources), byte_range)
        except OSError as e:
            raise _naming_chunk(e, key) from e
        return _buffer(target, prototype)

    async def _read_into(self, key: str, region: np.ndarray) -> bool:
        """Write chunk ``key`` decoded into ``region`` (its place in zarr's output) if the
        store joins it from rows (:mod:`.served_rows`): cut from the file straight into
        place, not made for zarr to copy. False (nothing written) for any other chunk."""
        rows = self._rows_into(key, region)
        if rows is None:
            return False
        try:
            await rows[0].read_into(self._sources, rows[1])
        except OSError as e:
            raise _naming_chunk(e, key) from e
        return True

    def _read_into_sync(self, key: str, region: np.ndarray) -> bool:
        """:meth:`_read_into`, blocking."""
        rows = self._rows_into(key, region)
        if rows is None:
            return False
        try:
            rows[0].read_into_sync(self._sources, rows[1])
        except OSError as e:
            raise _naming_chunk(e, key) from e
        return True

    def _rows_into(self, key: str, region: np.ndarray) -> tuple[Rows, np.ndarray] | None:
        """The rows chunk ``key`` joins and ``region`` as rows of them, if it is such a chunk."""
        value = self._lookup(key)
        rows = value.rows_of(region) if isinstance(value, Rows) else None
        return None if rows is None else (value, rows)

    async def get_partial_values(
        self,
        prototype: BufferPrototype,
        key_ranges: Iterable[tuple[str, ByteRequest | None]],
    ) -> list[Buffer | None]:
        """Many (partial) values at once; nearby ranges of one source file become one read.

        The reads are issued together, so the sources' gathering coalesces
        them (as it does the concurrent ``get`` calls zarr makes for a slice).
        """
        return list(await asyncio.gather(*(self.get(k, prototype, r) for k, r in key_ranges)))

    async def exists(self, key: str) -> bool:
        return self._lookup(key) is not None

    async def getsize(self, key: str) -> int:
        value = self._lookup(key)
        if value is None:
            raise FileNotFoundError(key)
        if isinstance(value, Rows):
            return value.nbytes
        return value.length if isinstance(value, ChunkRef) else len(value)

    # ------------------------------------------------------------------ listing

    async def list(self) -> AsyncIterator[str]:
        for key in self._keys():
            yield key

    async def list_prefix(self, prefix: str) -> AsyncIterator[str]:
        for key in self._keys(prefix):
            yield key

    async def list_dir(self, prefix: str) -> AsyncIterator[str]:
        prefix = prefix.rstrip("/")
        group = self._nodes.get(prefix)
        if isinstance(group, ManifestGroup):  # its document and its members, from the tree
            yield METADATA_KEY
            for name in group:
                yield name
            return
        base = f"{prefix}/" if prefix else ""
        seen: set[str] = set()
        for key in self._keys(base):
            child = key[len(base) :].partition("/")[0]
            if child not in seen:
                seen.add(child)
                yield child

    # ------------------------------------------------------------------ writing (refused)

    async def set(self, key: str, value: Buffer) -> None:
        self._check_writable()

    def set_sync(self, key: str, value: Buffer) -> None:
        """Refused: the store is read-only (zarr's synchronous ``set``)."""
        self._check_writable()

    async def delete(self, key: str) -> None:
        self._check_writable()

    def delete_sync(self, key: str) -> None:
        """Refused: the store is read-only (zarr's synchronous ``delete``)."""
        self._check_writable()

    # ------------------------------------------------------------------ internals

    @property
    def supports_consolidated_metadata(self) -> bool:
        """Whether the root's ``zarr.json`` consolidates the hierarchy (see
        ``served_metadata.MAX_CONSOLIDATED_MEMBERS``); xarray asks, and lists when not."""
        return self._documents.consolidated

    def _target(
        self, key: str, byte_range: ByteRequest | None
    ) -> tuple[str, int, int] | bytes | Rows | None:
        """What ``get(key, byte_range)`` returns: bytes held here, ``(path, offset, length)``
        to read from a source, rows to read and join, or None for a key not in the store."""
        value = self._lookup(key)
        if value is None or byte_range is None or isinstance(value, Rows):
            return value
        if isinstance(value, ChunkRef):
            start, stop = window(byte_range, value.length)
            return value.path, value.offset + start, stop - start
        start, stop = window(byte_range, len(value))
        return value[start:stop]

    def _lookup(self, key: str) -> ChunkRef | bytes | Rows | None:
        """What ``key`` holds: a document, a chunk reference, inline chunk bytes, or None."""
        doc = self._documents.document(key)
        if doc is not None:
            return doc
        found = self._array_of(key)
        if found is None:
            return None
        served, chunk_key = found
        self._record(served)
        return served.chunk(chunk_key)

    def _stored_length(self, key: str) -> int:
        """How many bytes of a source reading chunk ``key`` costs (0: none, held here)."""
        found = self._array_of(key)
        if found is None:
            return 0
        value = found[0].chunk(found[1])
        return value.length if isinstance(value, ChunkRef) else 0

    def _reads_locally(self, key: str) -> bool:
        """Whether the array of chunk ``key`` reads only local files (or bytes held here)."""
        found = self._array_of(key)
        return found is None or found[0].local

    def _record(self, served: ServedArray) -> None:
        """Tell the sources, once per array, what its files looked like when scanned."""
        if not served.recorded:
            self._sources.record(served.array.manifest.fingerprints)
            self._sources.add_chunks(served.array.manifest)
            served.recorded = True

    def _array_of(self, key: str) -> tuple[ServedArray, str] | None:
        """The array whose chunk ``key`` would name, and the chunk key within it.

        The array is the first node path that prefixes ``key`` at a '/' (the
        root first); arrays have no children, so at most one can match.
        """
        served = self._served
        root = served.get("")
        if root is not None:
            return root, key
        i = key.find("/")
        while i != -1:
            array = served.get(key[:i])
            if array is not None:
                return array, key[i + 1 :]
            i = key.find("/", i + 1)
        return None

    def _keys(self, prefix: str = "") -> Iterator[str]:
        """Every key under ``prefix``: documents, then present chunks array by array."""
        documents = (_join(path, METADATA_KEY) for path in self._nodes)
        yield from (k for k in documents if k.startswith(prefix))
        for path, array in self._arrays.items():
            base = f"{path}/" if path else ""
            if not (base.startswith(prefix) or prefix.startswith(base)):
                continue
            encoding = array.metadata.chunk_key_encoding
            for coords in self._served[path].present():
                key = base + encoding.encode_chunk_key(coords)
                if key.startswith(prefix):
                    yield key


def _join(path: str, name: str) -> str:
    return f"{path}/{name}" if path else name


def _naming_chunk(error: OSError, key: str) -> OSError:
    """The same kind of error as ``error``, its message naming the chunk key too."""
    message = f"{error.strerror or error} (reading chunk {key!r})"
    return type(error)(error.errno, message) if error.errno is not None else type(error)(message)


def _buffer(data: ByteData | None, prototype: BufferPrototype | None) -> Buffer | None:
    if data is None:
        return None
    buffer = (prototype or default_buffer_prototype()).buffer
    if buffer is cpu.Buffer and isinstance(data, np.ndarray):
        return buffer(data)  # host bytes already in an array: wrap them as they are
    return buffer.from_bytes(data)
