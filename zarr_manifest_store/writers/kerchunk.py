"""Kerchunk references from a manifest hierarchy: spec version 1 JSON, or fsspec's parquet layout.

Kerchunk references (fsspec's ``ReferenceFileSystem`` format) describe a
Zarr **v2** hierarchy: ``.zgroup``, ``.zarray`` and ``.zattrs`` documents
(dimension names in ``_ARRAY_DIMENSIONS``) plus, for every chunk, either its
bytes or ``[url, offset, length]``. The array metadata is translated by
:mod:`zarr_manifest_store.v2`; the reader of references is
:func:`zarr_manifest_store.scan_kerchunk`.
"""

from __future__ import annotations

import base64
import io
import itertools
import json
import os
from collections.abc import Iterator, Mapping
from typing import Any, Literal

import fsspec
import msgspec
import numpy as np

from zarr_manifest_store.array import ManifestArray
from zarr_manifest_store.group import ManifestGroup, root_of
from zarr_manifest_store.io.sources import Sources
from zarr_manifest_store.manifest import INLINE, MISSING
from zarr_manifest_store.v2 import v3_to_v2

__all__ = ["CATEGORICAL_THRESHOLD", "RECORD_SIZE", "inline_small_chunks", "to_kerchunk"]

RECORD_SIZE = 100_000
"""References per parquet file (fsspec's ``record_size``)."""
CATEGORICAL_THRESHOLD = 10
"""kerchunk's default ``categorical_threshold`` (accepted for its call shape)."""


def to_kerchunk(
    source: Any,
    url: str | os.PathLike[str] | None = None,
    *,
    format: Literal["json", "parquet", "dict"] | None = None,
    storage_options: Mapping[str, Any] | None = None,
    mode: Literal["w-", "w"] = "w",
    record_size: int = RECORD_SIZE,
    inline_threshold: int = 0,
    categorical_threshold: int = CATEGORICAL_THRESHOLD,
    source_options: Mapping[str, Any] | None = None,
) -> dict[str, Any] | None:
    """Export a hierarchy as kerchunk references (spec version 1, Zarr v2 metadata).

    ``source`` is a ManifestGroup, a ManifestArray (exported as the array at
    the root, JSON only) or a ManifestStore serving one. With no ``url``,
    returns the references as a dict (JSON layout). With a ``url``, writes
    JSON, or with ``format="parquet"`` (the default for a url ending in
    ``.parq`` / ``.parquet``) fsspec's ``LazyReferenceMapper`` layout: a folder
    with ``.zmetadata`` and ``<array>/refs.<n>.parq`` files of ``record_size``
    references. ``mode="w"`` replaces what is at ``url``, ``"w-"`` refuses to.
    Inline chunks are written as ``base64:`` strings (JSON) or in the ``raw``
    column (parquet); ``inline_threshold`` also writes referenced chunks
    shorter than it inline, as kerchunk does (they are read, with
    ``source_options`` for fsspec, and checked against the scan's
    fingerprints). ``format="dict"`` returns the references (no ``url``).
    ``categorical_threshold`` is kerchunk's option for parquet: the path
    column is dictionary-encoded in every file, which is what it saves, so
    it only needs to be a positive integer. Raises ``UnsupportedDatasetError`` naming the array for
    what Zarr v2 cannot express (rectilinear chunk grids, sharding,
    non-reversing transposes).

    fsspec reads the parquet layout with fastparquet. With nested groups, pass
    fsspec a ``remote_protocol``: without one, its protocol inference looks
    for a ``.zarray`` in every folder, groups included, and fails.

    >>> group = zms.scan("data/era_2026-01-01.nc")
    >>> refs = to_kerchunk(group)
    >>> refs["version"], json.loads(refs["refs"]["t2m/.zarray"])["chunks"]
    (1, [6, 73, 144])
    >>> to_kerchunk(group, "day1.parq")
    >>> xr.open_dataset("reference://", engine="zarr", backend_kwargs={"consolidated": False,
    ...     "zarr_format": 2, "storage_options": {"fo": "day1.parq", "remote_protocol": "file"}}).t2m.shape
    (24, 73, 144)
    """
    root = root_of(source, "to_kerchunk")
    fmt = _checked_format(format, url, mode, record_size, inline_threshold, categorical_threshold)
    if fmt == "parquet" and isinstance(root, ManifestArray):
        raise ValueError(
            "the parquet layout keeps each array in a folder of its own: export a group "
            "(ManifestGroup(arrays={name: array})) or use format='json'"
        )
    if inline_threshold:
        root = inline_small_chunks(root, inline_threshold, source_options)
    metadata, arrays = _v2_hierarchy(root)
    if url is None or fmt == "dict":
        return _json_references(metadata, arrays)
    fs, target = fsspec.core.url_to_fs(os.fspath(url), **dict(storage_options or {}))
    if mode == "w-" and fs.exists(target):
        raise FileExistsError(f"{os.fspath(url)!r} exists; pass mode='w' to replace it")
    if fmt == "parquet":
        _write_parquet(fs, target, os.fspath(url), metadata, arrays, record_size)
    else:
        document = _json_references(metadata, arrays)
        # only strings, lists and integers: no NaN to lose
        fs.pipe_file(target, msgspec.json.encode(document))
    return None


def _checked_format(
    format: str | None,
    url: str | os.PathLike[str] | None,
    mode: str,
    record_size: int,
    inline_threshold: int,
    categorical_threshold: int,
) -> str:
    """The layout to write (``json``, ``parquet`` or ``dict``), once every option is valid."""
    fmt = format or _format_of(url)
    if fmt not in ("json", "parquet", "dict"):
        raise ValueError(f"format must be 'json', 'parquet' or 'dict', got {format!r}")
    if fmt == "dict" and url is not None:
        raise ValueError(
            f"format='dict' returns the references instead of writing them: leave out the url "
            f"{os.fspath(url)!r}, or pass format='json' to write them there"
        )
    for name, value in (("inline_threshold", inline_threshold), ("record_size", record_size)):
        if not isinstance(value, int) or value < (name == "record_size"):
            raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    if not isinstance(categorical_threshold, int) or categorical_threshold < 1:
        raise ValueError(
            f"categorical_threshold must be a positive integer, got {categorical_threshold!r}"
        )
    if mode not in ("w-", "w"):
        raise ValueError(f"mode must be 'w-' or 'w', got {mode!r}")
    if fmt == "parquet" and url is None:
        raise ValueError("the parquet layout is a folder of files: give a url to write it to")
    return fmt


def inline_small_chunks(
    root: ManifestGroup | ManifestArray, threshold: int, storage_options: Mapping[str, Any] | None
) -> ManifestGroup | ManifestArray:
    """``root`` with every referenced chunk shorter than ``threshold`` bytes read and kept inline."""
    if isinstance(root, ManifestArray):
        return _inline_small(root, threshold, storage_options)
    return root.replace(
        arrays={k: _inline_small(a, threshold, storage_options) for k, a in root.arrays.items()},
        groups={
            k: inline_small_chunks(g, threshold, storage_options) for k, g in root.groups.items()
        },
    )


def _inline_small(
    array: ManifestArray, threshold: int, storage_options: Mapping[str, Any] | None
) -> ManifestArray:
    m = array.manifest
    small = np.argwhere((m.path_index < INLINE) & (m.lengths < threshold))
    if not len(small):
        return array
    fingerprints = {path: [f] for path, f in m.fingerprints.items()}
    chunks = {}
    sources = Sources(storage_options, fingerprints=fingerprints)
    try:
        for coords in map(tuple, small.tolist()):
            ref = m.get(coords)
            chunks[coords] = bytes(sources.read_sync(ref.path, ref.offset, ref.length))
    finally:
        sources.close()
    return array.with_manifest(m.with_inline(chunks))


def _json_references(metadata: dict[str, dict[str, Any]], arrays: dict[str, Any]) -> dict[str, Any]:
    """The references of the JSON layout (spec version 1)."""
    refs: dict[str, Any] = {key: json.dumps(doc) for key, doc in metadata.items()}
    for path, array in arrays.items():
        for key, ref in _chunk_refs(path, array):
            refs[key] = ref
    return {"version": 1, "refs": refs}


def _v2_hierarchy(
    root: ManifestGroup | ManifestArray,
) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Every metadata document by reference key, and the arrays (with their v2 details) by path.

    An array at the root has the path ``""``: its documents are ``.zarray`` and ``.zattrs``.
    """
    if isinstance(root, ManifestArray):
        zarray, zattrs, fill_chunk = v3_to_v2("/", root)
        return {".zarray": zarray, ".zattrs": zattrs}, {"": (root, fill_chunk)}
    metadata: dict[str, dict[str, Any]] = {".zgroup": {"zarr_format": 2}}
    if root.attributes:
        metadata[".zattrs"] = dict(root.attributes)
    arrays: dict[str, tuple[ManifestArray, bytes | None]] = {}
    for path, node in root.walk():
        if isinstance(node, ManifestGroup):
            metadata[f"{path}/.zgroup"] = {"zarr_format": 2}
            if node.attributes:
                metadata[f"{path}/.zattrs"] = dict(node.attributes)
            continue
        zarray, zattrs, fill_chunk = v3_to_v2(path, node)
        metadata[f"{path}/.zarray"] = zarray
        metadata[f"{path}/.zattrs"] = zattrs
        arrays[path] = (node, fill_chunk)
    return metadata, arrays


def _chunk_refs(path: str, item: tuple[ManifestArray, bytes | None]) -> Iterator[tuple[str, Any]]:
    """``(key, reference)`` for each chunk of an array, in C order of the chunk grid (JSON layout)."""
    array, fill_chunk = item
    m = array.manifest
    index = m.path_index.ravel().tolist()
    offsets, lengths = m.offsets.ravel().tolist(), m.lengths.ravel().tolist()
    fill = None if fill_chunk is None else _base64(fill_chunk)
    prefix = f"{path}/" if path else ""
    cells = itertools.product(*map(range, m.shape))
    for row, coords, offset, length in zip(index, cells, offsets, lengths, strict=True):
        if row == MISSING and fill is None:
            continue
        key = f"{prefix}{'.'.join(map(str, coords)) or '0'}"
        if row == MISSING:
            yield key, fill
        elif row == INLINE:
            yield key, _base64(m.inline[coords])
        elif length == 0:
            yield key, _base64(b"")
        else:
            yield key, [m.paths[row], offset, length]


def _base64(data: bytes) -> str:
    return "base64:" + base64.b64encode(data).decode()


def _format_of(url: str | os.PathLike[str] | None) -> str:
    if url is not None and os.fspath(url).rstrip("/").endswith((".parq", ".parquet")):
        return "parquet"
    return "json"


# ---------------------------------------------------------------------- parquet


def _write_parquet(
    fs: fsspec.AbstractFileSystem,
    root: str,
    url: str,
    metadata: dict[str, dict[str, Any]],
    arrays: dict[str, Any],
    record_size: int,
) -> None:
    """fsspec's LazyReferenceMapper layout: ``.zmetadata`` plus ``<array>/refs.<n>.parq`` files.

    Paths are a plain (not categorical) string column, null where a chunk is
    missing or inline, so that fsspec's reader sees None, never NaN. The
    files carry pandas' schema metadata: without it fastparquet (fsspec's
    reader) reads the int64 offsets back as floats.
    """
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    if record_size < 1:
        raise ValueError(f"record_size must be positive, got {record_size}")
    schema = pa.schema(
        [("path", pa.string()), ("offset", pa.int64()), ("size", pa.int64()), ("raw", pa.binary())]
    )
    if fs.exists(root):
        if not _is_parquet_references(fs, root):
            raise FileExistsError(
                f"{url!r} exists and is not a folder of parquet references: not replacing it; "
                f"choose another path or remove it first"
            )
        fs.rm(root, recursive=True)  # earlier references, replaced as a JSON file would be
    fs.makedirs(root, exist_ok=True)
    for path, (array, fill_chunk) in arrays.items():
        columns = _parquet_columns(array, fill_chunk)
        fs.makedirs(f"{root}/{path}", exist_ok=True)
        for record, start in enumerate(range(0, len(columns["offset"]), record_size)):
            part = pd.DataFrame({k: v[start : start + record_size] for k, v in columns.items()})
            table = pa.Table.from_pandas(part, schema=schema, preserve_index=False)
            buffer = io.BytesIO()
            pq.write_table(table, buffer, compression="zstd", write_statistics=False)
            fs.pipe_file(f"{root}/{path}/refs.{record}.parq", buffer.getvalue())
    zmetadata = {"metadata": metadata, "record_size": record_size}
    fs.pipe_file(f"{root}/.zmetadata", json.dumps(zmetadata).encode())


def _parquet_columns(array: ManifestArray, fill_chunk: bytes | None) -> dict[str, Any]:
    """The path / offset / size / raw columns of an array's chunks, flattened in C order."""
    m = array.manifest
    index = m.path_index.ravel()
    table = np.array([*m.paths, None, None], dtype=object)
    rows = index.astype(np.int64)
    rows[index == INLINE] = len(m.paths)
    rows[index == MISSING] = len(m.paths) + 1
    paths = table[rows]
    offsets = m.offsets.ravel().astype(np.int64)
    sizes = m.lengths.ravel().astype(np.int64)
    raw = np.full(index.shape, None, dtype=object)
    for coords, data in m.inline.items():
        raw[np.ravel_multi_index(coords, m.shape) if coords else 0] = data
    empty = (index < INLINE) & (sizes == 0)  # fsspec reads [url, 0, 0] as the whole file
    raw[empty] = b""
    if fill_chunk is not None:
        raw[index == MISSING] = fill_chunk
    paths[raw != None] = None  # noqa: E711 - elementwise comparison with None
    return {"path": paths, "offset": offsets, "size": sizes, "raw": raw}


def _is_parquet_references(fs: Any, root: str) -> bool:
    """Whether ``root`` is a folder that ``to_kerchunk`` (or kerchunk) wrote: ``.zmetadata`` with a ``record_size``."""
    try:
        meta = json.loads(fs.cat_file(f"{root}/.zmetadata"))
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, ValueError):
        return False
    return isinstance(meta, dict) and "record_size" in meta
