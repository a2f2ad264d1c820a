"""Append new files' references to a stored chunk-manifest document, along one dimension.

The new part is checked against the document as a combine would check it
(``ops.appendable``): same arrays, dimensions, dtypes, codecs, CF attributes,
chunking off the dimension; the coordinate along it continuing; the other
arrays holding the values already stored. Then new manifest parts are written
under new names, the root ``zarr.json`` (whose consolidated metadata readers
open) is replaced in one rename or PUT, and the grown arrays' ``zarr.json``
after it, so a reader sees the old document or the new one, on a local file
system or object storage alike. The document's lock file makes a second append
at the same time fail cleanly instead of interleaving (``commit``).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from zarr_manifest_store import codecs
from zarr_manifest_store._zarr import ArrayV3Metadata
from zarr_manifest_store.array import ManifestArray, grid_shape
from zarr_manifest_store.document import wire
from zarr_manifest_store.document.commit import LOCK_FILE, commit_root, locked, root_version
from zarr_manifest_store.document.grow import grow_parts
from zarr_manifest_store.document.lazy import LazyChunkManifest
from zarr_manifest_store.document.location import Location
from zarr_manifest_store.document.read import read_document
from zarr_manifest_store.document.write import PathWriter, document_json
from zarr_manifest_store.group import ManifestGroup, root_of
from zarr_manifest_store.io.paths import source_path
from zarr_manifest_store.io.sources import Sources
from zarr_manifest_store.manifest import ChunkRef
from zarr_manifest_store.ops.appendable import (
    check_unchanged_encoding,
    dimensions,
    grown,
    overlap,
    truncated,
)
from zarr_manifest_store.ops.combinable import describe_paths

__all__ = ["LOCK_FILE", "append_manifest"]


def append_manifest(
    source: object,
    url: str | os.PathLike[str],
    *,
    append_dim: str,
    allow: Sequence[str] = (),
    storage_options: Mapping[str, Any] | None = None,
    on_overlap: str = "raise",
) -> None:
    """Add ``source`` (a ManifestGroup, or what serves one) to the document at ``url`` along
    the dimension ``append_dim``, without reading the document's manifests.

    Each grown array gets a new manifest part holding the new references; no
    stored manifest file changes, so readers that opened the document before
    keep reading what they opened. Checking the new part reads the last values
    of the stored coordinate along ``append_dim`` (as many as the new part
    has), and the values of arrays without it that do not reference the same
    bytes: from the document's folder, the new part's folders and the prefixes
    in ``allow``. A misfit raises ``ValueError`` naming the array and the
    attribute, and leaves the document as it was. New labels that do not lie
    past the stored ones are refused, unless ``on_overlap="replace"``: then they
    must repeat the stored coordinate's last labels exactly, and the new part
    replaces those chunks. Another append running on the same document raises
    ``FileExistsError`` (retry once it has finished). ``url`` is a folder, or a
    document on object storage (``s3://``, ``gs://``, ``az://``; ``storage_options``
    as for reading).

    >>> import zarr_manifest_store as zms
    >>> zms.write_manifest(zms.scan("data/era_2026-01-01.nc"), "days.zarr", mode="w")
    >>> append_manifest(zms.scan("data/era_2026-01-02.nc"), "days.zarr", append_dim="time")
    >>> zms.ManifestStore.open("days.zarr", allow=["data/"]).root["t2m"].shape
    (48, 73, 144)
    """
    new = root_of(source, "append_manifest")
    location = Location(url, storage_options)
    if not isinstance(new, ManifestGroup) or new.groups:
        raise ValueError(
            "append_manifest appends a ManifestGroup of arrays (a dataset), without subgroups; "
            "append each group's dataset to its own document"
        )
    with locked(location):
        _append(new, location, append_dim, allow, storage_options, on_overlap)


def _append(
    new: ManifestGroup,
    location: Location,
    append_dim: str,
    allow: Sequence[str],
    storage_options: Mapping[str, Any] | None,
    on_overlap: str,
) -> None:
    where = location.where("zarr.json")
    read_at = root_version(location)
    raw = wire.loads(location.read("zarr.json", FileNotFoundError), where)
    stored = read_document(location.url, storage_options=storage_options).root
    if not isinstance(stored, ManifestGroup) or stored.groups or "consolidated_metadata" not in raw:
        raise ValueError(
            f"cannot append to {location.url}: appending needs a document whose root is a group "
            "of arrays without subgroups, with consolidated metadata (as write_manifest writes it)"
        )
    _check_names(new, stored, location.url)
    if not any(append_dim in (a.dimension_names or ()) for a in new.arrays.values()):
        raise ValueError(
            f"cannot append along {append_dim!r}: no array of the new part has that dimension "
            f"(arrays: {sorted(new.arrays)})"
        )
    sources = _sources(new, location, allow, storage_options)
    try:
        grown_arrays = _check(new, stored, append_dim, sources, location.url, on_overlap)
    finally:
        sources.close()
    members = raw["consolidated_metadata"]["metadata"]
    writer = PathWriter(location, "auto")
    parts: dict[str, bytes] = {}
    arrays: dict[str, bytes] = {}
    for name, (metadata, axis, kept) in grown_arrays.items():
        old = stored.arrays[name]
        document, written = _grow(
            name, members[name], metadata, old.manifest.shape, new.arrays[name], axis, kept, writer
        )
        members[name] = document
        parts.update(written)
        arrays[f"{name}/zarr.json"] = document_json(document)
    location.write(parts)  # new names: no reader of the old root lists them
    commit_root(location, document_json(raw), read_at)  # readers switch to the new state
    location.write(arrays)  # after the commit: a writer that fails to commit changes none


def _check_names(new: ManifestGroup, stored: ManifestGroup, url: str) -> None:
    missing, extra = (
        sorted(stored.arrays.keys() - new.arrays),
        sorted(new.arrays.keys() - stored.arrays),
    )
    if missing or extra:
        raise ValueError(
            f"cannot append to {url}: the new part must have the document's arrays, no more, no "
            f"fewer; missing {missing}, not in the document {extra}. Nothing was written"
        )


def _check(
    new: ManifestGroup,
    stored: ManifestGroup,
    append_dim: str,
    sources: Sources,
    url: str,
    on_overlap: str,
) -> dict[str, tuple[ArrayV3Metadata, int, int]]:
    """The grown metadata, axis and kept chunks (along it) of each array along ``append_dim``;
    the others checked unchanged."""
    checked: dict[str, tuple[ArrayV3Metadata, int]] = {}
    for name, part in new.arrays.items():
        old = stored.arrays[name]
        dims = dimensions(name, part, old.metadata, url)
        if append_dim not in dims:
            check_unchanged_encoding(name, old.metadata, part, f"{url}/{name}")
            _check_same_values(name, old, part, sources, url)
            continue
        axis = dims.index(append_dim)
        checked[name] = (grown(name, old.metadata, part, axis, f"{url}/{name}"), axis)
    replaced = _replaced(new, stored, append_dim, sources, url, on_overlap)
    out: dict[str, tuple[ArrayV3Metadata, int, int]] = {}
    for name, (metadata, axis) in checked.items():
        old, part = stored.arrays[name], new.arrays[name]
        kept = old.metadata
        if replaced:
            kept = truncated(name, old.metadata, axis, old.shape[axis] - replaced)
            metadata = grown(name, kept, part, axis, f"{url}/{name}")
        out[name] = (metadata, axis, grid_shape(kept)[axis])
    return out


def _replaced(
    new: ManifestGroup,
    stored: ManifestGroup,
    append_dim: str,
    sources: Sources,
    url: str,
    on_overlap: str,
) -> int:
    """How many stored labels along ``append_dim`` the new part replaces; its coordinate must
    continue the stored one (reading as many stored values as the new part has)."""
    part, old = new.arrays.get(append_dim), stored.arrays.get(append_dim)
    if part is None or old is None or part.ndim != 1 or part.dimension_names != (append_dim,):
        return 0
    values = _values(part, sources)
    tail = _values(old, sources, last=max(len(values), 1))
    paths = dict.fromkeys(p for a in new.arrays.values() for p in a.manifest.paths)
    files = describe_paths(list(paths)) if paths else None
    return overlap(append_dim, tail, values, append_dim, part, url, files, on_overlap)


def _check_same_values(
    name: str, old: ManifestArray, part: ManifestArray, sources: Sources, url: str
) -> None:
    """An array without the dimension must reference the same bytes, or hold the same values."""
    if dict(old.manifest.items()) == dict(part.manifest.items()):
        return
    stored, values = _values(old, sources), _values(part, sources)
    if stored.shape == values.shape and np.array_equal(
        stored, values, equal_nan=stored.dtype.kind in "fc"
    ):
        return
    raise ValueError(
        f"cannot add to the document {url}: array {name!r} of the new part "
        f"({', '.join(part.manifest.paths) or 'inline data'}) holds other values than the one "
        "stored, and it has no dimension to append along; nothing was written"
    )


def _values(array: ManifestArray, sources: Sources, *, last: int | None = None) -> np.ndarray:
    """The stored (encoded) values of an array; with ``last``, only those of the chunks along
    axis 0 that hold its last ``last`` elements (reading only those chunks' references)."""
    manifest = array.manifest
    chunk_at = manifest.peek if isinstance(manifest, LazyChunkManifest) else manifest.get
    sizes = array.chunk_sizes
    starts = [np.concatenate([[0], np.cumsum(s)]).astype(int) for s in sizes]
    grid = array.manifest.shape
    first = 0
    if last is not None and array.ndim and grid[0]:
        position = max(array.shape[0] - last, 0)
        first = int(np.searchsorted(starts[0], position, side="right")) - 1
    shift = [int(starts[0][first]) if k == 0 else 0 for k in range(array.ndim)]
    shape = tuple(n - s for n, s in zip(array.shape, shift, strict=True))
    out = np.full(shape, array.fill_value, dtype=array.dtype)
    ranges = [range(first, n) if k == 0 else range(n) for k, n in enumerate(grid)]
    for coords in itertools.product(*ranges):
        chunk = chunk_at(coords)
        if chunk is None:
            continue
        raw = chunk if isinstance(chunk, bytes) else _read(sources, chunk)
        chunk_shape = tuple(s[c] for s, c in zip(sizes, coords, strict=True))
        block = codecs.decode_chunk(array.metadata, raw, chunk_shape)
        region = tuple(
            slice(int(s[c]) - d, min(int(s[c]) + n, extent) - d)
            for s, c, n, extent, d in zip(
                starts, coords, chunk_shape, array.shape, shift, strict=True
            )
        )
        out[region] = block[tuple(slice(0, r.stop - r.start) for r in region)]
    return out


def _read(sources: Sources, ref: ChunkRef) -> bytes:
    try:
        return bytes(sources.read_sync(ref.path, ref.offset, ref.length))
    except PermissionError as e:
        raise PermissionError(
            f"{e}; checking an append reads the stored coordinate's last values: pass "
            "allow=[...] with the folder of the document's sources"
        ) from None


def _sources(
    new: ManifestGroup,
    location: Location,
    allow: Sequence[str],
    storage_options: Mapping[str, Any] | None,
) -> Sources:
    """A reader of the document's folder, the new part's folders and ``allow``, checking the
    fingerprints both record."""
    fingerprints: dict[str, list[Any]] = {}
    folders = {location.url, *allow}
    for array in new.arrays.values():
        for path in array.manifest.paths:
            folders.add(source_path(path).rsplit("/", 1)[0] or "/")
        for path, fingerprint in array.manifest.fingerprints.items():
            fingerprints.setdefault(path, []).append(fingerprint)
    return Sources(storage_options, allow=sorted(folders), fingerprints=fingerprints)


def _grow(
    name: str,
    raw: dict[str, Any],
    metadata: ArrayV3Metadata,
    grid: tuple[int, ...],
    part: ManifestArray,
    axis: int,
    kept: int,
    writer: PathWriter,
) -> tuple[dict[str, Any], dict[str, bytes]]:
    """The grown array's ``zarr.json`` document and its new part's files."""
    (transformer,) = raw["storage_transformers"]
    config, files = grow_parts(
        writer, name, transformer["configuration"], grid, axis, part.manifest, kept
    )
    document = metadata.to_dict()
    document["attributes"] = raw.get("attributes", {})
    document["storage_transformers"] = [{**transformer, "configuration": config}]
    document[wire.GUARD] = raw.get(wire.GUARD, {"must_understand": True})
    return document, files
