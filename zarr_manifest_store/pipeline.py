"""The codec pipeline zarr uses for the arrays a ManifestStore serves.

zarr's default pipeline hops to a thread for every codec of every chunk and
copies each chunk into the output on its event loop thread; for archives of
many compressed chunks that scheduling costs more than the decoding. zarr's
opt-in ``FusedCodecPipeline`` instead fetches, decodes and places each chunk
in one synchronous call, on a thread pool. :class:`ManifestCodecPipeline` is
that pipeline, except that every chunk decodes through the chunk guards
(:mod:`zarr_manifest_store.guards`: a document and the bytes it points at are
untrusted), that chunks of remote sources are fetched concurrently (so that the
store gathers and coalesces them) rather than one blocking request per worker,
and that a single small chunk (a random access) is read without any thread hop.

zarr picks a pipeline class from its ``codec_pipeline.path`` setting, for
every array of the process. :func:`zarr_manifest_store.registration.register`
(run by importing the package) registers both classes below and points that
setting at :class:`ManifestStorePipelines` unless the user chose a pipeline:
that class gives ManifestStore arrays a :class:`ManifestCodecPipeline` and
every other array zarr's default ``BatchedCodecPipeline``, so nothing
changes for other stores. A pipeline the user names in that setting decodes
ManifestStore arrays without the guards: it is the user's choice, and zarr gives
a store no say in it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import math
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Self

import numpy as np
from zarr.abc.codec import Codec, CodecPipeline, GetResult
from zarr.buffer import default_buffer_prototype
from zarr.storage import StorePath

from zarr_manifest_store._zarr import (
    ArrayConfig,
    ArraySpec,
    ArrayV3Metadata,
    BatchedCodecPipeline,
    ChunkTransform,
    FusedCodecPipeline,
    RegularChunkGridMetadata,
    decode_and_scatter_chunk,
    fused_read_pool,
)
from zarr_manifest_store.codecs import IntoDecoder
from zarr_manifest_store.errors import ManifestError
from zarr_manifest_store.guards import ChunkRefused, guard_codecs
from zarr_manifest_store.io.sources import READ_ALONE
from zarr_manifest_store.store import ManifestStore

if TYPE_CHECKING:
    from zarr.abc.buffer import Buffer, NDBuffer
    from zarr.abc.store import ByteGetter, Store

    from zarr_manifest_store._zarr import ArrayMetadata, SelectorTuple

__all__ = ["ManifestCodecPipeline", "ManifestStorePipelines"]

DECODE_AT_ONCE_BYTES = 64 << 10
"""A chunk read on its own is decoded on the event loop up to this stored size, else in a thread."""


@dataclasses.dataclass(frozen=True)
class ManifestCodecPipeline(FusedCodecPipeline):
    """zarr's fused pipeline, with four changes for reading archives.

    - Every chunk decodes through the chunk guards of :mod:`zarr_manifest_store.guards`
      (headers checked, output bounded by the chunk's size), and a chunk that fails to
      decode raises :class:`ManifestError` naming its array and key.
    - A read of remote chunks is a plan: every chunk of the selection goes to the store
      at once (coalesced per file across the whole selection, fetched concurrently),
      in windows that keep the stored bytes held within the store's read budget, and
      each chunk is decoded as its range arrives.
    - A read of a single small chunk is decoded without a thread hop.
    - A chunk of the commonest chains decodes outside the GIL, straight into the output
      (``into``: :class:`~zarr_manifest_store.codecs.IntoDecoder`, made once per array).
    """

    into: IntoDecoder | None = None

    @classmethod
    def from_codecs(cls, codecs: Iterable[Codec], *, batch_size: int | None = None) -> Self:
        return super().from_codecs(guard_codecs(codecs), batch_size=batch_size)

    def evolve_from_array_spec(self, array_spec: ArraySpec) -> Self:
        evolved = super().evolve_from_array_spec(array_spec)
        into = IntoDecoder.of(evolved.codecs)
        fits = into is not None and into.fits(array_spec)
        return dataclasses.replace(evolved, into=into if fits else None)

    async def read(
        self,
        batch_info: Iterable[tuple[ByteGetter, ArraySpec, SelectorTuple, SelectorTuple, bool]],
        out: NDBuffer,
        drop_axes: tuple[int, ...] = (),
    ) -> tuple[Any, ...]:
        batch = list(batch_info)
        decoding = self._decoding(batch)
        if decoding is None:
            with _naming(batch):
                return await super().read(batch, out, drop_axes)
        if len(batch) == 1:  # the whole selection: its read has nothing to be gathered with
            alone = READ_ALONE.set(True)
            try:
                return (await _read_one(batch[0], out, drop_axes, decoding),)
            finally:
                READ_ALONE.reset(alone)
        if not _reads_locally(batch[0][0]):
            return tuple(await _read_planned(batch, out, drop_axes, decoding))
        return await super().read(batch, out, drop_axes)

    def read_sync(
        self,
        batch_info: Iterable[tuple[ByteGetter, ArraySpec, SelectorTuple, SelectorTuple, bool]],
        out: NDBuffer,
        drop_axes: tuple[int, ...] = (),
        max_workers: int = 1,
    ) -> tuple[Any, ...]:
        """zarr's synchronous read (fetch, decode, place each chunk), naming a chunk that fails."""
        batch = list(batch_info)
        decoding = self._decoding(batch)
        if decoding is None:
            with _naming(batch):
                return super().read_sync(batch, out, drop_axes, max_workers)

        def read_one(item: _Item) -> Any:
            direct = _direct(item, out, drop_axes)
            if direct is not None and direct[0]._read_into_sync(item[0].path, direct[1]):
                return GetResult(status="present")
            raw = item[0].get_sync(prototype=item[1].prototype)
            return decoding.place(raw, out, item, drop_axes)

        if max_workers > 1 and len(batch) > 1:
            runs = fused_read_pool(max_workers).map(_each(read_one), _runs(batch, max_workers))
            return tuple(itertools.chain.from_iterable(runs))
        return tuple(map(read_one, batch))

    def _decoding(self, batch: list[_Item]) -> _Decoding | None:
        """How this read decodes each chunk itself; None where zarr's own read paths must."""
        transform = self.sync_transform
        if not batch or transform is None or self.supports_partial_decode:
            return None
        return _Decoding(transform, self.into)


TASKS_PER_WORKER = 8
"""A read of many chunks on the thread pool goes as about this many tasks a worker, each
reading a run of neighbouring chunks: enough to balance the workers, few enough that
handing tasks over (~15 µs each) costs nothing next to chunks of a few bytes."""


def _runs(batch: list[_Item], workers: int) -> list[list[_Item]]:
    """``batch`` cut into runs of neighbouring chunks, :data:`TASKS_PER_WORKER` a worker."""
    size = max(1, -(-len(batch) // (TASKS_PER_WORKER * workers)))
    return [batch[i : i + size] for i in range(0, len(batch), size)]


def _each(read_one: Callable[[_Item], Any]) -> Callable[[list[_Item]], list[Any]]:
    """``read_one`` applied to each chunk of a run, in order."""
    return lambda run: [read_one(item) for item in run]


class ManifestStorePipelines(CodecPipeline):
    """What zarr's ``codec_pipeline.path`` names once the package registered it: a chooser,
    never built.

    zarr asks it for each array it opens: a :class:`ManifestCodecPipeline`
    for an array of a ManifestStore, zarr's default ``BatchedCodecPipeline``
    for everything else (including pipelines nested in codecs).
    """

    @classmethod
    def from_array_metadata_and_store(cls, array_metadata: ArrayMetadata, store: Store) -> Any:
        if not isinstance(store, ManifestStore) or not isinstance(array_metadata, ArrayV3Metadata):
            raise NotImplementedError  # zarr then builds the pipeline from_codecs
        grid = array_metadata.chunk_grid
        # The chunk transform is shape-agnostic (each chunk's spec comes with the read);
        # as in zarr's own construction, a rectilinear grid gets a placeholder shape.
        chunk_shape = (
            grid.chunk_shape
            if isinstance(grid, RegularChunkGridMetadata)
            else (1,) * array_metadata.ndim
        )
        key = _pipeline_key(array_metadata, chunk_shape)
        pipeline = _PIPELINES.get(key)
        if pipeline is None:
            spec = ArraySpec(
                shape=chunk_shape,
                dtype=array_metadata.data_type,
                fill_value=array_metadata.fill_value,
                config=ArrayConfig.from_dict({}),
                prototype=default_buffer_prototype(),
            )
            pipeline = ManifestCodecPipeline.from_codecs(array_metadata.codecs)
            pipeline = pipeline.evolve_from_array_spec(spec)
            if len(_PIPELINES) >= MAX_KEPT_PIPELINES:
                _PIPELINES.clear()
            _PIPELINES[key] = pipeline
        return pipeline

    @classmethod
    def from_codecs(cls, codecs: Iterable[Codec], *, batch_size: int | None = None) -> Self:
        return BatchedCodecPipeline.from_codecs(codecs, batch_size=batch_size)  # type: ignore[return-value]


MAX_KEPT_PIPELINES = 256
"""Pipelines kept for reuse. Building one (guarding and evolving the codecs) costs about as
much as zarr's parse of the array's metadata, and the arrays of a file mostly share a few
codec chains: a hierarchy of 15,000 arrays builds a handful."""
_PIPELINES: dict[tuple[Any, ...], ManifestCodecPipeline] = {}


def _pipeline_key(metadata: ArrayV3Metadata, chunk_shape: tuple[int, ...]) -> tuple[Any, ...]:
    """What a pipeline is built from, each part by type and ``repr`` (codecs hold dicts, so
    they do not hash), a NumPy fill value by its bytes too (``-0.0`` is not ``0.0``, nor one
    NaN payload another)."""
    fill = metadata.fill_value
    return (
        tuple((type(c), repr(c)) for c in metadata.codecs),
        type(metadata.data_type),
        repr(metadata.data_type),
        type(fill),
        repr(fill),
        fill.tobytes() if isinstance(fill, np.generic) else None,
        tuple(chunk_shape),
    )


_Item = tuple["ByteGetter", "ArraySpec", "SelectorTuple", "SelectorTuple", bool]
"""One chunk of a read, as zarr hands it over: where its bytes are, its spec, which of its
elements the read wants, where they go in the output, and whether that is all of them."""


@dataclasses.dataclass(frozen=True)
class _Decoding:
    """How a read decodes and places its chunks: straight into the output where ``into``
    can (a chunk read whole into a C-contiguous block of it), else through ``transform``
    or ``into`` into a new array that zarr copies into place."""

    transform: ChunkTransform
    into: IntoDecoder | None

    def place(
        self, raw: Buffer | None, out: NDBuffer, item: _Item, drop_axes: tuple[int, ...]
    ) -> Any:
        """Decode the chunk ``raw`` of ``item`` into ``out``; a failure names the chunk."""
        byte_getter, spec, chunk_selection, out_selection, is_complete = item
        into = self.into
        if raw is not None and into is not None and is_complete and not drop_axes:
            region = _region(out, spec, out_selection)
            if region is not None:
                _named_decoder(into.decode_into, byte_getter)(raw, spec, region)
                return GetResult(status="present")
        decode = self.transform.decode_chunk if into is None else into.decode
        return decode_and_scatter_chunk(
            raw,
            out,
            chunk_spec=spec,
            chunk_selection=chunk_selection,
            out_selection=out_selection,
            drop_axes=drop_axes,
            decode=_named_decoder(decode, byte_getter),
        )


def _region(out: NDBuffer, spec: ArraySpec, out_selection: SelectorTuple) -> np.ndarray | None:
    """The place of a chunk read whole in ``out``, as a writable view of the chunk's shape: a
    C-contiguous block of as many elements (an indexed axis of length 1 dropped), of its data
    type (None if it is not one, or ``out`` is not a NumPy array)."""
    array = out.as_ndarray_like()
    if not isinstance(array, np.ndarray) or not all(type(s) is slice for s in out_selection):
        return None
    region = array[out_selection]
    if (
        not isinstance(region, np.ndarray)
        or region.size != math.prod(spec.shape)
        or region.dtype != spec.dtype.to_native_dtype()
        or not region.flags.c_contiguous
        or not region.flags.writeable
    ):
        return None
    return region.reshape(spec.shape)


def _direct(
    item: _Item, out: NDBuffer, drop_axes: tuple[int, ...]
) -> tuple[ManifestStore, np.ndarray] | None:
    """The store of a chunk read from its start and its place in ``out``, where the store
    may write the decoded chunk itself (``ManifestStore._read_into``: rows it joins,
    the last chunk's too, which the array's end cuts short); else None."""
    byte_getter, _, chunk_selection, out_selection, _ = item
    store = getattr(byte_getter, "store", None)
    if not isinstance(store, ManifestStore) or not store._joins_rows or drop_axes:
        return None
    array = out.as_ndarray_like()
    if (
        not isinstance(array, np.ndarray)
        or not isinstance(out_selection, tuple)  # points (vindex): one index
        or len(out_selection) != len(chunk_selection)
        or not all(type(s) is slice for s in out_selection)
        or not all(
            type(c) is slice and not c.start and c.step in (1, None) for c in chunk_selection
        )
    ):
        return None
    return store, array[out_selection]


async def _read_one(
    item: _Item, out: NDBuffer, drop_axes: tuple[int, ...], decoding: _Decoding
) -> Any:
    """A read of one chunk (a random access, a dask task): no thread hop unless it is big.

    The bytes come through the store's asynchronous ``get`` (local bytes in
    the page cache without a thread); a small chunk is then decoded at once,
    in less time than handing it to a thread would take.
    """
    direct = _direct(item, out, drop_axes)
    if direct is not None and await direct[0]._read_into(item[0].path, direct[1]):
        return GetResult(status="present")
    raw = await item[0].get(prototype=item[1].prototype)
    if raw is None or len(raw) <= DECODE_AT_ONCE_BYTES:
        return decoding.place(raw, out, item, drop_axes)
    return await asyncio.to_thread(decoding.place, raw, out, item, drop_axes)


async def _read_planned(
    batch: list[_Item], out: NDBuffer, drop_axes: tuple[int, ...], decoding: _Decoding
) -> list[Any]:
    """Read the remote chunks of one selection as one plan, its memory bounded.

    One blocking request per pool worker would serialise remote reads; here every chunk
    of a window is asked for in the same turn of the event loop, so the store gathers
    and coalesces them per file. Windows hold at most half the store's read budget of
    stored bytes each, and at most two are under way: the next one is fetched while the
    one before decodes, and a selection larger than the budget streams through it.
    """
    running: list[asyncio.Future[list[Any]]] = []
    results: list[Any] = []
    try:
        for window in _windows(batch):
            reads = (_read_one(item, out, drop_axes, decoding) for item in window)
            running.append(asyncio.gather(*reads))
            if len(running) == 2:
                results.extend(await running.pop(0))
        for window_reads in running:
            results.extend(await window_reads)
    except BaseException:
        for window_reads in running:
            window_reads.cancel()
        raise
    return results


def _windows(batch: list[Any]) -> Iterator[list[Any]]:
    """``batch`` in consecutive windows of at most half its store's read budget of stored
    bytes each (a single larger chunk is a window of its own)."""
    store = batch[0][0].store
    limit = max(1, store.sources.read_budget_bytes // 2)
    window: list[Any] = []
    held = 0
    for item in batch:
        size = store._stored_length(item[0].path)
        if window and held + size > limit:
            yield window
            window, held = [], 0
        window.append(item)
        held += size
    if window:
        yield window


def _reads_locally(byte_getter: ByteGetter) -> bool:
    """Whether a chunk's bytes come from local files or the document (not over a network)."""
    if not isinstance(byte_getter, StorePath) or not isinstance(byte_getter.store, ManifestStore):
        return True
    return byte_getter.store._reads_locally(byte_getter.path)


def _named_decoder(decode: Callable[..., Any], byte_getter: ByteGetter) -> Callable[..., Any]:
    """``decode`` (a decoding of the chunk ``byte_getter`` reads), its failure naming the chunk.

    Decoding is computation on bytes already read, so whatever it raises says the
    bytes are not what the array's codecs make: a ``ManifestError`` (but for a codec's
    library that is not installed, which the error names instead).
    """

    def named(*args: Any) -> Any:
        try:
            return decode(*args)
        except Exception as e:
            reason = str(e) if isinstance(e, ChunkRefused) else f"{type(e).__name__}: {e}"
            fix = "" if isinstance(e, ImportError) else _FIX
            raise ManifestError(f"{_chunk_name(byte_getter)}: {reason}{fix}") from e

    return named


_FIX = "; its reference in the document points at the wrong bytes, or the document is hostile"


@contextlib.contextmanager
def _naming(batch: list[tuple[ByteGetter, Any, Any, Any, bool]]) -> Iterator[None]:
    """Name the chunks of ``batch`` in a refusal raised by zarr's own read paths."""
    try:
        yield
    except ChunkRefused as e:
        names = ", ".join(_chunk_name(item[0]) for item in batch[:3])
        more = f" (or one of {len(batch) - 3} more)" if len(batch) > 3 else ""
        raise ManifestError(f"one of {names}{more}: {e}{_FIX}") from e


def _chunk_name(byte_getter: ByteGetter) -> str:
    """The array and chunk key of a ManifestStore chunk, as an error names them."""
    key = getattr(byte_getter, "path", None)
    store = getattr(byte_getter, "store", None)
    if not isinstance(key, str):
        return "a chunk"
    found = store._array_of(key) if isinstance(store, ManifestStore) else None
    if found is None:
        return f"chunk {key!r}"
    chunk = found[1]
    return f"array {key[: len(key) - len(chunk)].rstrip('/') or '/'!r}, chunk {chunk!r}"
