"""Remove the manifest parts a document no longer lists: replaced ones, and killed appends'.

Appends never change or remove a file, so that readers opened before keep
reading what they listed. Two kinds of files pile up under ``<array>/parts/``:
parts an append with ``on_overlap="replace"`` dropped from the list (each
marked when it was dropped, ``grow.RETIRED``), and parts written by an append
that was killed or lost a race before its commit (never listed). Pruning
removes those that the current root metadata does not list, once they have
been unlisted (dropped, or written) for ``older_than``: a reader that opened
the document within that time never lists them.
"""

from __future__ import annotations

import datetime
import os
import posixpath
from collections.abc import Mapping
from typing import Any

from zarr_manifest_store.document import wire
from zarr_manifest_store.document.commit import locked
from zarr_manifest_store.document.grow import RETIRED
from zarr_manifest_store.document.location import Location

__all__ = ["prune_parts"]


def prune_parts(
    url: str | os.PathLike[str],
    *,
    older_than: datetime.timedelta,
    storage_options: Mapping[str, Any] | None = None,
    dry_run: bool = False,
) -> list[str]:
    """Remove the files under each array's ``parts/`` folder of the document at ``url`` that
    its root metadata does not list, unlisted for at least ``older_than``; return their keys.

    A part dropped by a replacing append counts from when it was dropped, one
    never listed from when it was written. A reader that opened the document
    longer than ``older_than`` ago and still reads it may find such a part gone
    (``FileNotFoundError``): pick ``older_than`` longer than your readers stay
    open. ``dry_run=True`` only says what would go. Holds the document's lock
    (appends wait: they fail with ``FileExistsError`` and retry).

    >>> import zarr_manifest_store as zms
    >>> zms.write_manifest(zms.scan("data/era_2026-01-01.nc"), "pruned.zarr", mode="w")
    >>> zms.append_manifest(zms.scan("data/era_2026-01-02.nc"), "pruned.zarr", append_dim="time")
    >>> prune_parts("pruned.zarr", older_than=datetime.timedelta(days=7))
    []
    """
    if older_than < datetime.timedelta(0):
        raise ValueError(f"older_than must not be negative, got {older_than}")
    location = Location(url, storage_options)
    with locked(location, "prune the parts of"):
        arrays = _arrays(location)
        cutoff = datetime.datetime.now(datetime.UTC) - older_than
        gone: list[str] = []
        for path, metadata in arrays.items():
            gone.extend(_unlisted(location, path, metadata, cutoff))
        if not dry_run:
            location.remove(gone)
            if location.local:
                _remove_empty_folders(location, arrays)
    return gone


def _arrays(location: Location) -> dict[str, dict[str, Any]]:
    """The metadata of the document's arrays, by path, from its root (consolidated)."""
    where = location.where("zarr.json")
    root = wire.loads(location.read("zarr.json", FileNotFoundError), where)
    if wire.convert(root, wire.NodeHeader, where).node_type == "array":
        return {"": root}
    group = wire.convert(root, wire.GroupNode, where)
    if group.consolidated_metadata is None:
        raise ValueError(
            f"cannot prune the parts of {location.url}: its root {where} has no consolidated "
            "metadata (appended documents have it), so which parts it lists is not known"
        )
    members = group.consolidated_metadata.metadata.items()
    return {p: m for p, m in members if isinstance(m, dict) and m.get("node_type") == "array"}


def _unlisted(
    location: Location, path: str, metadata: dict[str, Any], cutoff: datetime.datetime
) -> list[str]:
    """The files of array ``path``'s parts folder that its metadata does not list and that
    have been unlisted since before ``cutoff``."""
    folder = posixpath.join(path, wire.PARTS_FOLDER)
    files = location.modified(folder)
    listed = _listed(location, path, metadata)
    units: dict[str, list[str]] = {}
    for key in files:
        name = key[len(folder) + 1 :].split("/", 1)[0]
        units.setdefault(name.removesuffix(RETIRED), []).append(key)
    gone: list[str] = []
    for name, keys in units.items():
        if name in listed:
            continue
        marker = f"{folder}/{name}{RETIRED}"
        since = files[marker] if marker in files else max(files[k] for k in keys)
        if since <= cutoff:
            gone.extend(sorted(keys))
    return gone


def _listed(location: Location, path: str, metadata: dict[str, Any]) -> set[str]:
    """The names, in the parts folder, of the parts the array's metadata lists."""
    where = location.where(posixpath.join(path, "zarr.json"))
    transformers = metadata.get("storage_transformers") or []
    names: set[str] = set()
    for transformer in transformers:
        if not isinstance(transformer, dict) or transformer.get("name") != wire.EXTENSION:
            continue
        config = wire.convert(
            transformer.get("configuration", {}), wire.TransformerConfig, where, "configuration"
        )
        for part in config.parts or ():
            folder, _, name = part.manifest.partition("/")
            if folder == wire.PARTS_FOLDER:
                names.add(name)
    return names


def _remove_empty_folders(location: Location, arrays: Mapping[str, Any]) -> None:
    """Local folders left empty under the arrays' parts folders (object stores have none)."""
    for path in arrays:
        top = os.path.join(location.url, *path.split("/"), wire.PARTS_FOLDER)
        for folder, _, _ in sorted(os.walk(top), key=lambda w: -len(w[0])):
            if folder != top and not os.listdir(folder):
                os.rmdir(folder)
