"""Loading kerchunk references: a mapping, a JSON file (versions 0 and 1, templates and ``gen``
expanded) or fsspec's parquet layout, as metadata documents and per-array chunk references."""

from __future__ import annotations

import base64
import io
import itertools
import json
import math
import os
import re
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

import fsspec
import msgspec
import numpy as np

from zarr_manifest_store.errors import ManifestError
from zarr_manifest_store.scan.kerchunk.chunks import Chunks, grid_shape

__all__ = ["References", "load"]

_METADATA = (".zgroup", ".zarray", ".zattrs")
_METADATA_LEAVES = frozenset({*_METADATA, "zarr.json", ".zmetadata"})
_SIMPLE_TEMPLATE = re.compile(r"\{\{\s*([A-Za-z_]\w*)\s*\}\}")


class References(Protocol):
    """A loaded reference set: its metadata documents by key, and its arrays' chunk references."""

    metadata: dict[str, Any]

    def chunks(self, arrays: Iterable[str]) -> dict[str, Chunks]: ...


class _JSONReferences:
    """References held in one mapping (JSON versions 0 and 1, or a dict)."""

    def __init__(self, refs: Mapping[str, Any]) -> None:
        self.metadata = {k: _document(k, v) for k, v in refs.items() if _is_metadata(k)}
        self._refs = refs

    def chunks(self, arrays: Iterable[str]) -> dict[str, Chunks]:
        keys: dict[str, list[tuple[str, Any]]] = {a: [] for a in arrays}
        for key, value in self._refs.items():
            array, _, leaf = key.rpartition("/")
            if leaf in _METADATA_LEAVES:
                continue
            while array and array not in keys:
                array = array.rpartition("/")[0]
            if array:  # else: not a chunk of an array we read
                keys[array].append((key, value))
        return {
            a: _json_chunks(a, self.metadata[f"{a}/.zarray"], items) for a, items in keys.items()
        }


def _json_chunks(array: str, zarray: Mapping[str, Any], items: list[tuple[str, Any]]) -> Chunks:
    """One array's references from ``(key, value)`` pairs: inline data, ``[url]`` or ``[url, offset, length]``."""
    grid = grid_shape(zarray["shape"], zarray["chunks"])
    chunks = Chunks(math.prod(grid))
    if not items:
        return chunks
    sep = zarray.get("dimension_separator") or "."
    pattern = re.compile(
        rf"\d+(?:{re.escape(sep)}\d+){{{len(grid) - 1}}}" if grid else "0", re.ASCII
    )
    start = len(array) + 1
    parts = [key[start:] for key, _ in items]
    for (key, _), part in zip(items, parts, strict=True):
        if not pattern.fullmatch(part):
            raise ManifestError(
                f"reference {key!r} is not a chunk key of {array!r}, whose chunk grid is {grid}"
            )
    flat = np.zeros(len(items), dtype=np.int64)
    if grid:
        coords = np.array(sep.join(parts).split(sep), dtype=np.int64).reshape(len(items), -1)
        outside = (coords >= np.array(grid)).any(axis=1)
        if outside.any():
            key = items[int(np.argmax(outside))][0]
            raise ManifestError(f"reference {key!r} lies outside the chunk grid {grid}")
        flat = np.ravel_multi_index(tuple(coords.T), grid)
    ranged: list[int] = []
    for j, (key, value) in enumerate(items):
        if isinstance(value, list | tuple) and len(value) == 3:
            ranged.append(j)
        elif isinstance(value, str | bytes | dict):
            chunks.inline[int(flat[j])] = _inline_bytes(key, value)
        elif isinstance(value, list | tuple) and len(value) == 1:
            chunks.urls[flat[j]] = value[0]
            chunks.whole[flat[j]] = True
        else:
            raise ManifestError(
                f"reference {key!r}: expected inline data, [url] or [url, offset, length], "
                f"got {value!r}"
            )
    if ranged:
        urls, offsets, lengths = zip(*(items[j][1] for j in ranged), strict=True)
        rows = flat[ranged]
        chunks.urls[rows] = urls
        chunks.offsets[rows] = _byte_positions(array, offsets, "offset")
        chunks.lengths[rows] = _byte_positions(array, lengths, "length")
    return chunks


def _byte_positions(array: str, values: tuple[Any, ...], field: str) -> np.ndarray:
    """Offsets or lengths as int64; a ManifestError names the first one that is not a non-negative integer."""
    arr = np.asarray(values)
    if arr.dtype.kind in "iu" and (arr.size == 0 or arr.min() >= 0):
        return arr.astype(np.int64)
    bad = next(v for v in values if isinstance(v, bool) or not isinstance(v, int) or v < 0)
    raise ManifestError(
        f"array {array!r}: a reference's {field} must be a non-negative integer, got {bad!r}"
    )


def _inline_bytes(key: str, value: str | bytes | dict[str, Any]) -> bytes:
    if isinstance(value, dict):
        return msgspec.json.encode(value)
    if isinstance(value, bytes):
        return value
    if value.startswith("base64:"):
        try:
            return base64.b64decode(value[7:], validate=True)
        except ValueError as e:
            raise ManifestError(f"reference {key!r}: invalid base64 data: {e}") from e
    return value.encode()


class _ParquetReferences:
    """fsspec's LazyReferenceMapper layout: ``.zmetadata`` plus ``<array>/refs.<n>.parq`` files."""

    def __init__(self, fs: Any, root: str) -> None:
        try:
            document = _json(fs.cat_file(f"{root}/.zmetadata"))
            metadata, self._record_size = document["metadata"], int(document["record_size"])
        except (KeyError, TypeError, ValueError) as e:
            raise ManifestError(f"{root}/.zmetadata is not a parquet reference index: {e}") from e
        self.metadata = {k: _document(k, v) for k, v in metadata.items()}
        self._fs, self._root = fs, root

    def chunks(self, arrays: Iterable[str]) -> dict[str, Chunks]:
        import pyarrow.parquet as pq

        out: dict[str, Chunks] = {}
        for array in arrays:
            zarray = self.metadata[f"{array}/.zarray"]
            n = math.prod(grid_shape(zarray["shape"], zarray["chunks"]))
            chunks = out[array] = Chunks(n)
            files = [
                f"{self._root}/{array}/refs.{k}.parq"
                for k in range(math.ceil(n / self._record_size))
            ]
            contents = self._fs.cat(files, on_error="return") if files else {}
            for k, file in enumerate(files):
                data = contents.get(file, contents.get(self._fs._strip_protocol(file)))
                if isinstance(data, FileNotFoundError) or data is None:
                    continue  # a record nothing was written to: its chunks are missing
                if isinstance(data, Exception):
                    raise data
                table = pq.read_table(io.BytesIO(data))
                _set_columns(chunks, k * self._record_size, table, file)
        return out


def _set_columns(chunks: Chunks, start: int, table: Any, file: str) -> None:
    """Record one parquet file's rows (path / offset / size / raw) from flat index ``start``."""
    names = set(table.column_names)
    if not {"path", "offset", "size"} <= names:
        raise ManifestError(f"{file} lacks the path / offset / size columns of parquet references")
    rows = min(table.num_rows, len(chunks.urls) - start)
    if rows <= 0:
        return
    stop = start + rows
    urls = np.array(table.column("path").to_pylist()[:rows], dtype=object)
    offsets = table.column("offset").to_numpy()[:rows].astype(np.int64)
    sizes = table.column("size").to_numpy()[:rows].astype(np.int64)
    if (offsets < 0).any() or (sizes < 0).any():
        raise ManifestError(f"{file} holds a negative offset or size")
    raw = table.column("raw").to_pylist()[:rows] if "raw" in names else [None] * rows
    has_url = np.array([isinstance(u, str) and u != "" for u in urls], dtype=bool)
    chunks.urls[start:stop] = np.where(has_url, urls, None)
    chunks.offsets[start:stop] = offsets
    chunks.lengths[start:stop] = sizes
    chunks.whole[start:stop] = has_url & (offsets == 0) & (sizes == 0)
    for i, data in enumerate(raw):
        if data is not None:
            chunks.inline[start + i] = bytes(data)
            chunks.urls[start + i] = None


def load(refs: str | os.PathLike[str] | Mapping[str, Any], options: dict[str, Any]) -> References:
    """The references, from a dict, a JSON file (compressed or not) or a parquet folder."""
    if isinstance(refs, Mapping):
        return _JSONReferences(_flatten(refs, "references"))
    url = os.fspath(refs)
    fs, root = fsspec.core.url_to_fs(url, **options)
    root = root.rstrip("/")
    if fs.isdir(root):
        return _ParquetReferences(fs, root)
    with fsspec.open(url, "rb", compression="infer", **options) as f:
        raw = f.read()
    try:
        document = _json(raw)
    except ValueError as e:
        raise ManifestError(f"{url!r} is not kerchunk JSON references: {e}") from e
    if not isinstance(document, dict):
        raise ManifestError(f"{url!r} is not kerchunk references: a JSON object was expected")
    return _JSONReferences(_flatten(document, repr(url)))


def _flatten(document: Mapping[str, Any], name: str) -> dict[str, Any]:
    """Version 0 or 1 references as one ``{key: value}`` dict, templates and ``gen`` expanded."""
    version = document.get("version")
    if version is None:
        return dict(document)
    if version != 1:
        raise ManifestError(
            f"{name}: unknown reference spec version {version!r} (0 and 1 are read)"
        )
    refs = dict(document.get("refs", {}))
    templates = dict(document.get("templates", {}))
    if templates:
        render = _renderer(templates)
        for key, value in refs.items():
            if isinstance(value, list) and value and isinstance(value[0], str) and "{{" in value[0]:
                refs[key] = [render(value[0]), *value[1:]]
    for spec in document.get("gen", []):
        refs.update(_generate(spec, templates, name))
    return refs


def _renderer(templates: dict[str, Any]) -> Any:
    """A function rendering ``{{name}}`` templates in a url (jinja2 only for anything fancier)."""

    def render(url: str) -> str:
        simple = _SIMPLE_TEMPLATE.sub(
            lambda m: str(templates[m.group(1)]) if m.group(1) in templates else m.group(0), url
        )
        if "{{" not in simple and not any("{{" in str(v) for v in templates.values()):
            return simple
        return _jinja().from_string(url).render(**templates)

    return render


def _generate(spec: Mapping[str, Any], templates: Mapping[str, Any], name: str) -> dict[str, Any]:
    """The references one ``gen`` entry describes: its templates rendered over the product of its dimensions."""
    try:
        dims = {
            k: v if isinstance(v, list) else range(v.get("start", 0), v["stop"], v.get("step", 1))
            for k, v in spec["dimensions"].items()
        }
        env = _jinja()
        key, url = env.from_string(spec["key"]), env.from_string(spec["url"])
        if ("offset" in spec) != ("length" in spec):
            raise KeyError("both 'offset' and 'length', or neither")
        ranged = "offset" in spec
        offset = env.from_string(str(spec["offset"])) if ranged else None
        length = env.from_string(str(spec["length"])) if ranged else None
    except (KeyError, TypeError, AttributeError) as e:
        raise ManifestError(f"{name}: malformed 'gen' entry {dict(spec)!r}: {e}") from e
    out: dict[str, Any] = {}
    for values in itertools.product(*dims.values()):
        context = {**templates, **dict(zip(dims, values, strict=True))}
        target = url.render(**context)
        if ranged:
            out[key.render(**context)] = [
                target,
                int(offset.render(**context)),  # type: ignore[union-attr]
                int(length.render(**context)),  # type: ignore[union-attr]
            ]
        else:
            out[key.render(**context)] = [target]
    return out


def _jinja() -> Any:
    try:
        import jinja2.sandbox
    except ImportError as e:
        raise ImportError(
            "these references use jinja2 templates ('gen' or templated templates); "
            "install jinja2 to read them"
        ) from e
    return jinja2.sandbox.SandboxedEnvironment()


def _is_metadata(key: str) -> bool:
    return key.rpartition("/")[2] in _METADATA_LEAVES


def _document(key: str, value: Any) -> Any:
    """A metadata reference as a JSON object (references hold them as strings, bytes or objects)."""
    if isinstance(value, dict):
        return value
    try:
        if isinstance(value, str) and value.startswith("base64:"):
            value = base64.b64decode(value[7:])
        document = _json(value)
    except (TypeError, ValueError) as e:
        raise ManifestError(f"reference {key!r} is not a JSON document: {e}") from e
    if not isinstance(document, dict):
        raise ManifestError(f"reference {key!r} is not a JSON object: {document!r}")
    return document


def _json(raw: str | bytes) -> Any:
    """Decode JSON fast, falling back to the standard library for NaN / Infinity literals."""
    try:
        return msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return json.loads(raw)  # raises a ValueError naming the position
