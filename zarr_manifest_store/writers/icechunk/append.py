"""Appending to, or writing a region of, a dataset already in an Icechunk repository.

The new part is checked against what the repository holds as a combine would
check it: the stored array stands in as an input without references, so
``zms.concat`` checks dtype, codecs, fill value, chunking and CF attributes and
gives the grown metadata (rectilinear when the new part is ragged). Then the
coordinate along the dimension must continue monotonically, and arrays without
that dimension must hold the values already stored. Nothing is written unless
every array passes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import zarr

from zarr_manifest_store.array import ManifestArray, chunk_sizes, grid_shape
from zarr_manifest_store.group import ManifestGroup
from zarr_manifest_store.ops import describe_sources
from zarr_manifest_store.ops.appendable import (
    check_continues,
    check_unchanged_encoding,
    dimensions,
    grown,
    stand_in,
)
from zarr_manifest_store.ops.combinable import check_combinable
from zarr_manifest_store.store import ManifestStore
from zarr_manifest_store.writers.icechunk.write import (
    ArrayWrite,
    Plan,
    array_document,
    icechunk_store,
)

__all__ = ["append_plan", "region_plan", "stored_attributes"]


def append_plan(root: ManifestGroup, store: Any, prefix: str, append_dim: str) -> Plan:
    """What appending ``root`` along ``append_dim`` to the group at ``prefix`` writes."""
    stored = _stored_arrays(root, store, prefix, f"append along {append_dim!r}")
    if not any(append_dim in (a.dimension_names or ()) for a in root.arrays.values()):
        raise ValueError(
            f"cannot append along {append_dim!r}: no array of the new part has that dimension "
            f"(arrays: {sorted(root.arrays)})"
        )
    plan = Plan()
    for name, new in root.arrays.items():
        current = stored[name]
        dims = dimensions(name, new, current.metadata, "the repository")
        if append_dim not in dims:
            _check_unchanged(name, new, current)
            continue
        axis = dims.index(append_dim)
        metadata = grown(name, current.metadata, new, axis, _label(prefix, name))
        if name == append_dim:  # the dimension's coordinate
            tail = _stored_values(current, (slice(-2, None),))
            check_continues(name, tail, _values(name, new), append_dim, new, "the repository")
        path = _join(prefix, name)  # the stored array's attributes stay (the stand-in's)
        plan.documents[f"{path}/zarr.json"] = array_document(metadata)
        grid = grid_shape(current.metadata)
        offset = tuple(grid[k] if k == axis else 0 for k in range(len(grid)))
        plan.arrays.append(ArrayWrite(path, new.manifest, offset))
    return plan


def region_plan(root: ManifestGroup, store: Any, prefix: str, region: Mapping[str, slice]) -> Plan:
    """What writing ``root`` into ``region`` (one dimension and a slice of it) writes.

    Arrays with the dimension whose chunks tile the region get their chunks
    there replaced (a chunk the new part lacks is deleted: it reads as the fill
    value). Arrays without the dimension, and arrays whose chunks do not tile
    the region (a loaded coordinate stored as one chunk), must hold the values
    already stored there, and are left as they are.
    """
    if len(region) != 1:
        raise ValueError(
            f"region must name one dimension and a slice of it, e.g. {{'time': slice(48, 96)}}; "
            f"got {dict(region)!r}"
        )
    ((dim, where),) = region.items()
    stored = _stored_arrays(root, store, prefix, f"write region {dim}={where}")
    plan = Plan()
    for name, new in root.arrays.items():
        current = stored[name]
        dims = dimensions(name, new, current.metadata, "the repository")
        if dim not in dims:
            _check_unchanged(name, new, current)
            continue
        axis = dims.index(dim)
        try:
            check_combinable(
                [stand_in(current.metadata, _label(prefix, name)), new], axis, stacking=False
            )
            first_chunk = _region_chunks(name, new, current, axis, where)
        except ValueError as e:
            selection = tuple(where if k == axis else slice(None) for k in range(new.ndim))
            if not _same_values(current, selection, new):
                raise ValueError(f"cannot write array {name!r} into the region: {e}") from None
            continue
        offset = tuple(first_chunk if k == axis else 0 for k in range(new.ndim))
        plan.arrays.append(ArrayWrite(_join(prefix, name), new.manifest, offset, replace=True))
    return plan


def stored_attributes(store: Any, group: str | None) -> dict[str, dict[str, Any]]:
    """The attributes (and ``dtype``) of each array stored in ``group``, by name; none if absent."""
    store = icechunk_store(store)
    try:
        stored = zarr.open_group(
            store, path=(group or "").strip("/"), mode="r", use_consolidated=False
        )
    except FileNotFoundError:
        return {}
    return {name: {**a.attrs, "dtype": a.dtype} for name, a in stored.arrays()}


def _stored_arrays(
    root: ManifestGroup, store: Any, prefix: str, what: str
) -> dict[str, zarr.Array]:
    """The arrays stored in the group at ``prefix``; the same names as ``root``'s, or refused."""
    if root.groups:
        raise ValueError(
            f"cannot {what} with subgroups ({sorted(root.groups)}): write each group's "
            "dataset with its own to_icechunk(..., group=...)"
        )
    try:
        group = zarr.open_group(store, path=prefix, mode="r", use_consolidated=False)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"cannot {what}: the repository has no group {prefix or '/'!r}; write the first "
            "part without append_dim / region"
        ) from None
    stored = dict(group.arrays())
    missing, extra = sorted(stored.keys() - root.arrays.keys()), sorted(root.arrays.keys() - stored)
    if missing or extra:
        raise ValueError(
            f"cannot {what}: the new part must have the stored variables, no more, no fewer; "
            f"missing {missing}, not in the repository {extra}. Nothing was written"
        )
    return stored


def _region_chunks(
    name: str, new: ManifestArray, current: zarr.Array, axis: int, where: slice
) -> int:
    """The index of the region's first chunk along ``axis``, once the region fits the grid."""
    length = current.shape[axis]
    start, stop, step = where.indices(length)
    edges = chunk_sizes(current.metadata)[axis]
    bounds = np.concatenate([[0], np.cumsum(edges)]).tolist()
    if step != 1 or start not in bounds or (stop not in bounds and stop != length):
        raise ValueError(
            f"array {name!r}: region {where} along axis {axis} must start and stop on chunk "
            f"boundaries of the stored array ({bounds[:6]}...), with step 1"
        )
    first, last = bounds.index(start), len([b for b in bounds if b < stop])
    if new.shape[axis] != stop - start or tuple(edges[first:last]) != new.chunk_sizes[axis]:
        raise ValueError(
            f"array {name!r}: the new part ({describe_sources(new.manifest)}) has length "
            f"{new.shape[axis]} in chunks {new.chunk_sizes[axis]} along axis {axis}, but region "
            f"{where} holds {stop - start} in chunks {tuple(edges[first:last])}"
        )
    return first


def _check_unchanged(name: str, new: ManifestArray, current: zarr.Array) -> None:
    """An array without the dimension must be the stored one: same encoding, same values."""
    check_unchanged_encoding(name, current.metadata, new, _label("", name))
    if not _same_values(current, (), new):
        raise ValueError(
            f"cannot add to the dataset: array {name!r} ({describe_sources(new.manifest)}) differs "
            "from the one stored, and it has no dimension to add along; nothing was written"
        )


def _same_values(current: zarr.Array, selection: tuple[slice, ...], new: ManifestArray) -> bool:
    """Whether the stored values at ``selection`` are the new array's (encoded) values."""
    stored = _stored_values(current, selection)
    values = _values(current.basename, new)
    return stored.shape == values.shape and bool(
        np.array_equal(stored, values, equal_nan=stored.dtype.kind in "fc")
    )


def _stored_values(current: zarr.Array, selection: tuple[slice, ...]) -> np.ndarray:
    """Values the repository holds, read through Icechunk (its errors named as such)."""
    try:
        return np.asarray(current[selection])
    except Exception as e:  # Icechunk's own errors: an unauthorised container, a changed source
        raise ValueError(
            f"cannot compare array {current.path!r} with the new part: reading it from the "
            f"repository failed ({e}); open the repository with "
            "authorize_virtual_chunk_access for its sources"
        ) from e


def _values(name: str, array: ManifestArray) -> np.ndarray:
    """The stored (encoded) values of a new array, read through a ManifestStore."""
    store = ManifestStore(ManifestGroup(arrays={name: array}))
    return np.asarray(zarr.open_array(store, path=name, mode="r")[...])


def _join(prefix: str, name: str) -> str:
    return f"{prefix}/{name}" if prefix else name


def _label(prefix: str, name: str) -> str:
    """How the stored array is named among combine inputs."""
    return f"icechunk:{_join(prefix, name)}"
