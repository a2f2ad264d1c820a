"""Grow one array's stored manifest by a new part, writing the part and changing no stored file.

The array's manifest becomes (or stays) a manifest in parts (spec section 2.1): the
manifest it had is its first part, as it is; each append adds a part holding only the
new references, in the encoding of the part before it, under ``parts/``. Replacing the
last chunks along the axis lowers what the parts before give (``used``) or drops them
from the list, and leaves their files alone: a reader that opened the document before
keeps reading them.
"""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec

from zarr_manifest_store.document import columnar, wire
from zarr_manifest_store.document.write import PathWriter, json_manifest
from zarr_manifest_store.errors import SourceChangedError
from zarr_manifest_store.io.fingerprints import differences
from zarr_manifest_store.manifest import ChunkManifest

__all__ = ["RETIRED", "grow_parts", "merged_sources"]

RETIRED = ".retired"
"""The suffix of the marker file written beside a part an append drops from the list."""


def grow_parts(
    writer: PathWriter,
    name: str,
    configuration: dict[str, Any],
    grid: tuple[int, ...],
    axis: int,
    part: ChunkManifest,
    kept: int,
) -> tuple[dict[str, Any], dict[str, bytes]]:
    """The transformer configuration of array ``name`` (chunk grid ``grid``) with ``part`` after
    its first ``kept`` chunks along ``axis``, and the new part's files."""
    where = writer.location.where(f"{name}/zarr.json")
    config = wire.convert(configuration, wire.TransformerConfig, where, "configuration")
    stored = _stored_parts(config, grid, axis, where)
    encoding = stored[-1].encoding
    parts = _kept(stored, kept)
    if len(parts) >= wire.MAX_PARTS:
        raise ValueError(
            f"cannot append to array {name!r} of {writer.location.url}: its manifest has "
            f"{len(parts)} parts, as many as a manifest may have (MAX_PARTS={wire.MAX_PARTS}, "
            "fixed by the specification); write the document anew (zms.write_manifest of "
            "zms.scan of it) to merge them into one"
        )
    written = writer.columns(part)
    merged_sources(_recorded(writer, name, parts), written.sources, where)
    if encoding == "json":
        data = json_manifest(written)
        key = f"{wire.PARTS_FOLDER}/{_part_name({'': data})}.json"
        files = {f"{name}/{key}": data}
    else:
        encoded = columnar.encode(written, "")
        key = f"{wire.PARTS_FOLDER}/{_part_name(encoded)}"
        files = {f"{name}/{key}{k}": v for k, v in encoded.items()}
    sources = written.sources if encoding == "json" else {}
    parts.append(wire.ManifestPart(key, encoding, part.shape[axis], sources=sources))
    files.update(_retired(name, stored, parts))
    new = {
        "version": wire.version_text(wire.PARTS_VERSION),
        "encoding": "parts",
        "axis": axis,
        "parts": msgspec.to_builtins(parts),
    }
    return new, files


def merged_sources(
    old: dict[str, wire.SourceFingerprint], new: dict[str, wire.SourceFingerprint], where: str
) -> dict[str, wire.SourceFingerprint]:
    """The stored fingerprints and the new part's (paths as written); a source recorded in
    both with fingerprints that cannot both hold raises ``SourceChangedError``."""
    merged = dict(old)
    for path, fingerprint in new.items():
        known = merged.setdefault(path, fingerprint)
        if diff := differences(known.to_fingerprint(), fingerprint.to_fingerprint()):
            raise SourceChangedError(
                f"{where}: source {path!r} changed since the document recorded it ({diff}); "
                "rescan the files it came from and write the document again"
            )
    return merged


def _stored_parts(
    config: wire.TransformerConfig, grid: tuple[int, ...], axis: int, where: str
) -> list[wire.ManifestPart]:
    """The array's manifest as a list of parts: its parts, or its one manifest as the first."""
    if config.encoding == "json":
        return [wire.ManifestPart(wire.JSON_MANIFEST, "json", grid[axis], sources=config.sources)]
    if config.encoding == "columnar":
        return [wire.ManifestPart(wire.COLUMNAR_MANIFEST, "columnar", grid[axis])]
    if config.axis != axis or not config.parts:
        raise ValueError(
            f"cannot append along axis {axis} to {where}: its manifest is in parts along axis "
            f"{config.axis}; write the document anew to append along another dimension"
        )
    return list(config.parts)


def _kept(parts: list[wire.ManifestPart], kept: int) -> list[wire.ManifestPart]:
    """The parts that give the first ``kept`` chunks along the axis (the last one cut)."""
    out, total = [], 0
    for part in parts:
        if total >= kept:
            break
        rows = min(part.rows, kept - total)
        out.append(part if rows == part.rows else msgspec.structs.replace(part, used=rows))
        total += rows
    return out


def _retired(
    name: str, stored: list[wire.ManifestPart], kept: list[wire.ManifestPart]
) -> dict[str, bytes]:
    """Marker files for the stored parts (under ``parts/``) that the kept ones no longer list."""
    listed = {part.manifest for part in kept}
    return {
        f"{name}/{part.manifest}{RETIRED}": b"dropped from the manifest by an append\n"
        for part in stored
        if part.manifest not in listed and part.manifest.startswith(f"{wire.PARTS_FOLDER}/")
    }


def _recorded(
    writer: PathWriter, name: str, parts: list[wire.ManifestPart]
) -> dict[str, wire.SourceFingerprint]:
    """The fingerprints the kept parts record (a columnar part's from its group's metadata)."""
    recorded: dict[str, wire.SourceFingerprint] = {}
    for part in parts:
        if part.encoding == "json":
            recorded.update(part.sources)
            continue
        key = f"{name}/{part.manifest}/zarr.json"
        where = writer.location.where(key)
        group = wire.convert(
            wire.loads(writer.location.read(key), where), wire.ColumnarGroup, where
        )
        recorded.update(group.attributes.sources)
    return recorded


def _part_name(files: dict[str, bytes]) -> str:
    """A new part's name: a digest of its files, so that a name never holds two contents (a
    reader holding an old list of parts never finds other references under a name it knows)."""
    digest = hashlib.sha256()
    for key in sorted(files):
        digest.update(f"{len(key)}:{key}:{len(files[key])}:".encode())
        digest.update(files[key])
    return digest.hexdigest()[:24]
