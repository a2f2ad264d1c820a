"""Chunk coordinates of extensible-array chunk indexes, which HDF5 2.0 misreports.

A dataset with one unlimited axis, written in the 1.10 file format or later,
indexes its chunks with an extensible array, keyed by a linear index in which
the unlimited axis varies slowest ("swizzled" first). When that axis is not
the first, HDF5 2.0's ``H5Dchunk_iter`` and ``H5Dget_chunk_info`` report the
linear index unravelled in the dataset's own axis order instead: the axes
before the unlimited one read 0, the unlimited one and those after it the
digits of the linear index (the fixed axes counted over their maximum
extents). Reading through HDF5 is right; only these reports are wrong.

:func:`remap` says, for one dataset, how to turn a reported chunk offset into
the true one: not at all, or through :class:`Unswizzle`. Whether the library
misreports is found once per process by probing it on a small in-memory file,
so that a library that reports right is taken at its word; a library that
misreports otherwise refuses the datasets concerned.
"""

from __future__ import annotations

import ctypes
import functools
import math
from collections.abc import Sequence

import h5py
import numpy as np

from zarr_manifest_store.scan.common import Refused
from zarr_manifest_store.scan.hdf5.library import query

__all__ = ["Unswizzle", "remap"]

EARRAY = 4
"""``H5D_CHUNK_IDX_EARRAY`` of HDF5's ``H5D_chunk_index_t``."""


class Unswizzle:
    """Turns reported scaled chunk coordinates into true ones (see the module docstring)."""

    def __init__(self, unlimited: int, max_grid: Sequence[int]) -> None:
        self.unlimited = unlimited
        self.max_grid = tuple(max_grid)
        self.fixed = [a for a in range(len(max_grid)) if a != unlimited]

    def __call__(self, reported: Sequence[int]) -> tuple[int, ...]:
        u = self.unlimited
        if any(reported[:u]):
            raise Refused(
                f"has an extensible-array chunk index whose chunk coordinates {list(reported)} "
                "HDF5 reports in no form this scan knows"
            )
        linear = reported[u]
        for axis in range(u + 1, len(reported)):
            linear = linear * self.max_grid[axis] + reported[axis]
        true = [0] * len(reported)
        for axis in reversed(self.fixed):
            linear, true[axis] = divmod(linear, self.max_grid[axis])
        true[u] = linear
        return tuple(true)


def remap(
    dsid: h5py.h5d.DatasetID, chunks: tuple[int, ...], maxshape: tuple[int | None, ...]
) -> Unswizzle | None:
    """How to correct the chunk offsets HDF5 reports for ``dsid``, of maximum shape
    ``maxshape`` (h5py's: None for unlimited), (None: they are right; raises Refused when
    they are wrong in a way this module does not know)."""
    unlimited = [a for a, m in enumerate(maxshape) if m is None]
    if len(unlimited) != 1 or unlimited[0] == 0:
        return None
    max_grid = [1 if m is None else -(-m // c) for m, c in zip(maxshape, chunks, strict=True)]
    if math.prod(max_grid) == 1:  # one chunk across the fixed axes: nothing to swizzle
        return None
    behaviour = library_behaviour()
    if behaviour == "right":
        return None
    index_type = _index_type(dsid)
    if index_type is not None and index_type != EARRAY:
        return None
    if behaviour == "swizzled" and index_type == EARRAY:
        return Unswizzle(unlimited[0], max_grid)
    raise Refused(
        "has an extensible-array chunk index with its unlimited axis not first, whose chunk "
        "coordinates this HDF5 library may misreport"
    )


def _index_type(dsid: h5py.h5d.DatasetID) -> int | None:
    """The dataset's chunk index type (None: the library does not say)."""
    return query("H5Dget_chunk_index_type", dsid.id, ctypes.c_int)


@functools.cache
def library_behaviour() -> str:
    """How this HDF5 reports extensible-array chunk offsets: ``"right"``, ``"swizzled"``
    (the misreport described above), or ``"unknown"``; probed once on an in-memory file."""
    fapl = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
    fapl.set_fapl_core(backing_store=False)
    fapl.set_libver_bounds(h5py.h5f.LIBVER_LATEST, h5py.h5f.LIBVER_LATEST)
    fid = h5py.h5f.create(b"earray-probe", h5py.h5f.ACC_TRUNC, fapl=fapl)
    with h5py.File(fid) as f:
        shape, chunks = (4, 3), (2, 1)
        ds = f.create_dataset(
            "x", data=np.arange(12, dtype="<i8").reshape(shape), chunks=chunks, maxshape=(4, None)
        )
        f.flush()
        image = f.id.get_file_image()
        found: list[tuple[tuple[int, ...], tuple[int, ...]]] = []

        def on_chunk(info) -> None:
            first = int(np.frombuffer(image, "<i8", 1, info.byte_offset)[0])
            true = tuple(
                int(i) // c for i, c in zip(np.unravel_index(first, shape), chunks, strict=True)
            )
            found.append(
                (tuple(o // c for o, c in zip(info.chunk_offset, chunks, strict=True)), true)
            )

        ds.id.chunk_iter(on_chunk)
    if all(r == t for r, t in found):
        return "right"
    unswizzle = Unswizzle(1, (2, 1))
    if all(_safe(unswizzle, r) == t for r, t in found):
        return "swizzled"
    return "unknown"


def _safe(unswizzle: Unswizzle, reported: tuple[int, ...]) -> tuple[int, ...] | None:
    try:
        return unswizzle(reported)
    except Refused:
        return None
