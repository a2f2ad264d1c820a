"""``tree.virtualize``: a tree of virtual datasets as a ManifestGroup, a store, a document, refs, Icechunk.

Importing this module registers the accessor on every ``xr.DataTree``
through ``xr.register_datatree_accessor("virtualize")``; each node is stored
as ``ds.virtualize`` stores a dataset, its variables only (coordinates a node
inherits are its parent's).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import xarray as xr

from zarr_manifest_store.group import ManifestGroup
from zarr_manifest_store.store import ManifestStore
from zarr_manifest_store.writers.icechunk import to_icechunk
from zarr_manifest_store.writers.kerchunk import to_kerchunk
from zarr_manifest_store.xarray.accessor import (
    KerchunkFormat,
    References,
    Spec,
    serving,
    target,
    to_group,
    write_group,
)
from zarr_manifest_store.xarray.virtual import STORAGE_OPTIONS_KEY

__all__ = ["VirtualizeTreeAccessor", "tree_to_group"]


@xr.register_datatree_accessor("virtualize")
class VirtualizeTreeAccessor:
    """``tree.virtualize``: store, write or export a tree of virtual datasets.

    >>> tree = zms.open_virtual_datatree("data/era_2026-01-01.nc")
    >>> tree.virtualize.to_zarr("tree.zarr", mode="w")
    >>> xr.open_datatree("tree.zarr", engine="zarr_manifest", allow=["data/"])["t2m"].shape
    (24, 73, 144)
    """

    def __init__(self, tree: xr.DataTree) -> None:
        self._tree = tree

    def to_group(self) -> ManifestGroup:
        """The tree as a :class:`ManifestGroup` with one subgroup per child node."""
        return tree_to_group(self._tree)

    def to_store(
        self,
        *,
        storage_options: Mapping[str, Any] | None = None,
        allow: Sequence[str] | None = None,
        **store_options: Any,
    ) -> ManifestStore:
        """A read-only :class:`ManifestStore` serving the tree: ``xr.open_datatree`` reads it."""
        encoding = self._tree.dataset.encoding
        return serving(self.to_group(), encoding, storage_options, allow, store_options)

    def to_zarr(
        self,
        url: str | os.PathLike[str] | None = None,
        *,
        store: str | os.PathLike[str] | None = None,
        spec: Spec = "manifest",
        **writer_options: Any,
    ) -> None:
        """Write the whole tree at ``url`` (or ``store=``) as ``ds.virtualize.to_zarr`` writes one dataset."""
        write_group(self.to_group(), target(url, store), spec, writer_options)

    def to_kerchunk(
        self,
        url: str | os.PathLike[str] | None = None,
        format: KerchunkFormat | None = None,
        **options: Any,
    ) -> dict[str, Any] | None:
        """Kerchunk references of the whole tree (see ``ds.virtualize.to_kerchunk``)."""
        options.setdefault("source_options", self._tree.dataset.encoding.get(STORAGE_OPTIONS_KEY))
        return to_kerchunk(self.to_group(), url, format=format, **options)

    def to_icechunk(
        self, store: Any, group: str | None = None, *, mode: Literal["w-", "w"] = "w-"
    ) -> None:
        """Write the whole tree into an Icechunk session's store (see ``zms.to_icechunk``)."""
        to_icechunk(self.to_group(), store, group=group, mode=mode)

    @property
    def nrefs(self) -> int:
        """How many chunk references into source files the tree's virtual variables hold."""
        nodes = self.to_group().walk()
        return References.of(n for _, n in nodes if not isinstance(n, ManifestGroup))


def tree_to_group(tree: xr.DataTree) -> ManifestGroup:
    """A tree of virtual datasets as nested :class:`ManifestGroup`\\ s, one per node."""
    own = to_group(tree.to_dataset(inherit=False))
    children = {str(name): tree_to_group(child) for name, child in tree.children.items()}
    return own.replace(groups=children)
