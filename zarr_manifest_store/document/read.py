"""Read a stored chunk-manifest document into a hierarchy, reading only its metadata.

The root ``zarr.json`` carries consolidated metadata, so reading costs one
read; a document without it (prior art) is walked folder by folder. Each
array's ``storage_transformers`` must name the chunk-manifest extension, whose
configuration says how its manifest is encoded; the manifest itself is read
lazily (:class:`LazyChunkManifest`). The arrays' metadata is kept without the
transformer, since zarr-python would otherwise refuse it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from zarr_manifest_store import codecs
from zarr_manifest_store.array import ManifestArray, parse_array_metadata
from zarr_manifest_store.document import wire
from zarr_manifest_store.document.assembly import Limits
from zarr_manifest_store.document.columnar import ColumnarReader
from zarr_manifest_store.document.lazy import LazyChunkManifest
from zarr_manifest_store.document.loaders import ColumnarLoader, JsonLoader, Resolver
from zarr_manifest_store.document.location import MAX_METADATA_BYTES, Location, check_relative
from zarr_manifest_store.document.parts import (
    Part,
    PartedChunkManifest,
    PartsLoader,
    check_parts,
    part_grid,
)
from zarr_manifest_store.errors import ManifestError
from zarr_manifest_store.group import ManifestGroup

__all__ = [
    "MAX_CHUNKS",
    "MAX_INDEX_ELEMENTS",
    "MAX_METADATA_BYTES",
    "Document",
    "check_index_coordinates",
    "read_document",
]

MAX_CHUNKS = 2**27
"""Default limit on the chunks of one array: a larger grid is refused before anything is built."""
MAX_DEPTH = 32
"""How deep a document's hierarchy may be: a node path has at most this many names."""
MAX_NODES = 100_000
"""How many nodes a document may have."""
MAX_INDEX_ELEMENTS = 2**24
"""Default limit on a dimension coordinate's elements: ``xr.open_dataset`` loads those whole
at open (128 MiB of float64 at this limit), whatever the document's size."""


@dataclass(frozen=True)
class Document:
    """A chunk-manifest document as read: its hierarchy, and what reading its sources needs.

    ``allow`` holds the prefixes the document itself vouches for: its own
    folder, against which its relative paths were resolved. Its absolute
    paths point wherever the document says, so a reader allows those
    separately (``ManifestStore.open(url, allow=...)``).
    """

    root: ManifestGroup | ManifestArray
    allow: tuple[str, ...]


def read_document(
    url: str | os.PathLike[str],
    *,
    storage_options: Mapping[str, Any] | None = None,
    max_chunks: int = MAX_CHUNKS,
    max_metadata_bytes: int = MAX_METADATA_BYTES,
    load: bool = False,
    limits: Limits | None = None,
) -> Document:
    """Read the chunk-manifest document at ``url`` (a folder or fsspec URL).

    Relative paths in it are resolved against its folder and may not leave
    it. ``storage_options`` configure fsspec for the document (one dict, or a
    mapping from URL prefix to options). Manifests are read when first
    needed, unless ``load=True``, which reads and validates them all now.
    ``max_chunks`` caps one array's chunk grid, ``max_metadata_bytes`` one
    file of the document (each is read only if it is a regular file inside the
    folder); ``limits`` what loading one manifest may cost. ``ManifestStore.open``
    serves what this reads.

    >>> import zarr_manifest_store as zms
    >>> zms.write_manifest(zms.scan("data/era_2026-01-02.nc"), "day2.zarr", mode="w")
    >>> document = read_document("day2.zarr")
    >>> sorted(document.root.arrays), document.allow == (os.path.abspath("day2.zarr"),)
    (['lat', 'lon', 't2m', 'time', 'tp'], True)
    """
    location = Location(url, storage_options, max_metadata_bytes)
    root = _Reader(location, Resolver(location), max_chunks, limits or Limits()).root()
    if load:
        nodes = [root] if isinstance(root, ManifestArray) else [n for _, n in root.walk()]
        for node in nodes:
            if isinstance(node, ManifestArray) and isinstance(node.manifest, LazyChunkManifest):
                node.manifest.load()
    return Document(root=root, allow=(location.url,))


def check_index_coordinates(root: ManifestGroup | ManifestArray, limit: int, where: str) -> None:
    """Refuse a dimension coordinate of more than ``limit`` elements: xarray loads those whole
    when it opens their group, so a tiny document could declare gigabytes of fill values."""
    nodes = [("", root)] if isinstance(root, ManifestArray) else root.walk()
    for path, node in nodes:
        name = path.rpartition("/")[2]
        coordinate = isinstance(node, ManifestArray) and node.dimension_names == (name,)
        if coordinate and node.shape[0] > limit:
            raise ManifestError(
                f"{where}: array {path!r} is a dimension coordinate of {node.shape[0]:,} "
                f"elements, more than max_index_elements={limit:,} (xarray loads it whole "
                f"at open); pass a larger max_index_elements to ManifestStore.open or "
                f"xr.open_dataset to open it"
            )


class _Reader:
    """Builds the hierarchy of one document."""

    def __init__(
        self, location: Location, resolver: Resolver, max_chunks: int, limits: Limits
    ) -> None:
        self.location = location
        self.resolver = resolver
        self.max_chunks = max_chunks
        self.limits = limits

    def root(self) -> ManifestGroup | ManifestArray:
        where = self.location.where("zarr.json")
        try:
            data = self.location.read("zarr.json", missing=FileNotFoundError)
        except FileNotFoundError:
            raise FileNotFoundError(
                f"no chunk-manifest document at {self.location.url}: {where} does not exist"
            ) from None
        meta = wire.loads(data, where)
        header = wire.convert(meta, wire.NodeHeader, where)
        if header.node_type == "array":
            return self._array("", meta, where, "")
        group = wire.convert(meta, wire.GroupNode, where)
        if group.consolidated_metadata is not None:
            members = {
                path: (meta, where, f"consolidated_metadata.metadata[{path!r}]")
                for path, meta in group.consolidated_metadata.metadata.items()
            }
        else:
            members = {
                path: (meta, self.location.where(f"{path}/zarr.json"), "")
                for path, meta in self._walk("", 0)
            }
        return self._hierarchy(group.attributes, members, where)

    def _read_json(self, key: str) -> Any:
        return wire.loads(self.location.read(key), self.location.where(key))

    def _walk(self, prefix: str, depth: int) -> Any:
        """``(path, metadata)`` of every node below ``prefix``, from the folders' zarr.json files."""
        if depth >= MAX_DEPTH:
            raise ManifestError(
                f"{self.location.where(prefix)}: the hierarchy is deeper than MAX_DEPTH={MAX_DEPTH} "
                f"levels (zarr_manifest_store.document.read.MAX_DEPTH)"
            )
        for name in self.location.subfolders(prefix):
            path = f"{prefix}/{name}" if prefix else name
            if not self.location.exists(f"{path}/zarr.json"):
                continue
            meta = self._read_json(f"{path}/zarr.json")
            yield path, meta
            if isinstance(meta, dict) and meta.get("node_type") == "group":
                yield from self._walk(path, depth + 1)

    def _hierarchy(
        self,
        attributes: dict[str, Any],
        members: Mapping[str, tuple[Any, str, str]],
        where: str,
    ) -> ManifestGroup:
        """The group tree from ``{path: (metadata, file, field)}``, parents checked before children."""
        if len(members) > MAX_NODES:
            raise ManifestError(f"{where}: more than {MAX_NODES} nodes")
        groups: dict[str, dict[str, Any]] = {"": {"attributes": attributes, "children": {}}}
        for path in sorted(members, key=lambda p: (p.count("/"), p)):
            meta, file, at = members[path]
            parent, _, name = path.rpartition("/")
            _check_node_path(path, f"{file}: field {at}" if at else file)
            if parent not in groups:
                raise ManifestError(
                    f"{file}: field {at}: its parent {parent!r} is not a group of the document"
                )
            header = wire.convert(meta, wire.NodeHeader, file, at)
            if header.node_type == "array":
                groups[parent]["children"][name] = self._array(path, meta, file, at)
            else:
                group = wire.convert(meta, wire.GroupNode, file, at)
                groups[path] = {"attributes": group.attributes, "children": {}}
                groups[parent]["children"][name] = groups[path]
        return self._group(groups[""], where)

    def _group(self, spec: dict[str, Any], where: str) -> ManifestGroup:
        children = spec["children"]
        try:
            return ManifestGroup(
                arrays={k: v for k, v in children.items() if isinstance(v, ManifestArray)},
                groups={
                    k: self._group(v, where) for k, v in children.items() if isinstance(v, dict)
                },
                attributes=spec["attributes"],
            )
        except (TypeError, ValueError) as e:
            raise ManifestError(f"{where}: {e}") from None

    def _array(self, path: str, meta: dict[str, Any], where: str, at: str) -> ManifestArray:
        """The array at ``path`` from its metadata, found at field ``at`` of the file ``where``."""
        header = wire.convert(meta, wire.ArrayHeader, where, at)
        grid = self._grid(header, where, at)
        transformers = header.storage_transformers
        if len(transformers) != 1:
            raise ManifestError(
                f"{where}: field {wire.join(at, 'storage_transformers')}: a chunk-manifest array "
                f"declares exactly one storage transformer, {wire.EXTENSION!r}; found "
                f"{[t.name for t in transformers]}"
            )
        loader = self._loader(
            path, transformers[0], grid, where, wire.join(at, "storage_transformers[0]")
        )
        plain = {k: v for k, v in meta.items() if k not in ("storage_transformers", wire.GUARD)}
        codecs.validate(plain, where, wire.join(at, "codecs"))
        manifest = (
            PartedChunkManifest(loader)
            if isinstance(loader, PartsLoader)
            else LazyChunkManifest(loader)
        )
        try:
            metadata = parse_array_metadata(plain)
            return ManifestArray(metadata=metadata, manifest=manifest)
        except Exception as e:  # zarr's parser raises what it likes on hostile input
            raise ManifestError(
                f"{where}: {'field ' + at + ': ' if at else ''}zarr rejects the array metadata: {e}"
            ) from None

    def _loader(
        self, path: str, transformer: wire.Transformer, grid: tuple[int, ...], where: str, at: str
    ) -> JsonLoader | ColumnarLoader | PartsLoader:
        prefix = f"{path}/" if path else ""
        field = wire.join(at, "configuration")
        if transformer.name == wire.PRIOR_ART:
            config = wire.convert(transformer.configuration, wire.PriorArtConfig, where, field)
            relative = config.manifest.removeprefix("./")
            check_relative(relative, f"{where}: field {wire.join(field, 'manifest')}")
            return JsonLoader(self.resolver, prefix + relative, grid, limits=self.limits)
        if transformer.name != wire.EXTENSION:
            raise ManifestError(
                f"{where}: field {wire.join(at, 'name')}: unknown storage transformer "
                f"{transformer.name!r}; this reader understands {wire.EXTENSION!r} (and the "
                f"prior-art {wire.PRIOR_ART!r}) and must refuse others"
            )
        config = wire.convert(transformer.configuration, wire.TransformerConfig, where, field)
        wire.parse_version(config.version, f"{where}: field {wire.join(field, 'version')}")
        if config.encoding == "parts":
            return self._parts(prefix, config, grid, where, field)
        if config.encoding == "json":
            return JsonLoader(
                self.resolver, prefix + wire.JSON_MANIFEST, grid, config.sources, self.limits
            )
        if config.sources:
            raise ManifestError(
                f"{where}: field {wire.join(field, 'sources')}: the columnar encoding records "
                f"fingerprints in its manifest group"
            )
        reader = ColumnarReader(self.location, prefix + wire.COLUMNAR_MANIFEST, grid)
        return ColumnarLoader(self.resolver, reader, self.limits)

    def _parts(
        self,
        prefix: str,
        config: wire.TransformerConfig,
        grid: tuple[int, ...],
        where: str,
        at: str,
    ) -> PartsLoader:
        """The loader of a manifest in parts: one loader per part, over the part's own grid."""
        axis, entries = check_parts(config, grid, where, at)
        parts, start = [], 0
        for i, entry in enumerate(entries):
            field = wire.join(at, f"parts[{i}]")
            key = prefix + check_relative(entry.manifest, f"{where}: field {field}.manifest")
            own = part_grid(grid, axis, entry.extent)
            self._check_size(own, where, field)
            loader: JsonLoader | ColumnarLoader
            if entry.encoding == "json":
                loader = JsonLoader(self.resolver, key, own, entry.sources, self.limits)
            else:
                reader = ColumnarReader(self.location, key, own)
                loader = ColumnarLoader(self.resolver, reader, self.limits)
            parts.append(Part(start, entry.rows, loader))
            start += entry.rows
        return PartsLoader(self.location.where(prefix.rstrip("/")), grid, axis, parts, self.limits)

    def _grid(self, header: wire.ArrayHeader, where: str, at: str) -> tuple[int, ...]:
        """The chunk grid's shape, checked against ``max_chunks`` before zarr expands anything."""
        shape, name = header.shape, header.chunk_grid.name
        field = wire.join(at, "chunk_grid.configuration")
        config = header.chunk_grid.configuration
        if name == "regular":
            steps = wire.convert(config, wire.RegularGrid, where, field).chunk_shape
            counts = [-1] * len(steps)
        elif name == "rectilinear":
            spec = wire.convert(config, wire.RectilinearGrid, where, field)
            steps = [d if isinstance(d, int) else 0 for d in spec.chunk_shapes]
            counts = spec.extents(where, field)
        else:
            raise ManifestError(
                f"{where}: field {wire.join(at, 'chunk_grid.name')}: unknown chunk grid {name!r} "
                f"(expected 'regular' or 'rectilinear')"
            )
        if len(steps) != len(shape):
            raise ManifestError(
                f"{where}: field {field}: {len(steps)} dimension(s), the shape has {len(shape)}"
            )
        grid = tuple(
            math.ceil(n / step) if count < 0 else count
            for n, step, count in zip(shape, steps, counts, strict=True)
        )
        self._check_size(grid, where, "")
        return grid

    def _check_size(self, grid: tuple[int, ...], where: str, at: str) -> None:
        """Refuse a chunk grid (an array's, or a part's at field ``at``) past ``max_chunks``."""
        if math.prod(grid) > self.max_chunks or sum(grid) > self.max_chunks:
            what = f"field {at}: the part's chunk grid" if at else "the chunk grid"
            raise ManifestError(
                f"{where}: {what} {grid} holds more than max_chunks={self.max_chunks} "
                f"chunks; pass a larger max_chunks to open it"
            )


def _check_node_path(path: str, where: str) -> None:
    """A node path names folders of the document: each name stays inside it, and there are
    at most MAX_DEPTH of them."""
    if path.count("/") >= MAX_DEPTH:
        raise ManifestError(
            f"{where}: node path {path[:100]!r}... is deeper than MAX_DEPTH={MAX_DEPTH} levels "
            f"(zarr_manifest_store.document.read.MAX_DEPTH)"
        )
    check_relative(path, f"{where}: node path")
