"""The codec pipeline zarr uses for the arrays a ManifestStore serves.

zarr's default pipeline hops to a thread for every codec of every chunk and
copies each chunk into the output on its event loop thread; for archives of
many compressed chunks that scheduling costs more than the decoding. zarr's
opt-in ``FusedCodecPipeline`` instead fetches, decodes and places each chunk
in one synchronous call, on a thread pool. :class:`ManifestCodecPipeline` is
that pipeline, except that chunks of remote sources are fetched concurrently
(so that the store gathers and coalesces them) rather than one blocking
request per worker, and that a single small chunk (a random access) is read
without any thread hop.

zarr picks a pipeline class from its ``codec_pipeline.path`` setting, for
every array of the process. :func:`zarr_manifest_store.registration.register`
(run by importing the package) registers both classes below and points that
setting at :class:`ManifestStorePipelines` unless the user chose a pipeline:
that class gives ManifestStore arrays a :class:`ManifestCodecPipeline` and
every other array zarr's default ``BatchedCodecPipeline``, so nothing
changes for other stores.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import math
import zlib
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Self

from zarr.abc.buffer import Buffer
from zarr.abc.codec import Codec, CodecPipeline
from zarr.buffer import default_buffer_prototype
from zarr.codecs.numcodecs import Zlib
from zarr.storage import StorePath

from zarr_manifest_store._zarr import (
    ArrayConfig,
    ArraySpec,
    ArrayV3Metadata,
    BatchedCodecPipeline,
    ChunkTransform,
    FusedCodecPipeline,
    RegularChunkGridMetadata,
    async_read_fallback,
    decode_and_scatter_chunk,
)
from zarr_manifest_store.store import ManifestStore

if TYPE_CHECKING:
    from zarr.abc.buffer import NDBuffer
    from zarr.abc.store import ByteGetter, Store

    from zarr_manifest_store._zarr import ArrayMetadata, SelectorTuple

__all__ = ["ManifestCodecPipeline", "ManifestStorePipelines"]

DECODE_AT_ONCE_BYTES = 64 << 10
"""A chunk read on its own is decoded on the event loop up to this stored size, else in a thread."""


class ManifestCodecPipeline(FusedCodecPipeline):
    """zarr's fused pipeline, with three changes for reading archives.

    - Chunks of remote sources are fetched concurrently (the store coalesces
      them) and decoded in the pool as they arrive.
    - A read of a single small chunk is decoded without a thread hop.
    - ``numcodecs.zlib`` (HDF5's deflate) inflates in one step, into a buffer
      of the decoded chunk's size.
    """

    def evolve_from_array_spec(self, array_spec: ArraySpec) -> Self:
        evolved = super().evolve_from_array_spec(array_spec)
        if evolved.sync_transform is None:
            return evolved
        codecs = tuple(
            _SizedZlib(**c.codec_config) if type(c) is Zlib else c for c in evolved.codecs
        )
        return dataclasses.replace(evolved, sync_transform=ChunkTransform(codecs=codecs))

    async def read(
        self,
        batch_info: Iterable[tuple[ByteGetter, ArraySpec, SelectorTuple, SelectorTuple, bool]],
        out: NDBuffer,
        drop_axes: tuple[int, ...] = (),
    ) -> tuple[Any, ...]:
        batch = list(batch_info)
        if not batch or self.sync_transform is None or self.supports_partial_decode:
            return await super().read(batch, out, drop_axes)
        if len(batch) == 1:
            return (await _read_one(*batch[0], out, drop_axes, self.sync_transform),)
        if not _reads_locally(batch[0][0]):
            # One blocking request per pool worker would serialise remote reads; fetched
            # concurrently, the store gathers and coalesces them, and each chunk is
            # decoded in the pool as it arrives.
            return await async_read_fallback(self, batch, out, drop_axes)
        return await super().read(batch, out, drop_axes)


class _SizedZlib(Zlib, codec_name="zlib"):
    """``numcodecs.zlib``, inflated in one step: the output buffer is sized for the chunk.

    numcodecs inflates into a small buffer that grows (a copy per step and a
    final join); the size is only a hint, so any output length still decodes.
    """

    def _decode_sync(self, chunk_data: Buffer, chunk_spec: ArraySpec) -> Buffer:
        size = chunk_spec.dtype.to_native_dtype().itemsize * math.prod(chunk_spec.shape)
        inflated = zlib.decompress(chunk_data.as_numpy_array(), bufsize=max(size, 1))
        return chunk_spec.prototype.buffer.from_bytes(inflated)


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
        spec = ArraySpec(
            shape=chunk_shape,
            dtype=array_metadata.data_type,
            fill_value=array_metadata.fill_value,
            config=ArrayConfig.from_dict({}),
            prototype=default_buffer_prototype(),
        )
        pipeline = ManifestCodecPipeline.from_codecs(array_metadata.codecs)
        return pipeline.evolve_from_array_spec(spec)

    @classmethod
    def from_codecs(cls, codecs: Iterable[Codec], *, batch_size: int | None = None) -> Self:
        return BatchedCodecPipeline.from_codecs(codecs, batch_size=batch_size)  # type: ignore[return-value]


async def _read_one(
    byte_getter: ByteGetter,
    chunk_spec: ArraySpec,
    chunk_selection: SelectorTuple,
    out_selection: SelectorTuple,
    is_complete: bool,
    out: NDBuffer,
    drop_axes: tuple[int, ...],
    transform: ChunkTransform,
) -> Any:
    """A read of one chunk (a random access, a dask task): no thread hop unless it is big.

    The bytes come through the store's asynchronous ``get`` (local bytes in
    the page cache without a thread); a small chunk is then decoded at once,
    in less time than handing it to a thread would take.
    """
    raw = await byte_getter.get(prototype=chunk_spec.prototype)
    place = functools.partial(
        decode_and_scatter_chunk,
        raw,
        out,
        chunk_spec=chunk_spec,
        chunk_selection=chunk_selection,
        out_selection=out_selection,
        drop_axes=drop_axes,
        decode=transform.decode_chunk,
    )
    if raw is None or len(raw) <= DECODE_AT_ONCE_BYTES:
        return place()
    return await asyncio.to_thread(place)


def _reads_locally(byte_getter: ByteGetter) -> bool:
    """Whether a chunk's bytes come from local files or the document (not over a network)."""
    if not isinstance(byte_getter, StorePath) or not isinstance(byte_getter.store, ManifestStore):
        return True
    return byte_getter.store._reads_locally(byte_getter.path)
