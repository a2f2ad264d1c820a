"""A chunked dataset's chunk index, read with ``chunk_iter`` in one pass into manifest columns,
and which of its chunks skipped a filter."""

from __future__ import annotations

import array
import ctypes
import math
from collections.abc import Callable
from typing import Any

import h5py
import numpy as np

from zarr_manifest_store.scan.common import Refused
from zarr_manifest_store.scan.hdf5.chunk_array import array_columns
from zarr_manifest_store.scan.hdf5.chunk_tree import LAYOUT_V3, btree_columns
from zarr_manifest_store.scan.hdf5.earray import Unswizzle, remap
from zarr_manifest_store.scan.hdf5.headers import Unrecognised
from zarr_manifest_store.scan.hdf5.library import query
from zarr_manifest_store.scan.hdf5.parsed import HeaderCreation

__all__ = ["chunk_columns", "edges_unfiltered"]

DONT_FILTER_PARTIAL_CHUNKS = 0x0002
"""HDF5's ``H5D_CHUNK_DONT_FILTER_PARTIAL_CHUNKS`` chunk option."""

type _Term = tuple[int, int, int, int]
"""An axis of more than one chunk, the multiplier and divisor of its offsets in the index, and
its extent in elements (the grid's)."""
type _Column = array.array
type _Skip = Callable[[int], None]
type _Callback = Callable[[Any], None]


def chunk_columns(
    ds: h5py.Dataset,
    chunks: tuple[int, ...],
    grid: tuple[int, ...],
    unfiltered_edges: bool = False,
) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Offsets and lengths of every stored chunk of ``ds`` in C order of ``grid`` (length 0:
    missing), and the flat indices of chunks whose filter mask is not zero, or
    (``unfiltered_edges``: see :func:`edges_unfiltered`) that the dataset's extent ends
    inside. A dataset described from its header whose index is a version 1 B-tree, a single
    chunk or a fixed array has it read from the file (:mod:`.chunk_tree`, :mod:`.chunk_array`)
    without opening the dataset; what those readers do not recognise, and every other
    dataset, is read with ``chunk_iter``."""
    read = _from_file(ds.create_plist, grid, ds.maxshape)
    offsets, lengths, skipped = read or _iterated(ds.id, chunks, grid, ds.maxshape)
    if unfiltered_edges:
        shape, already = ds.shape, set(skipped)
        for k in np.flatnonzero(np.frombuffer(lengths, np.uint32)):
            cell = np.unravel_index(k, grid)
            if k not in already and any(
                (c + 1) * s > n for c, s, n in zip(cell, chunks, shape, strict=True)
            ):
                skipped.append(int(k))
    # Copies: a view would keep the array.array and its buffer export alive, objects the garbage
    # collector walks on every full pass, a few per dataset in a scan of many.
    offsets_column = np.frombuffer(offsets, np.uint64).copy()
    return offsets_column, np.frombuffer(lengths, np.uint32).copy(), skipped


def _from_file(
    dcpl: h5py.h5p.PropDCID | HeaderCreation,
    grid: tuple[int, ...],
    maxshape: tuple[int | None, ...],
) -> tuple[_Column, _Column, list[int]] | None:
    """The columns read from a chunk index in the file, or None where the dataset has none
    that :mod:`.chunk_tree` and :mod:`.chunk_array` read, or one they do not recognise."""
    index = dcpl.index if isinstance(dcpl, HeaderCreation) else None
    try:
        if index is None:
            return None
        if index.layout[0] == LAYOUT_V3:
            return btree_columns(index.file, index.layout, index.dims, grid)
        return array_columns(index.file, index.layout, index.dims, grid, maxshape)
    except Unrecognised:
        return None


def _iterated(
    dsid: h5py.h5d.DatasetID,
    chunks: tuple[int, ...],
    grid: tuple[int, ...],
    maxshape: tuple[int | None, ...],
) -> tuple[_Column, _Column, list[int]]:
    """The columns read with ``chunk_iter`` (see :func:`chunk_columns`)."""
    # array.array takes item assignment faster than numpy and hands its buffer over without a
    # copy; HDF5 chunks are smaller than 4 GiB, so lengths fit 32 bits.
    n = math.prod(grid)
    offsets = array.array("Q", bytes(8 * n))
    lengths = array.array("I", bytes(4 * n))
    skipped: list[int] = []
    if n:
        unswizzle = remap(dsid, chunks, maxshape)
        if unswizzle is None:
            try:
                dsid.chunk_iter(_chunk_callback(chunks, grid, offsets, lengths, skipped.append))
            except IndexError:  # a chunk's flat index past the columns' end
                raise Refused("has a chunk outside its extent in its chunk index") from None
        else:
            _remapped(dsid, chunks, grid, unswizzle, (offsets, lengths, skipped))
        # a damaged index may list a chunk twice: the columns keep the last, HDF5's lookups one
        if np.count_nonzero(np.frombuffer(lengths, np.uint32)) != dsid.get_num_chunks():
            raise Refused("has a chunk listed twice in its chunk index")
    return offsets, lengths, skipped


def edges_unfiltered(dcpl: h5py.h5p.PropDCID | HeaderCreation) -> bool:
    """Whether HDF5 stores the dataset's partial edge chunks without its filters (the chunk
    option "don't filter partial edge chunks"), while reporting a filter mask of zero for
    them. Headers with that option are left to h5py (:mod:`.parsed`)."""
    if isinstance(dcpl, HeaderCreation) or not dcpl.get_nfilters():
        return False
    found = query("H5Pget_chunk_opts", dcpl.id, ctypes.c_uint)
    if found is None:
        raise Refused("has filters, and its chunk options cannot be read")
    return bool(found & DONT_FILTER_PARTIAL_CHUNKS)


def _remapped(
    dsid: h5py.h5d.DatasetID,
    chunks: tuple[int, ...],
    grid: tuple[int, ...],
    unswizzle: Unswizzle,
    columns: tuple[_Column, _Column, list[int]],
) -> None:
    """``chunk_iter`` into the columns, each reported offset corrected by ``unswizzle``."""
    offsets, lengths, skipped = columns
    outside: list[tuple[int, ...]] = []

    def on_chunk(info: Any) -> None:
        cell = unswizzle([o // c for o, c in zip(info[0], chunks, strict=True)])
        if any(i >= n for i, n in zip(cell, grid, strict=True)):
            outside.append(cell)
            return
        k = int(np.ravel_multi_index(cell, grid))
        offsets[k] = info[2]
        lengths[k] = info[3]
        if info[1]:
            skipped.append(k)

    dsid.chunk_iter(on_chunk)
    if outside:
        raise Refused(
            f"has {len(outside)} chunk(s) outside its extent (first at chunk {list(outside[0])}) "
            "by the coordinates of its extensible-array chunk index"
        )


def _chunk_callback(
    chunks: tuple[int, ...],
    grid: tuple[int, ...],
    offsets: _Column,
    lengths: _Column,
    skipped: _Skip,
) -> _Callback:
    """A ``chunk_iter`` callback that files each chunk at its C-order index in the grid.

    The callback runs once per chunk, so its Python cost is the scan's cost. A
    chunk offset ``o`` along an axis of chunk size ``c`` and grid stride ``s``
    adds ``o // c * s`` to the index, which is ``o * m // q`` with ``m / q``
    the reduced fraction ``s / c`` (exact, since ``c`` divides ``o``); axes of
    a single chunk add nothing (their offsets must be 0). A chunk off the grid raises
    IndexError. The callbacks for one, two and three such axes
    spell the sum out and keep everything in locals (default arguments): a
    loop over the axes costs about 10% of a scan, these about 2%.
    """
    terms = []
    for axis, (c, n) in enumerate(zip(chunks, grid, strict=True)):
        if n > 1:
            stride = math.prod(grid[axis + 1 :])
            common = math.gcd(stride, c)
            terms.append((axis, stride // common, c // common, n * c))
    make = _CALLBACKS.get(len(terms), _any_axes)
    return make(terms, offsets, lengths, skipped, len(terms) < len(grid))


# Each callback takes info = (chunk offset, filter mask, byte offset, size); indexing beats
# unpacking here. A damaged index may list a chunk off the grid, which HDF5's lookups never
# find: the first axis's overrun puts its index past the columns' end (an IndexError, as the
# callbacks raise for the others), the inner axes' is checked against their extent (``l``),
# and where there are axes of one chunk (``ones``) they must be at 0 (offsets are unsigned: their
# sum is the terms').


def _one_axis(
    terms: list[_Term], offsets: _Column, lengths: _Column, skip: _Skip, ones: bool
) -> _Callback:
    ((a, m, q, _),) = terms

    def on_chunk(info, offsets=offsets, lengths=lengths, skip=skip, a=a, m=m, q=q, ones=ones):
        o = info[0]
        x = o[a]
        if ones and sum(o) != x:
            raise IndexError("a chunk off the grid")
        k = x * m // q
        offsets[k] = info[2]
        lengths[k] = info[3]
        if info[1]:
            skip(k)

    return on_chunk


def _two_axes(
    terms: list[_Term], offsets: _Column, lengths: _Column, skip: _Skip, ones: bool
) -> _Callback:
    (a, m, q, _), (b, n, r, lb) = terms

    def on_chunk(
        info,
        offsets=offsets,
        lengths=lengths,
        skip=skip,
        a=a,
        m=m,
        q=q,
        b=b,
        n=n,
        r=r,
        lb=lb,
        ones=ones,
    ):
        o = info[0]
        x, y = o[a], o[b]
        if y >= lb or (ones and sum(o) != x + y):
            raise IndexError("a chunk off the grid")
        k = x * m // q + y * n // r
        offsets[k] = info[2]
        lengths[k] = info[3]
        if info[1]:
            skip(k)

    return on_chunk


def _three_axes(
    terms: list[_Term], offsets: _Column, lengths: _Column, skip: _Skip, ones: bool
) -> _Callback:
    (a, m, q, _), (b, n, r, lb), (c, p, s, lc) = terms

    def on_chunk(
        info,
        offsets=offsets,
        lengths=lengths,
        skip=skip,
        a=a,
        m=m,
        q=q,
        b=b,
        n=n,
        r=r,
        lb=lb,
        c=c,
        p=p,
        s=s,
        lc=lc,
        ones=ones,
    ):
        o = info[0]
        x, y, z = o[a], o[b], o[c]
        if y >= lb or z >= lc or (ones and sum(o) != x + y + z):
            raise IndexError("a chunk off the grid")
        k = x * m // q + y * n // r + z * p // s
        offsets[k] = info[2]
        lengths[k] = info[3]
        if info[1]:
            skip(k)

    return on_chunk


def _any_axes(
    terms: list[_Term], offsets: _Column, lengths: _Column, skip: _Skip, ones: bool
) -> _Callback:
    """Any number of axes (none, or more than three): a loop over them."""
    axes = tuple(terms)

    def on_chunk(info, offsets=offsets, lengths=lengths, skip=skip, axes=axes, ones=ones):
        o = info[0]
        k = total = 0
        for a, m, q, limit in axes:
            x = o[a]
            if x >= limit:
                raise IndexError("a chunk off the grid")
            k += x * m // q
            total += x
        if ones and sum(o) != total:
            raise IndexError("a chunk off the grid")
        offsets[k] = info[2]
        lengths[k] = info[3]
        if info[1]:
            skip(k)

    return on_chunk


_CALLBACKS = {1: _one_axis, 2: _two_axes, 3: _three_axes}
