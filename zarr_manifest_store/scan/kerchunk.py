"""Import kerchunk references (JSON spec versions 0 and 1, or fsspec's parquet layout) as a ManifestGroup.

A reference set describes a Zarr v2 hierarchy whose chunks are either bytes
(inline, raw or ``base64:``) or ``[url, offset, length]`` / ``[url]`` (a whole
file). Version 1 adds ``templates`` (``{{name}}`` in urls) and ``gen``
(references generated from jinja2 templates over ranges); both are expanded
here the way fsspec's ``ReferenceFileSystem`` does. Array metadata becomes
Zarr v3 through :func:`zarr_manifest_store.kerchunk.v2_to_v3`.
"""

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

import msgspec
import numpy as np

from zarr_manifest_store.array import ManifestArray
from zarr_manifest_store.errors import ManifestError, UnsupportedDatasetError
from zarr_manifest_store.group import ManifestGroup
from zarr_manifest_store.io.paths import source_path
from zarr_manifest_store.io.sources import Sources
from zarr_manifest_store.kerchunk import v2_to_v3
from zarr_manifest_store.manifest import ChunkManifest
from zarr_manifest_store.scan.common import Refusals

__all__ = ["scan_kerchunk"]

_METADATA = (".zgroup", ".zarray", ".zattrs")
_METADATA_LEAVES = frozenset({*_METADATA, "zarr.json", ".zmetadata"})
_SIMPLE_TEMPLATE = re.compile(r"\{\{\s*([A-Za-z_]\w*)\s*\}\}")


def scan_kerchunk(
    refs: str | os.PathLike[str] | Mapping[str, Any],
    *,
    group: str | None = None,
    drop_variables: str | Iterable[str] | None = None,
    on_unsupported: str = "raise",
    storage_options: Mapping[str, Any] | None = None,
    remote_protocol: str | None = None,
) -> ManifestGroup:
    """Read kerchunk references (a dict, a JSON file, or a parquet folder) as a ManifestGroup.

    Compressor and filters become Zarr v3 codecs, ``_ARRAY_DIMENSIONS`` the
    ``dimension_names``, and the v2 ``fill_value`` (xarray's CF fill value
    for v2) the ``_FillValue`` attribute, so ``xr.open_zarr(ManifestStore(g))``
    equals xarray reading the references through fsspec. ``group`` opens a
    subgroup; ``drop_variables`` leaves arrays of that group out.
    ``storage_options`` reach fsspec for the reference files and for sizing
    whole-file references; ``remote_protocol`` is prefixed to urls that have
    none (as fsspec's option of that name). Arrays that Zarr v3 cannot express
    (unknown codecs) raise ``UnsupportedDatasetError``, or with
    ``on_unsupported="skip"`` are left out with a warning each.

    >>> g = scan_kerchunk("refs.json")
    >>> xr.open_zarr(zms.ManifestStore(g)).t2m.shape
    (24, 73, 144)
    >>> g = scan_kerchunk("s3://bucket/refs.parq", storage_options={"anon": True})  # doctest: +SKIP
    """
    name = "references" if isinstance(refs, Mapping) else repr(os.fspath(refs))
    refusals = Refusals(name, on_unsupported)  # type: ignore[arg-type]  # it checks the value
    options = dict(storage_options or {})
    loaded = _load(refs, options)
    targets = _Targets(remote_protocol, options)
    metadata = loaded.metadata
    if any(k == "zarr.json" or k.endswith("/zarr.json") for k in metadata):
        raise UnsupportedDatasetError(
            f"{name} hold Zarr v3 metadata (zarr.json); only kerchunk's Zarr v2 references are read"
        )
    if ".zarray" in metadata:
        raise UnsupportedDatasetError(
            f"{name} describe a single array at the root; scan_kerchunk reads groups of named arrays"
        )
    prefix = (group or "").strip("/")
    if prefix and not any(k.startswith(f"{prefix}/") for k in metadata):
        raise KeyError(f"{name} have no group {group!r}")
    dropped = {drop_variables} if isinstance(drop_variables, str) else set(drop_variables or ())
    base = f"{prefix}/" if prefix else ""
    wanted = [  # in the references' order, as xarray lists variables
        path
        for key in metadata
        if key.endswith("/.zarray")
        and (path := key.removesuffix("/.zarray")).startswith(base)
        and path.removeprefix(base) not in dropped
    ]
    converted: dict[str, dict[str, Any]] = {}
    for path in wanted:
        try:
            zattrs = metadata.get(f"{path}/.zattrs", {})
            converted[path] = v2_to_v3(path, metadata[f"{path}/.zarray"], zattrs)
        except UnsupportedDatasetError as e:
            refusals.add(path, str(e).removeprefix(f"array {path!r}: "))
    chunks = loaded.chunks(converted)
    built = {
        path: ManifestArray(metadata=meta, manifest=chunks[path].manifest(path, meta, targets))
        for path, meta in converted.items()
    }
    refusals.finish()
    return _tree(prefix, metadata, built)


def _tree(
    prefix: str, metadata: Mapping[str, Any], arrays: Mapping[str, ManifestArray]
) -> ManifestGroup:
    """The group at ``prefix``, with its arrays and (implicit or explicit) subgroups."""
    base = f"{prefix}/" if prefix else ""
    members: dict[str, ManifestArray] = {}
    subgroups: set[str] = set()
    for path, array in arrays.items():
        if not path.startswith(base):
            continue
        rest = path.removeprefix(base)
        if "/" in rest:
            subgroups.add(rest.partition("/")[0])
        else:
            members[rest] = array
    for key in metadata:
        if key.endswith("/.zgroup") and key.startswith(base):
            rest = key.removeprefix(base).removesuffix("/.zgroup")
            if rest:
                subgroups.add(rest.partition("/")[0])
    attributes = metadata.get(f"{base}.zattrs", {})
    groups = {name: _tree(f"{base}{name}", metadata, arrays) for name in sorted(subgroups)}
    return ManifestGroup(arrays=members, groups=groups, attributes=attributes)


# ---------------------------------------------------------------------- chunk references


class _Chunks:
    """One array's chunk references, flattened in C order of its chunk grid."""

    def __init__(self, nchunks: int) -> None:
        self.urls = np.full(nchunks, None, dtype=object)
        self.offsets = np.zeros(nchunks, dtype=np.int64)
        self.lengths = np.zeros(nchunks, dtype=np.int64)
        self.whole = np.zeros(nchunks, dtype=bool)
        self.inline: dict[int, bytes] = {}

    def manifest(self, path: str, meta: Mapping[str, Any], targets: _Targets) -> ChunkManifest:
        grid = _grid(meta["shape"], meta["chunk_grid"]["configuration"]["chunk_shape"])
        present = self.urls != None  # noqa: E711 - elementwise
        paths = np.full(self.urls.shape, "", dtype=object)
        resolved = {u: targets.resolve(path, u) for u in set(self.urls[present])}
        paths[present] = [resolved[u] for u in self.urls[present]]
        lengths = self.lengths.copy()
        for i in np.flatnonzero(self.whole):
            lengths[i] = targets.size(paths[i])
        inline = {
            tuple(int(c) for c in np.unravel_index(i, grid)): d for i, d in self.inline.items()
        }
        try:
            return ChunkManifest.from_arrays(
                paths=paths.astype(str).reshape(grid),
                offsets=self.offsets.reshape(grid),
                lengths=lengths.reshape(grid),
                inline=inline,
            )
        except ValueError as e:
            raise ManifestError(f"array {path!r}: {e}") from e


class _Targets:
    """Resolves reference urls the way fsspec does, and sizes whole-file references."""

    def __init__(self, remote_protocol: str | None, storage_options: dict[str, Any]) -> None:
        self._protocol = remote_protocol
        self._sources = Sources(storage_options)
        self._sizes: dict[str, int] = {}

    def resolve(self, array: str, url: Any) -> str:
        if not isinstance(url, str) or not url:
            raise ManifestError(
                f"array {array!r}: a reference has no target url ({url!r}); "
                f"references relying on fsspec's target= option are not supported"
            )
        if "://" not in url and self._protocol not in (None, "file", "local"):
            url = f"{self._protocol}://{url}"
        return source_path(url)

    def size(self, url: str) -> int:
        if url not in self._sizes:
            size = self._sources.fingerprint(url).size
            if size is None:
                raise OSError(f"cannot size {url!r}, which a whole-file reference points to")
            self._sizes[url] = size
        return self._sizes[url]


def _grid(shape: Iterable[int], chunks: Iterable[int]) -> tuple[int, ...]:
    return tuple(math.ceil(n / c) for n, c in zip(shape, chunks, strict=True))


# ---------------------------------------------------------------------- loading


class _References(Protocol):
    """A loaded reference set: its metadata documents by key, and its arrays' chunk references."""

    metadata: dict[str, Any]

    def chunks(self, arrays: Iterable[str]) -> dict[str, _Chunks]: ...


class _JSONReferences:
    """References held in one mapping (JSON versions 0 and 1, or a dict)."""

    def __init__(self, refs: Mapping[str, Any]) -> None:
        self.metadata = {k: _document(k, v) for k, v in refs.items() if _is_metadata(k)}
        self._refs = refs

    def chunks(self, arrays: Iterable[str]) -> dict[str, _Chunks]:
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


def _json_chunks(array: str, zarray: Mapping[str, Any], items: list[tuple[str, Any]]) -> _Chunks:
    """One array's references from ``(key, value)`` pairs: inline data, ``[url]`` or ``[url, offset, length]``."""
    grid = _grid(zarray["shape"], zarray["chunks"])
    chunks = _Chunks(math.prod(grid))
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

    def chunks(self, arrays: Iterable[str]) -> dict[str, _Chunks]:
        import pyarrow.parquet as pq

        out: dict[str, _Chunks] = {}
        for array in arrays:
            zarray = self.metadata[f"{array}/.zarray"]
            n = math.prod(_grid(zarray["shape"], zarray["chunks"]))
            chunks = out[array] = _Chunks(n)
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


def _set_columns(chunks: _Chunks, start: int, table: Any, file: str) -> None:
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


def _load(refs: str | os.PathLike[str] | Mapping[str, Any], options: dict[str, Any]) -> _References:
    """The references, from a dict, a JSON file (compressed or not) or a parquet folder."""
    if isinstance(refs, Mapping):
        return _JSONReferences(_flatten(refs, "references"))
    import fsspec

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
