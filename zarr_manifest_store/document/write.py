"""Write a ManifestGroup (or ManifestArray, or what serves one) as a chunk-manifest document."""

from __future__ import annotations

import base64
import json
import math
import os
import posixpath
from collections.abc import Mapping
from typing import Any, Literal

import msgspec
import numpy as np

from zarr_manifest_store._zarr import GroupMetadata
from zarr_manifest_store.array import ManifestArray
from zarr_manifest_store.document import columnar, wire
from zarr_manifest_store.document.location import Location
from zarr_manifest_store.group import ManifestGroup, root_of
from zarr_manifest_store.io.paths import source_path
from zarr_manifest_store.manifest import INLINE, MISSING, ChunkManifest, chunk_key

Encoding = Literal["auto", "json", "columnar"]
PathMode = Literal["auto", "relative", "absolute"]

AUTO_JSON_CHUNKS = 1024
"""With ``encoding="auto"``, arrays with at most this many chunks get the JSON encoding."""


def write_manifest(
    source: object,
    url: str | os.PathLike[str],
    *,
    encoding: Encoding | Mapping[str, Encoding] = "auto",
    paths: PathMode = "auto",
    storage_options: Mapping[str, Any] | None = None,
    mode: Literal["w-", "w"] = "w-",
) -> None:
    """Write ``source`` as a chunk-manifest document at ``url`` (a folder or any fsspec URL).

    ``source`` is a ManifestGroup, a ManifestArray, or a ManifestStore (its root).

    ``encoding`` picks each array's manifest encoding: ``"json"`` (readable,
    for small arrays), ``"columnar"`` (compressed Zarr arrays, loaded lazily, for
    millions of chunks), ``"auto"`` (JSON up to ``AUTO_JSON_CHUNKS`` chunks), or a
    mapping from array path to one of those. ``paths="auto"`` writes sources
    inside the document folder relative to it (so both can move together) and
    the others absolute; ``"relative"`` requires every source inside the folder,
    ``"absolute"`` never writes relative paths. ``mode="w-"`` refuses to replace
    an existing document, ``"w"`` replaces its files (and leaves other files,
    such as sources kept in the folder, alone).

    >>> import zarr_manifest_store as zms
    >>> zms.write_manifest(zms.scan("data/era_2026-01-01.nc"), "day1.zarr", mode="w")
    >>> store = zms.ManifestStore.open("day1.zarr", allow=["data/"])
    >>> sorted(store.root.arrays)
    ['lat', 'lon', 't2m', 'time', 'tp']
    """
    root = root_of(source, "write_manifest")
    if paths not in ("auto", "relative", "absolute"):
        raise ValueError(f"paths must be 'auto', 'relative' or 'absolute', got {paths!r}")
    if mode not in ("w-", "w"):
        raise ValueError(f"mode must be 'w-' or 'w', got {mode!r}")
    location = Location(url, storage_options)
    old = _document_files(location)
    if old and mode == "w-":
        raise FileExistsError(
            f"a chunk-manifest document already exists at {location.url}; pass mode='w' to replace it"
        )
    writer = _Writer(location, paths, encoding)
    nodes = [("", root)] if isinstance(root, ManifestArray) else [("", root), *root.walk()]
    _check_encoding_names(encoding, nodes)
    files: dict[str, bytes] = {}
    documents = _node_documents(root, nodes, writer, files)
    root_document = documents.pop("zarr.json")
    location.remove(sorted(set(old) - set(files) - set(documents) - {"zarr.json"}))
    location.write({**files, **documents})
    location.write({"zarr.json": root_document})  # last: a partial write leaves no document


def _check_encoding_names(
    encoding: Encoding | Mapping[str, Encoding], nodes: list[tuple[str, Any]]
) -> None:
    """Refuse an ``encoding`` mapping that names paths which are not arrays of the hierarchy."""
    if isinstance(encoding, Mapping):
        arrays = {path for path, node in nodes if isinstance(node, ManifestArray)}
        if unknown := set(encoding) - arrays:
            raise ValueError(
                f"encoding names {sorted(unknown)}, which are not arrays of the hierarchy "
                f"(its arrays: {sorted(arrays)})"
            )


def _node_documents(
    root: ManifestGroup | ManifestArray,
    nodes: list[tuple[str, Any]],
    writer: _Writer,
    files: dict[str, bytes],
) -> dict[str, bytes]:
    """Each node's ``zarr.json`` by its key (a group root's consolidating its members'); the
    arrays' manifest files go into ``files``."""
    metadata: dict[str, dict[str, Any]] = {}
    for path, node in nodes:
        if isinstance(node, ManifestArray):
            metadata[path] = writer.array(path, node, files)
        else:
            metadata[path] = GroupMetadata(attributes=dict(node.attributes)).to_dict()
    if isinstance(root, ManifestGroup):
        members = {p: m for p, m in metadata.items() if p}
        metadata[""] = {
            **metadata[""],
            "consolidated_metadata": {
                "kind": "inline",
                "must_understand": False,
                "metadata": members,
            },
        }
    return {
        posixpath.join(path, "zarr.json"): document_json(meta) for path, meta in metadata.items()
    }


def _document_files(location: Location) -> list[str]:
    """The files of an existing document at ``location`` (its nodes' metadata and manifests)."""
    keys = list(location.find())
    nodes = {posixpath.dirname(k) for k in keys if posixpath.basename(k) == "zarr.json"}
    if "" not in nodes:
        return []
    manifests = tuple(
        posixpath.join(n, folder) + "/"
        for n in nodes
        for folder in (wire.COLUMNAR_MANIFEST, wire.PARTS_FOLDER)
    )
    json_manifests = {posixpath.join(n, wire.JSON_MANIFEST) for n in nodes}
    return [
        k
        for k in keys
        if posixpath.basename(k) == "zarr.json" or k in json_manifests or k.startswith(manifests)
    ]


def document_json(document: dict[str, Any]) -> bytes:
    """A ``zarr.json`` as zarr writes it: indented, NaN and Infinity as literals."""
    return json.dumps(document, indent=2, allow_nan=True, default=_plain).encode()


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic | np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


class PathWriter:
    """Writes manifests' source paths as a document at ``location`` keeps them (``paths``)."""

    def __init__(self, location: Location, paths: PathMode) -> None:
        self.location = location
        self.paths = paths

    def columns(self, manifest: ChunkManifest) -> columnar.Columns:
        """The manifest as it is written: paths rewritten and deduplicated, inline bytes packed."""
        written = [self.path(p) for p in manifest.paths]
        table = list(dict.fromkeys(written))
        index = manifest.path_index
        if len(table) != len(written):
            row = {p: i for i, p in enumerate(table)}
            remap = np.array([row[p] for p in written], dtype=np.uint32)
            index = np.where(index < INLINE, remap[np.minimum(index, len(remap) - 1)], index)
        as_written = dict(zip(manifest.paths, written, strict=True))
        # a source no chunk reads (every chunk of it stored inline) is not listed in a JSON
        # manifest, so its fingerprint is not written either: readers refuse one for no path
        used = {written[i] for i in np.unique(manifest.path_index[manifest.path_index < INLINE])}
        sources: dict[str, wire.SourceFingerprint] = {}
        for path, fp in manifest.fingerprints.items():
            if as_written[path] in used:
                sources.setdefault(as_written[path], wire.SourceFingerprint.of(fp))
        lengths = manifest.lengths
        if lengths.size and int(lengths.max()) <= np.iinfo(np.uint32).max:
            lengths = lengths.astype(np.uint32)
        offsets = manifest.offsets
        blob = b""
        if manifest.inline:
            offsets, lengths = offsets.copy(), lengths.copy()
            pieces, position = [], 0
            for coords in sorted(manifest.inline):
                data = manifest.inline[coords]
                offsets[coords], lengths[coords] = position, len(data)
                pieces.append(data)
                position += len(data)
            blob = b"".join(pieces)
        return columnar.Columns(
            paths=table,
            sources=sources,
            path_index=np.asarray(index, dtype=np.uint32, order="C"),
            offset=offsets,
            length=lengths,
            inline=blob,
        )

    def path(self, path: str) -> str:
        """How a source path is written in the document."""
        absolute = source_path(path)
        if self.paths == "absolute":
            return absolute
        relative = self.location.relative(absolute)
        if relative is not None:
            return relative
        if self.paths == "relative":
            raise ValueError(
                f"source {path!r} lies outside the document folder {self.location.url}; "
                f"paths='relative' needs every source inside it (use paths='auto' to write "
                f"such sources as absolute paths)"
            )
        return absolute


class _Writer(PathWriter):
    def __init__(
        self, location: Location, paths: PathMode, encoding: Encoding | Mapping[str, Encoding]
    ) -> None:
        super().__init__(location, paths)
        self.encoding = encoding

    def array(self, path: str, array: ManifestArray, files: dict[str, bytes]) -> dict[str, Any]:
        """Add the array's manifest files to ``files``; return its ``zarr.json`` document."""
        manifest = array.manifest
        encoding = self._encoding(path, manifest)
        written = self.columns(manifest)
        config: dict[str, Any] = {"version": wire.version_text(), "encoding": encoding}
        if encoding == "json":
            if written.sources:
                config["sources"] = msgspec.to_builtins(written.sources)
            files[posixpath.join(path, wire.JSON_MANIFEST)] = json_manifest(written)
        else:
            files.update(columnar.encode(written, posixpath.join(path, wire.COLUMNAR_MANIFEST)))
        # Plain JSON: zarr consults its rectilinear flag only when it stores or parses metadata.
        document = array.metadata.to_dict()
        document["storage_transformers"] = [{"name": wire.EXTENSION, "configuration": config}]
        document[wire.GUARD] = {"must_understand": True}
        return document

    def _encoding(self, path: str, manifest: ChunkManifest) -> str:
        choice = self.encoding
        if isinstance(choice, Mapping):
            choice = choice.get(path, "auto")
        if choice not in ("auto", "json", "columnar"):
            raise ValueError(
                f"encoding for {path or 'the root array'!r} must be 'auto', 'json' or 'columnar', "
                f"got {choice!r}"
            )
        if choice == "auto":
            return "json" if math.prod(manifest.shape) <= AUTO_JSON_CHUNKS else "columnar"
        return choice


def json_manifest(columns: columnar.Columns, origin: tuple[int, ...] | None = None) -> bytes:
    """``manifest.json``: chunk keys to ``{path, offset, length}`` or ``{data}`` (base64); the
    keys shifted by ``origin`` (where the manifest's first chunk lies in a larger grid)."""
    entries: dict[str, wire.JsonEntry] = {}
    blob = columns.inline
    shift = np.asarray(origin or (0,) * columns.path_index.ndim, dtype=np.int64)
    for row in np.argwhere(columns.path_index != MISSING):
        coords = tuple(int(c) for c in row)
        key = chunk_key(tuple(int(c) for c in row + shift))
        i, offset, length = (
            int(columns.path_index[coords]),
            int(columns.offset[coords]),
            int(columns.length[coords]),
        )
        if i == INLINE:
            data = base64.standard_b64encode(blob[offset : offset + length]).decode()
            entries[key] = wire.JsonEntry(data=data)
        else:
            entries[key] = wire.JsonEntry(path=columns.paths[i], offset=offset, length=length)
    return wire.dumps(entries)
