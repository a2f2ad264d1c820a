"""Every group of a file (or a document) as an ``xr.DataTree`` of virtual datasets.

A scanned HDF5 / netCDF-4 file keeps its nested groups; each group becomes a
virtual dataset as :func:`~zarr_manifest_store.open_virtual_dataset` makes
one (its dimension coordinates loaded), and the groups form a tree the way
``xr.open_datatree`` forms it. A chunk-manifest document opens the same way,
its sources read only under ``allow``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import xarray as xr

from zarr_manifest_store.group import ManifestGroup
from zarr_manifest_store.io.paths import is_local, local_path, source_path
from zarr_manifest_store.io.sources import Sources
from zarr_manifest_store.scan import scan
from zarr_manifest_store.store import ManifestStore
from zarr_manifest_store.xarray.open import virtual_dataset

__all__ = ["open_groups_as_dict", "open_virtual_datatree"]


def open_virtual_datatree(
    url: str | os.PathLike[str],
    *,
    group: str | None = None,
    drop_variables: str | Iterable[str] | None = None,
    loadable_variables: Iterable[str] | None = None,
    decode_times: Any = None,
    storage_options: Mapping[str, Any] | None = None,
    allow: Sequence[str] | None = None,
    **options: Any,
) -> xr.DataTree:
    """Open every group of a file, or of a chunk-manifest document, as a tree of virtual datasets.

    Like ``xr.open_datatree``, but each node's variables wrap ManifestArrays
    except ``loadable_variables`` (by default each group's dimension
    coordinates). ``group`` names the group to root the tree at. A document
    (a folder, or a URL ending in ``.zarr``) reads its sources only under its
    own folder and ``allow``; ``options`` go to the scanner of a file
    (``on_unsupported``, ...) or to the store of a document (``verify``, ...).
    ``tree.virtualize`` writes the tree back out.

    >>> tree = zms.open_virtual_datatree("data/era_2026-01-01.nc")
    >>> tree["t2m"].data
    ManifestArray<shape=(24, 73, 144), dtype=float32, chunks=(6, 73, 144), references=4>
    """
    groups = open_groups_as_dict(
        url,
        group=group,
        drop_variables=drop_variables,
        loadable_variables=loadable_variables,
        decode_times=decode_times,
        storage_options=storage_options,
        allow=allow,
        **options,
    )
    return xr.DataTree.from_dict(groups)


def open_groups_as_dict(
    url: str | os.PathLike[str],
    *,
    group: str | None = None,
    drop_variables: str | Iterable[str] | None = None,
    loadable_variables: Iterable[str] | None = None,
    decode_times: Any = None,
    storage_options: Mapping[str, Any] | None = None,
    allow: Sequence[str] | None = None,
    **options: Any,
) -> dict[str, xr.Dataset]:
    """Each group as a virtual dataset, by its path in the tree (``"/"``, ``"/a"``, ``"/a/b"``)."""
    path = os.fspath(url)
    drop = [drop_variables] if isinstance(drop_variables, str) else list(drop_variables or ())
    if _is_document(path):
        store = ManifestStore.open(path, allow=allow, storage_options=storage_options, **options)
        try:
            root = _drop(_subgroup(store.root, group, path), drop)
            return _datasets(root, loadable_variables, decode_times, storage_options, store.sources)
        finally:
            store.close()
    if allow is not None:
        raise TypeError(
            f"allow= limits what a chunk-manifest document reads; {path!r} is a file to scan, "
            "which reads only itself: leave allow out"
        )
    scanned = scan(path, drop_variables=drop, storage_options=storage_options, **options)
    root = _subgroup(scanned, group, path)
    groups = _datasets(root, loadable_variables, decode_times, storage_options, None)
    for ds in groups.values():
        ds.encoding["source"] = source_path(path)
    return groups


def _datasets(
    root: ManifestGroup,
    loadable_variables: Iterable[str] | None,
    decode_times: Any,
    storage_options: Mapping[str, Any] | None,
    sources: Sources | None,
) -> dict[str, xr.Dataset]:
    """One virtual dataset per group of ``root``, by tree path."""
    load = None if loadable_variables is None else list(loadable_variables)
    groups = [("/", root)] + [
        ("/" + path, node) for path, node in root.walk() if isinstance(node, ManifestGroup)
    ]
    return {
        path: virtual_dataset(
            node,
            loadable_variables=None if load is None else [n for n in load if n in node.arrays],
            decode_times=decode_times,
            storage_options=storage_options,
            sources=sources,
        )
        for path, node in groups
    }


def _subgroup(root: Any, group: str | None, path: str) -> ManifestGroup:
    """The group named ``group`` (``None`` or ``"/"``: the root) of what ``path`` holds."""
    name = (group or "").strip("/")
    node = root
    if name:
        try:
            node = root[name]
        except KeyError:
            raise KeyError(f"{path!r} has no group {group!r}") from None
    if not isinstance(node, ManifestGroup):
        raise ValueError(f"{group or '/'!r} of {path!r} is an array, not a group")
    return node


def _drop(root: ManifestGroup, names: list[str]) -> ManifestGroup:
    """``root`` without the arrays named ``names``, in any group."""
    if not names:
        return root
    return root.replace(
        arrays={k: a for k, a in root.arrays.items() if k not in names},
        groups={k: _drop(g, names) for k, g in root.groups.items()},
    )


def _is_document(path: str) -> bool:
    """Whether ``path`` names a chunk-manifest document: a folder, or a URL ending in ``.zarr``."""
    if is_local(path):
        return os.path.isdir(local_path(path))
    return path.rstrip("/").endswith(".zarr")
