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
from zarr_manifest_store.xarray.open import Opener, virtual_dataset

__all__ = ["open_groups_as_dict", "open_virtual_datatree", "virtual_groups"]


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
    opener = Opener(
        group=group,
        drop_variables=drop_variables,
        loadable_variables=loadable_variables,
        decode_times=decode_times,
        storage_options=storage_options,
        scan_options=options,
    )
    return xr.DataTree.from_dict(virtual_groups(url, opener, allow))


def open_groups_as_dict(
    url: str | os.PathLike[str], *, allow: Sequence[str] | None = None, **options: Any
) -> dict[str, xr.Dataset]:
    """Each group as a virtual dataset, by its path in the tree (``"/"``, ``"/a"``, ``"/a/b"``);
    ``options`` are :func:`open_virtual_datatree`'s (the ``virtual`` engine's ``xr.open_groups``)."""
    return virtual_groups(url, Opener.of(options), allow)


def virtual_groups(
    url: str | os.PathLike[str], opener: Opener, allow: Sequence[str] | None = None
) -> dict[str, xr.Dataset]:
    """Each group of what ``url`` holds as ``opener`` opens a dataset, by its path in the tree."""
    path = os.fspath(url)
    if _is_document(path):
        store = ManifestStore.open(
            path, allow=allow, storage_options=opener.storage_options, **opener.scan_options
        )
        try:
            root = _drop(_subgroup(store.root, opener.group, path), opener.dropped)
            return _datasets(root, opener, store.sources)
        finally:
            store.close()
    if allow is not None:
        raise TypeError(
            f"allow= limits what a chunk-manifest document reads; {path!r} is a file to scan, "
            "which reads only itself: leave allow out"
        )
    scanned = scan(
        path,
        drop_variables=opener.dropped,
        storage_options=opener.storage_options,
        **opener.scan_options,
    )
    groups = _datasets(_subgroup(scanned, opener.group, path), opener, None)
    for ds in groups.values():
        ds.encoding["source"] = source_path(path)
    return groups


def _datasets(
    root: ManifestGroup, opener: Opener, sources: Sources | None
) -> dict[str, xr.Dataset]:
    """One virtual dataset per group of ``root``, by tree path."""
    load = opener.loadable_variables
    load = None if load is None else list(load)
    groups = [("/", root)] + [
        ("/" + path, node) for path, node in root.walk() if isinstance(node, ManifestGroup)
    ]
    return {
        path: virtual_dataset(
            node,
            loadable_variables=None if load is None else [n for n in load if n in node.arrays],
            decode_times=opener.decode_times,
            storage_options=opener.storage_options,
            sources=sources,
            max_index_elements=opener.max_index_elements,
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
