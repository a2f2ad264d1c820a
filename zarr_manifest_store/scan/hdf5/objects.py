"""The objects of an open HDF5 file as a scan reads them: links in h5py's order, members
opened once, datasets whose properties are read once."""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from typing import Any

import h5py
import numpy as np
from h5py import h5, h5d, h5o, h5p, h5s

from zarr_manifest_store.scan.common import Refused
from zarr_manifest_store.scan.hdf5.attributes import Attributes, decoded_name
from zarr_manifest_store.scan.hdf5.datatypes import DataKind

__all__ = ["DANGLING_SCALE", "Dataset", "links", "member"]


def links(h5group: h5py.Group, gcpl: h5p.PropGCID) -> list[tuple[str, int, int]]:
    """The group's link names in h5py's order (creation order where tracked), with link
    types and (hard links) the addresses of their objects' headers."""
    tracked = gcpl.get_link_creation_order()
    order = h5.INDEX_CRT_ORDER if tracked & h5p.CRT_ORDER_TRACKED else h5.INDEX_NAME
    links: list[tuple[str, int, int]] = []
    h5group.id.links.iterate(
        lambda name, info: links.append((decoded_name(name), info.type, info.u)),
        idx_type=order,
        info=True,
    )
    return links


def member(
    h5group: h5py.Group, name: str | bytes
) -> h5py.Group | h5py.Dataset | h5py.Datatype | None:
    """The object a link leads to, as ``h5group.get(name)`` opens it (None: nothing there, or
    soft links that lead to each other).

    Opened with the low-level call ``get`` makes, without the File object it
    builds for each. Named data types (netCDF-4 enum types, say) are returned
    as h5py gives them, so that the scan can tell them from broken links.
    """
    try:
        oid = h5o.open(h5group.id, name.encode() if isinstance(name, str) else name)
    except (KeyError, RuntimeError):  # RuntimeError: soft links in a loop ("too many links")
        return None
    if isinstance(oid, h5d.DatasetID):
        return Dataset(oid, readonly=True)
    if isinstance(oid, h5py.h5g.GroupID):
        return h5py.Group(oid)
    if isinstance(oid, h5py.h5t.TypeID):
        return h5py.Datatype(oid)
    return None


class Dataset(h5py.Dataset):
    """An h5py Dataset of a file opened read-only, what a scan asks about it read once.

    h5py reads ``dtype`` / ``ndim`` / ``maxshape`` from the file on every
    access, and the scan asks for them, the creation properties, the
    attributes and the attached scales several times; none of them can change
    while the file is open read-only.
    """

    linked_names: Mapping[int, str] = {}
    """Names of the hard links listed so far, by the address of their objects: where a scale
    attached to this dataset is found by name (see ``_scale_name``)."""

    def __init__(self, bind: h5d.DatasetID, *, readonly: bool = False) -> None:
        # h5py's own __init__ also makes transfer properties, which only reading needs
        super(h5py.Dataset, self).__init__(bind)
        self._readonly = readonly
        self._cache_props: dict[str, Any] = {}

    @functools.cached_property
    def _dxpl(self) -> h5p.PropDXID:
        return h5p.create(h5p.DATASET_XFER)

    @functools.cached_property
    def _extent(self) -> tuple[int, tuple[int, ...] | None, tuple[int, ...] | None]:
        """Extent type, dimensions and maximum dimensions, read from one dataspace."""
        space = self.id.get_space()
        return (
            space.get_simple_extent_type(),
            space.get_simple_extent_dims(),
            space.get_simple_extent_dims(True),
        )

    @functools.cached_property
    def shape(self) -> tuple[int, ...] | None:
        return self._extent[1]

    @functools.cached_property
    def size(self) -> int | None:
        return None if self._extent[0] == h5s.NULL else math.prod(self._extent[1])

    @functools.cached_property
    def name(self) -> str | None:
        return super().name

    @functools.cached_property
    def kind(self) -> DataKind:
        """How its HDF5 type maps to Zarr (raises Refused), worked out once per type."""
        return DataKind.of(self.id.get_type())

    @functools.cached_property
    def dtype(self) -> np.dtype:
        try:
            return self.kind.stored
        except Refused:  # a type Zarr cannot hold may still have a NumPy form
            return self.id.dtype

    @functools.cached_property
    def create_plist(self) -> h5p.PropDCID:
        """The dataset creation properties: layout, chunks, filters, fill value, ..."""
        return self.id.get_create_plist()

    @functools.cached_property
    def ndim(self) -> int:
        return 0 if self.shape is None else len(self.shape)  # h5py's, a null dataspace's too

    @functools.cached_property
    def maxshape(self) -> tuple[int | None, ...] | None:
        dims = self._extent[2]
        return None if dims is None else tuple(None if n == h5s.UNLIMITED else n for n in dims)

    @functools.cached_property
    def attributes(self) -> Attributes:
        return Attributes(self, self.create_plist)

    @functools.cached_property
    def attached_scales(self) -> list[str | None] | None:
        """Per axis, the name of the last scale attached (see ``_attached_scale_names``)."""
        return _attached_scale_names(self, self.attributes, self.linked_names)


DANGLING_SCALE = "\x00dangling"
"""The name of an axis whose ``DIMENSION_LIST`` refers to a scale that no longer exists (no
HDF5 name holds a NUL)."""


def _attached_scale_names(
    ds: h5py.Dataset, attrs: Attributes, linked_names: Mapping[int, str]
) -> list[str | None] | None:
    """Per axis, the name of the last dimension scale attached (None: no scale on that axis).

    Several scales on one axis: the last one names it, as netCDF-C does; a scale
    without a name in the file gives "". None when no axis has a scale.
    ``H5DSiterate_scales`` walks the ``DIMENSION_LIST`` references in order
    without reading them as an attribute, which costs several times more.
    """
    if not ds.ndim or "DIMENSION_LIST" not in attrs:
        return None
    names: list[str | None] = []
    for axis in range(ds.ndim):
        if not h5py.h5ds.get_num_scales(ds.id, axis):  # iterating an empty axis is an error
            names.append(None)
            continue
        found: list[h5py.h5d.DatasetID] = []
        try:
            h5py.h5ds.iterate(ds.id, axis, found.append)  # append returns None: go on
        except RuntimeError:  # a reference to a scale deleted since
            names.append(DANGLING_SCALE)
            continue
        names.append(_scale_name(found[-1], linked_names))
    return None if all(n is None for n in names) else names


def _scale_name(scale: h5d.DatasetID, linked_names: Mapping[int, str]) -> str:
    """The last part of the path ``H5Iget_name`` gives the scale ("" where it has none).

    A scale reached through a reference has no path of its own: HDF5 searches
    the file for one, milliseconds in a group of thousands of datasets (a scan
    of them all took time quadratic in their number). A scale with a single
    hard link, listed already (``linked_names``), has that link's name.
    """
    info = h5o.get_info(scale)
    if info.rc == 1 and info.addr in linked_names:
        return linked_names[info.addr]
    path = h5py.h5i.get_name(scale)
    return path.decode().rsplit("/", 1)[-1] if path else ""
