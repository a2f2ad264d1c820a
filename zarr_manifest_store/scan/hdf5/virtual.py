"""Virtual datasets whose sources tile the chunk grid: the sources' chunks, placed.

Each mapping must select a whole source dataset into one box of the virtual
dataset that starts on a chunk boundary; all sources must share chunk shape,
data type and codecs (as a stack of same-shaped files does). Anything else is
refused rather than approximated. A source file or dataset that does not exist
is refused too: HDF5 reads fill values there only until it appears (a path
moved, a file still being written), and a scan would keep them for good.
"""

from __future__ import annotations

import math
import os
from typing import Any, Protocol

import h5py
import numpy as np
from h5py import h5p, h5s

from zarr_manifest_store.array import ManifestArray
from zarr_manifest_store.manifest import INLINE, MISSING, ChunkCoords, ChunkManifest
from zarr_manifest_store.scan.common import Refused
from zarr_manifest_store.scan.hdf5.metadata import array_metadata, regular

__all__ = ["Unplaceable", "virtual_array"]


class Unplaceable(Refused):
    """A virtual dataset whose sources' chunks cannot be placed in one chunk grid (its values,
    read through HDF5, may still be stored inline)."""


class Describer(Protocol):
    """What placing sources needs from the describer of the virtual dataset's file."""

    path: str

    def source_array(self, source: str, ds: h5py.Dataset) -> ManifestArray:
        """Dataset ``ds`` of file ``source`` described whole (raises Refused)."""
        ...

    def manifest(
        self,
        paths: list[str],
        index: np.ndarray,
        offsets: np.ndarray,
        lengths: np.ndarray,
        inline: dict[ChunkCoords, bytes],
    ) -> ChunkManifest:
        """A manifest over ``paths``, each with its fingerprint."""
        ...


def virtual_array(
    ds: h5py.Dataset, dcpl: h5p.PropDCID, base: dict[str, Any], describer: Describer
) -> ManifestArray:
    """A virtual dataset as one array of its sources' chunks (raises Refused)."""
    pieces = [_piece(ds, dcpl, i, describer) for i in range(dcpl.get_virtual_count())]
    if not pieces:
        raise Unplaceable("is a virtual dataset without source mappings")
    first = pieces[0][1]
    chunk_shape = first.metadata.chunks
    for _, src in pieces:
        same = (src.metadata.chunks, src.metadata.codecs, src.metadata.data_type)
        if same != (chunk_shape, first.metadata.codecs, first.metadata.data_type):
            raise Unplaceable(
                "is a virtual dataset whose sources differ in chunk shape, data type or "
                "codecs, which one Zarr array cannot describe"
            )
    grid = tuple(-(-n // c) for n, c in zip(ds.shape, chunk_shape, strict=True))
    paths = sorted({p for _, src in pieces for p in src.manifest.paths})
    index = np.full(grid, MISSING, dtype=np.uint32)
    offsets = np.zeros(grid, dtype=np.uint64)
    lengths = np.zeros(grid, dtype=np.uint64)
    inline: dict[ChunkCoords, bytes] = {}
    for start, src in pieces:
        _place(src, start, chunk_shape, base["fill_value"], paths, (index, offsets, lengths))
        cell = tuple(s // c for s, c in zip(start, chunk_shape, strict=True))
        for coords, data in src.manifest.inline.items():
            inline[tuple(a + b for a, b in zip(cell, coords, strict=True))] = data
    metadata = array_metadata(
        {
            **base,
            "chunk_grid": regular(chunk_shape),
            "codecs": [c.to_dict() for c in first.metadata.codecs],
        }
    )
    manifest = describer.manifest(paths, index, offsets, lengths, inline)
    return ManifestArray(metadata=metadata, manifest=manifest)


def _place(
    src: ManifestArray,
    start: tuple[int, ...],
    chunk_shape: tuple[int, ...],
    fill: Any,
    paths: list[str],
    columns: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> None:
    """Write a source's chunk references into the virtual grid's columns at ``start``."""
    index, offsets, lengths = columns
    m = src.manifest
    cell = tuple(s // c for s, c in zip(start, chunk_shape, strict=True))
    region = tuple(slice(c, c + n) for c, n in zip(cell, m.shape, strict=True))
    if (index[region] != MISSING).any():
        raise Unplaceable("is a virtual dataset whose source mappings overlap")
    src_index = m.path_index
    if (src_index == MISSING).any() and src.metadata.to_dict()["fill_value"] != fill:
        raise Unplaceable(
            "is a virtual dataset with unwritten source chunks whose fill value differs "
            "from its own"
        )
    remap = np.array([paths.index(p) for p in m.paths] + [0], dtype=np.uint32)
    present = src_index < INLINE
    index[region] = np.where(present, remap[np.where(present, src_index, len(m.paths))], src_index)
    offsets[region] = m.offsets
    lengths[region] = m.lengths


def _piece(
    ds: h5py.Dataset, dcpl: h5p.PropDCID, i: int, describer: Describer
) -> tuple[tuple[int, ...], ManifestArray]:
    """Mapping ``i`` of a virtual dataset: where it starts, and its source described."""
    start, box = _box(dcpl.get_virtual_vspace(i), "selection", ds.shape)
    file_name = os.fsdecode(dcpl.get_virtual_filename(i))
    dataset_name = os.fsdecode(dcpl.get_virtual_dsetname(i))
    if "%" in file_name or "%" in dataset_name:
        raise Unplaceable("is a virtual dataset with printf-style source names")
    source = describer.path if file_name == "." else _source_path(ds, file_name)
    with h5py.File(source, "r") as f:
        src = f.get(dataset_name)
        if not isinstance(src, h5py.Dataset):
            raise Refused(
                f"is a virtual dataset whose source {source}:{dataset_name} is missing (HDF5 "
                "reads fill values there until it exists)"
            )
        src_start, src_box = _box(
            dcpl.get_virtual_srcspace(i), f"selection of {source}:{dataset_name}", src.shape
        )
        if any(src_start) or src_box != src.shape:
            raise Unplaceable(
                f"is a virtual dataset mapping part of {source}:{dataset_name}; only whole "
                "source datasets can be placed exactly"
            )
        lead = len(box) - len(src_box)  # a stack puts sources of rank n in a box of rank n+1
        if lead < 0 or any(n != 1 for n in box[:lead]) or box[lead:] != src_box:
            raise Unplaceable(f"is a virtual dataset that reshapes {source}:{dataset_name}")
        try:
            piece = _with_leading_axes(describer.source_array(source, src), lead)
        except Refused as e:
            raise Refused(
                f"is a virtual dataset whose source {source}:{dataset_name} {e}"
            ) from None
    for s, n, c, total in zip(start, box, piece.metadata.chunks, ds.shape, strict=True):
        if s % c or (n % c and s + n != total):
            raise Unplaceable(
                "is a virtual dataset whose source boxes do not fall on its chunk boundaries"
            )
    return start, piece


def _box(
    space: h5py.h5s.SpaceID, what: str, shape: tuple[int, ...]
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The start and shape of a selection of a ``shape`` space that is one solid box."""
    if space.get_select_type() == h5s.SEL_ALL:
        return (0,) * len(shape), tuple(shape)
    try:
        low, high = space.get_select_bounds()
    except Exception:  # an empty or unlimited selection has no bounds
        raise Unplaceable(f"is a virtual dataset whose {what} is empty or unlimited") from None
    shape = tuple(int(h) - int(lo) + 1 for lo, h in zip(low, high, strict=True))
    if math.prod(shape) != space.get_select_npoints():
        raise Unplaceable(f"is a virtual dataset whose {what} is not one solid box")
    return tuple(int(v) for v in low), shape


def _source_path(ds: h5py.Dataset, name: str) -> str:
    """Where HDF5 finds a virtual dataset's source file: the prefix, beside the file, or cwd."""
    if os.path.isabs(name) and os.path.exists(name):
        return name
    origin = os.path.dirname(os.path.abspath(ds.file.filename))
    prefix = os.fsdecode(ds.id.get_access_plist().get_virtual_prefix() or b"")
    prefix = (prefix or os.environ.get("HDF5_VDS_PREFIX", "")).replace("${ORIGIN}", origin)
    candidates = [os.path.join(prefix, name)] if prefix else []
    candidates += [os.path.join(origin, name), os.path.abspath(name)]
    for candidate in candidates:
        if os.path.exists(candidate):
            return os.path.abspath(candidate)
    raise Refused(
        f"is a virtual dataset whose source file {name!r} cannot be found (HDF5 reads fill "
        "values there until it exists): put it beside the file or set HDF5_VDS_PREFIX"
    )


def _with_leading_axes(array: ManifestArray, lead: int) -> ManifestArray:
    """``array`` with ``lead`` axes of length one put in front (chunks of one along them)."""
    if not lead:
        return array
    meta = array.metadata.to_dict()
    meta["shape"] = [1] * lead + list(meta["shape"])
    meta["chunk_grid"] = regular((1,) * lead + tuple(array.metadata.chunks))
    manifest = array.manifest.expand_dims(tuple(range(lead)))
    return ManifestArray(metadata=meta, manifest=manifest)
