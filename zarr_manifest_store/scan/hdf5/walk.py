"""The walk through an HDF5 file: groups, their links and members, each dataset's array metadata.

Links are followed in h5py's order; external links, dangling links and
datasets that cannot be described exactly (h5py's own errors about one
dataset included) are recorded as refusals; netCDF-4 dimension-only scales and
named data types are left out as h5netcdf leaves them out; names Zarr reserves
are escaped (``zarr_name``). A link back to a group being walked (a cycle of
hard or soft links) is refused: the tree it would describe has no end.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import h5py
from h5py import h5i, h5l

from zarr_manifest_store.array import ManifestArray
from zarr_manifest_store.group import ManifestGroup
from zarr_manifest_store.scan.common import (
    Refusals,
    Refused,
    quoted,
    with_stored_coordinates,
    zarr_name,
)
from zarr_manifest_store.scan.hdf5.attributes import Attributes, json_attributes
from zarr_manifest_store.scan.hdf5.dimensions import Dimensions, dimension_only
from zarr_manifest_store.scan.hdf5.layouts import Layouts
from zarr_manifest_store.scan.hdf5.metadata import CHUNK_KEY_ENCODING
from zarr_manifest_store.scan.hdf5.objects import Dataset

__all__ = ["NON_COORD_PREFIX", "Walk"]

NON_COORD_PREFIX = "_nc4_non_coord_"
"""netCDF-4's prefix of a variable that shares its name with a dimension it does not define."""


@dataclass
class Walk:
    """Walks the groups of one file, describing each dataset through ``layouts``."""

    layouts: Layouts
    refusals: Refusals
    dropped: set[str]
    walking: list[h5py.h5g.GroupID] = field(
        default_factory=list
    )  # the groups open, outermost first

    def group(self, h5group: h5py.Group, prefix: str, dims: Dimensions) -> ManifestGroup:
        """One group: its datasets as arrays, its subgroups recursively, its attributes."""
        self.walking.append(h5group.id)
        try:
            return self._members(h5group, prefix, dims)
        finally:
            self.walking.pop()

    def _members(self, h5group: h5py.Group, prefix: str, dims: Dimensions) -> ManifestGroup:
        arrays: dict[str, ManifestArray] = {}
        groups: dict[str, ManifestGroup] = {}
        for name, link_type, _ in dims.links:
            if isinstance(name, bytes):  # not UTF-8 (decoded_name): no Zarr name holds it
                shown = name.decode("utf-8", "replace")
                self.refusals.add(f"{prefix}{shown}", "has a name that is not UTF-8 text")
                continue
            rel = f"{prefix}{name}"
            if rel in self.dropped:
                continue
            if link_type == h5l.TYPE_EXTERNAL:
                link = h5group.get(name, getlink=True)
                self.refusals.add(
                    rel, f"is an external link to {link.filename}:{link.path}; scan that file"
                )
                continue
            obj = dims.members.pop(name)  # let go once described: not held to the group's end
            if isinstance(obj, h5py.Datatype):
                continue  # a named data type (a netCDF-4 enum type, say) is no dataset
            if obj is None:
                self.refusals.add(
                    rel, "is a link to an object that does not exist (or to soft links in a loop)"
                )
            elif isinstance(obj, h5py.Group) and (held_by := self._walking(obj)):
                self.refusals.add(
                    rel, f"is a link to the group {held_by!r} that holds it (a cycle of links)"
                )
            elif isinstance(obj, h5py.Group):
                groups[zarr_name(name)] = self.group(obj, f"{rel}/", Dimensions(obj, dims))
            elif isinstance(obj, h5py.Dataset) and not (
                name in dims.scales and dimension_only(obj)
            ):
                array_name = zarr_name(name.removeprefix(NON_COORD_PREFIX))
                try:
                    arrays[array_name] = self.array(obj, dims)
                except Refused as e:
                    self.refusals.add(rel, str(e) + _netcdf_variable(rel, name))
                except (OSError, RuntimeError, TypeError, ValueError) as e:
                    # HDF5 refusing to read something about this one dataset: refuse it alone
                    reason = f"cannot be read with h5py ({type(e).__name__}: {e})"
                    self.refusals.add(rel, reason + _netcdf_variable(rel, name))
        attributes = json_attributes(Attributes(h5group, dims.create_plist))
        return ManifestGroup(arrays=arrays, groups=groups, attributes=attributes)

    def _walking(self, obj: h5py.Group) -> str | None:
        """The path of ``obj`` if it is a group being walked (one that holds this link)."""
        for gid in self.walking:
            if obj.id == gid:
                return h5i.get_name(gid).decode("utf-8", "surrogateescape")
        return None

    def array(self, ds: Dataset, dims: Dimensions) -> ManifestArray:
        """One dataset as a ManifestArray (raises Refused)."""
        if ds.shape is None:
            raise Refused(
                "has a null dataspace (no shape and no values), which no Zarr array holds"
            )
        kind = ds.kind
        dcpl = ds.create_plist
        attributes = with_stored_coordinates(json_attributes(ds.attributes, kind.dtype))
        names = dims.names_of(ds)
        shape = dims.netcdf_shape(ds, names)
        fill_value = kind.fill_value_json(dcpl)
        if shape != list(ds.shape):  # netCDF pads it: chunks past the data read as its padding
            fill_value = kind.padding_json(dcpl, fill_value)
        base = {
            "shape": shape,
            "data_type": kind.zdtype.to_json(zarr_format=3),
            "chunk_key_encoding": CHUNK_KEY_ENCODING,
            "fill_value": fill_value,
            "attributes": attributes,
            "dimension_names": [zarr_name(n) for n in names],  # as their coordinates are named
        }
        return self.layouts.described(ds, kind, base, dcpl)


def _netcdf_variable(rel: str, name: str) -> str:
    """For a dataset netCDF-C named with its non-coordinate prefix, the variable's netCDF path,
    so that a refusal names the variable netCDF readers show (``" (netCDF variable 'g/x')"``)."""
    if not name.startswith(NON_COORD_PREFIX):
        return ""
    variable = rel.removesuffix(name) + name.removeprefix(NON_COORD_PREFIX)
    return f" (netCDF variable {quoted(variable)})"
