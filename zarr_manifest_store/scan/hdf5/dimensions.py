"""netCDF-4 dimensions: dimension scales and phony dimensions, named as h5netcdf names them."""

from __future__ import annotations

import collections
import functools

import h5py
import numpy as np
from h5py import h5d, h5l

from zarr_manifest_store.scan.common import Refused, quoted
from zarr_manifest_store.scan.hdf5.headers import FileBytes
from zarr_manifest_store.scan.hdf5.objects import DANGLING_SCALE, Dataset, links, member
from zarr_manifest_store.scan.hdf5.parsed import header_dataset

__all__ = ["NOT_A_VARIABLE", "Dimensions", "dimension_only"]


NOT_A_VARIABLE = b"This is a netCDF dimension but not a netCDF variable."


class Dimensions:
    """The netCDF-4 dimensions of one group, named as h5netcdf names them.

    Dimension scales in the group are its dimensions; datasets whose axes
    have no scale get ``phony_dim_N`` dimensions, one per distinct axis size
    (as many as one dataset needs), numbered on from the phony dimensions of
    the groups above, as h5netcdf does when opening that group.
    """

    def __init__(
        self, h5group: h5py.Group, parent: Dimensions | None, headers: FileBytes | None = None
    ) -> None:
        self.group = h5group
        self.parent = parent
        self.headers = parent.headers if parent is not None else headers
        """The file's bytes, to describe datasets from their headers (None: through h5py)."""
        self.create_plist = h5group.id.get_create_plist()
        self.links = links(h5group, self.create_plist)
        """The group's links (name, link type, address), in h5py's order."""
        own = {address: name for name, kind, address in self.links if kind == h5l.TYPE_HARD}
        self.linked_names = collections.ChainMap(own, *([parent.linked_names] if parent else []))
        """Hard-link names of this group and the groups above it, by object address."""
        self.members = {
            name: self._member(name, kind, address) for name, kind, address in self.links
        }
        """What each link leads to, opened once for the scanner too (None: nothing)."""
        self.scales: dict[str, Dataset] = {}
        unlabeled: dict[int, int] = {}
        for name, obj in self.members.items():
            if not isinstance(obj, h5py.Dataset):
                continue
            if "CLASS" in obj.attributes and h5py.h5ds.is_scale(obj.id):
                self.scales[name] = obj  # its CLASS is "DIMENSION_SCALE"
            elif obj.ndim and obj.attached_scales is None:
                for size, count in _counts(obj.shape).items():
                    unlabeled[size] = max(unlabeled.get(size, 0), count)
        self.phony_start = parent.phony_end if parent else 0
        self.sizes: dict[str, int] = {}
        self.unlimited_sizes: dict[str, int] = {}
        """Lengths of the unlimited dimensions asked about, worked out once."""
        if unlabeled:
            self.sizes = {name: _scale_size(ds) for name, ds in self.scales.items()}
            labeled: dict[int, int] = {}
            for name, ds in self.scales.items():
                if ds.maxshape != (None,):
                    labeled[self.sizes[name]] = labeled.get(self.sizes[name], 0) + 1
            number = self.phony_start
            for size, count in unlabeled.items():
                for _ in range(labeled.get(size, 0), count):
                    self.sizes[f"phony_dim_{number}"] = size
                    number += 1
            self.phony_end = number
        else:
            self.phony_end = self.phony_start

    def _member(
        self, name: str | bytes, link_type: int, address: int
    ) -> h5py.Group | h5py.Dataset | h5py.Datatype | None:
        """What link ``name`` leads to: a dataset described from its header where it can
        be, else as h5py opens it."""
        found = None
        if self.headers is not None and link_type == h5l.TYPE_HARD:
            found = header_dataset(self.headers, self.group, self.group_name, name, address)
        if found is None:
            found = member(self.group, name)
        if isinstance(found, Dataset):
            found.linked_names = self.linked_names
        return found

    @functools.cached_property
    def group_name(self) -> str:
        return self.group.name

    @classmethod
    def of_ancestors(cls, h5group: h5py.Group, headers: FileBytes | None = None) -> Dimensions:
        """The dimensions of ``h5group``, with those of every group above it (``headers``:
        the file's bytes, to describe datasets from their headers)."""
        chain = []
        node = h5group
        while True:
            chain.append(node)
            if node.name == "/":
                break
            node = node.parent
        dims: Dimensions | None = None
        for node in reversed(chain):
            dims = cls(node, dims, headers)
        assert dims is not None
        return dims

    @functools.cached_property
    def all_names(self) -> frozenset[str]:
        """The names of the dimensions of this group and the groups above it."""
        names: set[str] = set()
        node: Dimensions | None = self
        while node is not None:
            names.update(node.scales)
            names.update(n for n in node.sizes if n.startswith("phony_dim_"))
            node = node.parent
        return frozenset(names)

    @functools.cached_property
    def names_by_size(self) -> dict[int, list[str]]:
        """The group's dimension names of each size, in order (what unnamed axes are matched to)."""
        by_size: dict[int, list[str]] = {}
        for name, size in self.sizes.items():
            by_size.setdefault(size, []).append(name)
        return by_size

    def names_of(self, ds: Dataset) -> list[str]:
        """A dataset's dimension names, bare (not group paths), as h5netcdf gives them."""
        if not ds.ndim:
            return []
        attrs = ds.attributes
        own = ds.name.split("/")[-1]
        if "_Netcdf4Coordinates" in attrs and own in self.scales:
            by_id = self.dimension_ids
            ids = [int(i) for i in np.asarray(attrs["_Netcdf4Coordinates"]).ravel()]
            if all(i in by_id for i in ids):
                return [by_id[i] for i in ids]
        labels = ds.attached_scales
        if labels is not None and None in labels:
            raise Refused(
                "has dimension scales on some axes and none on others, which netCDF-4 "
                "cannot name (h5netcdf refuses it too)"
            )
        if labels is not None:
            if DANGLING_SCALE in labels:
                raise Refused("has a dimension list that refers to a scale that no longer exists")
            if "" in labels:
                raise Refused("has a dimension scale that has no name in the file")
            return labels  # type: ignore[return-value]
        if own in self.all_names and ds.ndim == 1:  # a scale of more axes names none of them
            return [own]
        names = []
        seen: dict[int, int] = {}
        for size in ds.shape:
            candidates = self.names_by_size.get(size, [])
            if seen.get(size, 0) >= len(candidates):
                raise Refused(f"has an axis of length {size} that no dimension matches")
            names.append(candidates[seen.get(size, 0)])
            seen[size] = seen.get(size, 0) + 1
        return names

    def netcdf_shape(self, ds: Dataset, names: list[str]) -> list[int]:
        """The shape netCDF readers present: a variable on an unlimited dimension at that
        dimension's length (netCDF-C pads numbers, characters and strings with the fill value;
        h5netcdf only numbers, and fails on the others), other variables as stored."""
        shape = list(ds.shape)
        if (
            ds.create_plist.get_layout() != h5d.CHUNKED  # only chunked data can grow
            or None not in (ds.maxshape or ())
        ):
            return shape
        for axis, name in enumerate(names):
            if ds.maxshape[axis] is None:
                shape[axis] = max(shape[axis], self.unlimited_size(name))
        if shape != list(ds.shape) and ds.dtype.kind not in "fiuSO":
            raise Refused(
                f"is shorter than its unlimited dimension {quoted(names[_shorter(ds, shape)])}, "
                "which netCDF readers pad; the scan pads numbers and text only"
            )
        return shape

    def unlimited_size(self, name: str) -> int:
        """The length of dimension ``name`` (0 when no scale of that name is unlimited)."""
        node: Dimensions | None = self
        while node is not None:
            scale = node.scales.get(name)
            if scale is not None:
                if scale.maxshape != (None,):
                    return 0
                if name not in node.unlimited_sizes:
                    node.unlimited_sizes[name] = _scale_size(scale)
                return node.unlimited_sizes[name]
            node = node.parent
        return 0

    @functools.cached_property
    def dimension_ids(self) -> dict[int, str]:
        """Dimension names by netCDF-4 dimension id (``_Netcdf4Dimid``), read once per group."""
        ids: dict[int, str] = {}
        node: Dimensions | None = self
        seen: set[str] = set()
        while node is not None:
            for name, ds in node.scales.items():
                if name in seen:
                    continue
                seen.add(name)
                attrs = ds.attributes
                if "_Netcdf4Dimid" in attrs:
                    ids.setdefault(int(attrs["_Netcdf4Dimid"]), name)
            node = node.parent
        return ids


def dimension_only(ds: h5py.Dataset) -> bool:
    """A dimension scale netCDF-4 created only to define a dimension (h5netcdf leaves it out too)."""
    return NOT_A_VARIABLE in (h5py.h5ds.get_scale_name(ds.id) or b"")  # its NAME attribute


def _scale_size(scale: Dataset) -> int:
    """A dimension's size: an unlimited one is as long as the longest dataset using it."""
    size = scale.shape[0] if scale.ndim else 0
    if scale.maxshape == (None,):
        for ref, axis in scale.attributes.get("REFERENCE_LIST", []):
            size = max(size, scale.file[ref].shape[axis])
    return size


def _shorter(ds: Dataset, shape: list[int]) -> int:
    """The first axis along which ``ds`` is shorter than ``shape``."""
    return next(axis for axis, n in enumerate(ds.shape) if n < shape[axis])


def _counts(shape: tuple[int, ...]) -> dict[int, int]:
    counts: dict[int, int] = {}
    for n in shape:
        counts[n] = counts.get(n, 0) + 1
    return counts
