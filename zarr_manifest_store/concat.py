"""Virtual concatenation: combine ManifestArrays by combining their manifests, never their data.

NumPy functions reach this module through ``ManifestArray.__array_function__``
(NEP 18): ``np.concatenate``, ``np.stack``, ``np.expand_dims``,
``np.broadcast_to`` and ``np.transpose`` return ManifestArrays whose manifests
are the inputs' rearranged and laid side by side (path tables merged,
fingerprints and inline chunks kept), and ``a[0:48]`` selects whole chunks.
Nothing is read from the source files.

Lengths that are not a multiple of the chunk size give a ``rectilinear`` chunk
grid. The last chunk of such an input is stored at full size but holds fewer
elements; once other chunks follow it, it must be described at its true size.
Uncompressed chunks whose valid elements lead their bytes are shortened;
inline chunks are re-encoded; anything else is refused, or, with
``edge_chunks="inline"``, read once, cropped and stored inline. Never a chunk
decoded at the wrong size.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from itertools import accumulate, product
from typing import Any, Literal, NamedTuple

import numpy as np
from numpy.lib.array_utils import normalize_axis_index, normalize_axis_tuple
from zarr.codecs import BytesCodec

from zarr_manifest_store._zarr import ArrayV3Metadata
from zarr_manifest_store.array import ManifestArray
from zarr_manifest_store.cf import check_cf_attributes
from zarr_manifest_store.codecs import decode_chunk, encode_chunk
from zarr_manifest_store.errors import UnsupportedDatasetError
from zarr_manifest_store.io.fingerprints import check_unchanged, merge_fingerprints
from zarr_manifest_store.io.sources import Sources
from zarr_manifest_store.manifest import INLINE, ChunkManifest, ChunkRef, Fingerprint

__all__ = [
    "HANDLED_FUNCTIONS",
    "broadcast_to",
    "concat",
    "concat_manifests",
    "describe_sources",
    "edge_chunks",
    "expand_dims",
    "getitem",
    "stack",
    "transpose",
]

EdgeChunks = Literal["refuse", "inline"]
Edges = tuple[tuple[int, ...], ...]
"""The chunk sizes along each dimension (the last one may overhang the array's end)."""

HANDLED_FUNCTIONS: dict[Callable[..., Any], Callable[..., Any]] = {}
"""The NumPy functions ManifestArray implements (NEP 18), by function."""

_ENCODE_ONLY = {
    "gzip": {"level"},
    "zstd": {"level"},
    "blosc": {"clevel"},
    "numcodecs.zlib": {"level"},
    "numcodecs.gzip": {"level"},
    "numcodecs.zstd": {"level"},
    "numcodecs.bz2": {"level"},
    "numcodecs.blosc": {"clevel"},
}
"""Codec settings that only steer compression: chunks written with any value decode alike."""

_EDGE_OPTIONS: ContextVar[tuple[EdgeChunks, Mapping[str, Any] | None]] = ContextVar(
    "edge_chunks", default=("refuse", None)
)
"""What ``np.concatenate`` / ``np.broadcast_to`` do with ragged edge chunks (see :func:`edge_chunks`)."""


def _implements(function: Callable[..., Any]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def register(handler: Callable[..., Any]) -> Callable[..., Any]:
        HANDLED_FUNCTIONS[function] = handler
        return handler

    return register


# ---------------------------------------------------------------------- public operations


def concat(
    arrays: Sequence[ManifestArray],
    axis: int = 0,
    *,
    edge_chunks: EdgeChunks = "refuse",
    storage_options: Mapping[str, Any] | None = None,
) -> ManifestArray:
    """Join ManifestArrays along an existing axis, like ``np.concatenate``, without reading data.

    The inputs must agree in dtype, codecs, fill value, the CF attributes in
    :data:`CF_ATTRIBUTES`, and in shape and chunking on every other axis; along
    ``axis`` their lengths and chunk sizes may differ, which gives a
    ``rectilinear`` chunk grid (read it with
    ``zarr.config.set({"array.rectilinear_chunks": True})``). A compressed
    input whose length is not a multiple of its chunk size, and which other
    inputs follow, is refused unless ``edge_chunks="inline"``: its last chunks
    are then read (with ``storage_options`` for remote files), cropped and
    stored inline.

    >>> import numpy as np, zarr_manifest_store as zms
    >>> def part(path, n):
    ...     meta = {"shape": [n], "data_type": "uint8", "fill_value": 0,
    ...             "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [n]}},
    ...             "chunk_key_encoding": {"name": "default"}, "codecs": [{"name": "bytes"}]}
    ...     m = zms.ChunkManifest.from_dict({"0": {"path": path, "offset": 0, "length": n}})
    ...     return zms.ManifestArray(metadata=meta, manifest=m)
    >>> zms.concat([part("/data/a.bin", 4), part("/data/b.bin", 5)]).chunk_sizes
    ((4, 5),)
    """
    arrays = _manifest_arrays(arrays, "concatenate")
    first = arrays[0]
    if first.ndim == 0:
        raise ValueError("zero-dimensional arrays cannot be concatenated")
    axis = normalize_axis_index(axis, first.ndim)
    _check_combinable(arrays, axis, stacking=False)
    if len(arrays) == 1:
        return first
    with _EdgeReader(edge_chunks, storage_options) as reader:
        parts = [_exact_last_chunk(a, axis, reader) for a in arrays[:-1]]
    parts.append((arrays[-1].chunk_sizes[axis], arrays[-1].manifest))
    edges = list(first.chunk_sizes)
    edges[axis] = tuple(e for axis_edges, _ in parts for e in axis_edges)
    shape = list(first.shape)
    shape[axis] = sum(a.shape[axis] for a in arrays)
    manifest = concat_manifests([m for _, m in parts], axis)
    return _derive(first, shape, edges, manifest, _common_names(arrays))


def stack(arrays: Sequence[ManifestArray], axis: int = 0) -> ManifestArray:
    """Join equally shaped ManifestArrays along a new axis, like ``np.stack``; no data is read.

    >>> b = np.stack([a1, a2])  # doctest: +SKIP
    """
    arrays = _manifest_arrays(arrays, "stack")
    axis = normalize_axis_index(axis, arrays[0].ndim + 1)
    _check_combinable(arrays, None, stacking=True)
    return concat([expand_dims(a, axis) for a in arrays], axis=axis)


def expand_dims(array: ManifestArray, axis: int | Sequence[int]) -> ManifestArray:
    """Insert length-1 axes (one chunk of size 1 each), like ``np.expand_dims``.

    >>> expand_dims(a, 0).shape  # doctest: +SKIP
    (1, 365, 180, 360)
    """
    axes = (axis,) if isinstance(axis, int | np.integer) else tuple(axis)
    ndim = array.ndim + len(axes)
    new = normalize_axis_tuple(axes, ndim)
    return getitem(array, tuple(None if i in new else slice(None) for i in range(ndim)))


def broadcast_to(
    array: ManifestArray,
    shape: int | Sequence[int],
    *,
    edge_chunks: EdgeChunks = "refuse",
    storage_options: Mapping[str, Any] | None = None,
) -> ManifestArray:
    """Repeat chunk references to reach ``shape``, like ``np.broadcast_to``; no data is read.

    New leading axes and stretched length-1 axes get chunks of size 1 that all
    point to the same bytes.

    >>> broadcast_to(a, (10, *a.shape)).shape  # doctest: +SKIP
    """
    array = _manifest_arrays([array], "broadcast_to")[0]
    target = (int(shape),) if isinstance(shape, int | np.integer) else tuple(map(int, shape))
    lead = len(target) - array.ndim
    if lead < 0 or any(n < 0 for n in target):
        raise ValueError(f"cannot broadcast an array of shape {array.shape} to shape {target}")
    with _EdgeReader(edge_chunks, storage_options) as reader:
        for i, (n, want) in enumerate(zip(array.shape, target[lead:], strict=True)):
            if n != want and n != 1:
                raise ValueError(
                    f"cannot broadcast an array of shape {array.shape} to shape {target}: "
                    f"axis {i} has length {n}"
                )
            if n != want:
                edges = list(array.chunk_sizes)
                edges[i], manifest = _exact_last_chunk(array, i, reader)
                array = _derive(array, array.shape, edges, manifest, array.dimension_names)
    expanded = getitem(array, (None,) * lead + (Ellipsis,)) if lead else array
    edges = list(expanded.chunk_sizes)
    positions = []
    for i, (n, want) in enumerate(zip(expanded.shape, target, strict=True)):
        if n == want:
            positions.append(np.arange(len(edges[i])))
        else:
            positions.append(np.zeros(want, dtype=np.intp))
            edges[i] = (1,) * want
    manifest = _select(expanded.manifest, positions)
    return _derive(expanded, target, edges, manifest, expanded.dimension_names)


def getitem(array: ManifestArray, key: Any) -> ManifestArray:
    """``array[key]`` for selections made of whole chunks; anything else raises ``IndexError``.

    Slices must start on a chunk boundary and have step 1; they may stop
    anywhere (the chunks beyond the end are simply not read). Integers, integer
    arrays, boolean masks and other steps select along axes whose chunks have
    size 1. ``None`` and ``...`` work as in NumPy.

    >>> a[0:48].shape, a[:, 0].ndim  # doctest: +SKIP
    """
    items = _expand_key(key, array.ndim)
    edges = array.chunk_sizes
    positions: list[np.ndarray] = []
    new_edges: list[tuple[int, ...]] = []
    shape: list[int] = []
    dropped: list[int] = []
    names = array.dimension_names
    new_names: list[str | None] = []
    axis = 0
    for item in items:
        if item is None:
            new_names.append(None)
            continue
        sel = _select_axis(item, axis, array.shape[axis], edges[axis])
        positions.append(sel.positions)
        if sel.keep:
            new_edges.append(sel.edges)
            shape.append(sel.length)
            new_names.append(None if names is None else names[axis])
        else:
            dropped.append(len(positions) - 1)
        axis += 1
    manifest = _select(array.manifest, positions)
    for i in reversed(dropped):
        manifest = _squeeze(manifest, i)
    for i, item in enumerate(_kept_items(items)):
        if item is None:
            manifest = _insert_axis(manifest, i)
            new_edges.insert(i, (1,))
            shape.insert(i, 1)
    dimension_names = None if names is None else tuple(new_names)
    return _derive(array, shape, new_edges, manifest, dimension_names)


def transpose(array: ManifestArray, axes: Sequence[int] | None = None) -> ManifestArray:
    """Permute the axes, like ``np.transpose``; no data is read.

    The chunks stay where they are: a ``transpose`` codec in front of the
    codec chain tells readers how their stored layout maps to the new axes.

    >>> transpose(a, (1, 0)).shape  # doctest: +SKIP
    """
    perm = (
        tuple(reversed(range(array.ndim)))
        if axes is None
        else normalize_axis_tuple(tuple(axes), array.ndim)
    )
    if len(perm) != array.ndim:
        raise ValueError(
            f"axes {tuple(axes or ())} don't match an array of {array.ndim} dimensions"
        )
    if perm == tuple(range(array.ndim)):
        return array
    doc = array.metadata.to_dict()
    codecs = [dict(c) for c in doc["codecs"]]  # type: ignore[arg-type, union-attr]
    # Encoding a new chunk must first restore the current axis order: order[j] = perm.index(j).
    order = [perm.index(j) for j in range(array.ndim)]
    if codecs[0]["name"] == "transpose":
        inner = codecs.pop(0)["configuration"]["order"]
        order = [order[k] for k in inner]
    if order != list(range(array.ndim)):
        codecs.insert(0, {"name": "transpose", "configuration": {"order": order}})
    edges = array.chunk_sizes
    names = array.dimension_names
    manifest = _regridded(
        array.manifest,
        lambda grid: np.transpose(grid, perm),
        lambda c: tuple(c[k] for k in perm),
    )
    doc.update(
        codecs=codecs,
        shape=[array.shape[k] for k in perm],
        chunk_grid=_chunk_grid([edges[k] for k in perm], [array.shape[k] for k in perm]),
        dimension_names=None if names is None else [names[k] for k in perm],
    )
    return ManifestArray(metadata=doc, manifest=manifest)


def concat_manifests(manifests: Sequence[ChunkManifest], axis: int = 0) -> ChunkManifest:
    """Lay chunk grids side by side along ``axis``: one path table, fingerprints and inline chunks kept.

    >>> m = concat_manifests([m1, m2], axis=0)  # doctest: +SKIP
    """
    if not manifests:
        raise ValueError("need at least one manifest to concatenate")
    ndim = manifests[0].ndim
    axis = normalize_axis_index(axis, ndim)
    for i, m in enumerate(manifests):
        if m.ndim != ndim or _without(m.shape, axis) != _without(manifests[0].shape, axis):
            raise ValueError(
                f"manifest {i} has chunk grid {m.shape}, which does not line up with "
                f"{manifests[0].shape} along axes other than {axis}"
            )
    # One lookup from every input's path table, stacked, to the merged table (first use first).
    paths: dict[str, int] = {}
    lut = np.array(
        [paths.setdefault(p, len(paths)) for m in manifests for p in m.paths], dtype=np.uint32
    )
    table_starts = np.cumsum([0] + [len(m.paths) for m in manifests[:-1]])
    lengths_along = [m.shape[axis] for m in manifests]
    starts = np.repeat(table_starts, lengths_along).reshape(
        [-1 if k == axis else 1 for k in range(ndim)]
    )
    stacked = np.concatenate([m.path_index for m in manifests], axis=axis)
    present = stacked < INLINE
    index = stacked.copy()
    index[present] = lut[(stacked + np.broadcast_to(starts, stacked.shape))[present]]
    inline: dict[tuple[int, ...], bytes] = {}
    for m, start in zip(manifests, np.cumsum([0, *lengths_along[:-1]]), strict=True):
        for coords, data in m.inline.items():
            inline[_shifted(coords, axis, int(start))] = data
    return ChunkManifest(
        paths=list(paths),
        path_index=index,
        offsets=np.concatenate([m.offsets for m in manifests], axis=axis),
        lengths=np.concatenate([m.lengths for m in manifests], axis=axis),
        inline=inline,
        fingerprints=merge_fingerprints(manifests),
    )


@contextlib.contextmanager
def edge_chunks(
    mode: EdgeChunks = "inline", *, storage_options: Mapping[str, Any] | None = None
) -> Iterator[None]:
    """Within the block, ``np.concatenate`` and ``np.broadcast_to`` treat ragged edge chunks per ``mode``.

    The NumPy functions take no ``edge_chunks`` argument, so callers that reach
    them indirectly (xarray's ``concat`` / ``combine_by_coords``) set it here;
    ``"inline"`` reads, crops and inlines the edge chunks that :func:`concat`
    would otherwise refuse. The setting is per thread / task (a context variable).

    >>> with edge_chunks("inline"):  # doctest: +SKIP
    ...     ds = xr.concat([ds1, ds2], dim="time")
    """
    if mode not in ("refuse", "inline"):
        raise ValueError(f"edge_chunks must be 'refuse' or 'inline', got {mode!r}")
    token = _EDGE_OPTIONS.set((mode, storage_options))
    try:
        yield
    finally:
        _EDGE_OPTIONS.reset(token)


def describe_sources(manifest: ChunkManifest) -> str:
    """The files a manifest reads, for messages: ``a.nc``, ``a.nc, b.nc`` or ``a.nc … z.nc (40 files)``."""
    paths = manifest.paths
    if not paths:
        return "inline data" if manifest.inline else "no source file"
    if len(paths) <= 2:
        return ", ".join(paths)
    return f"{paths[0]} … {paths[-1]} ({len(paths)} files)"


# ---------------------------------------------------------------------- NumPy protocol


@_implements(np.concatenate)
def _np_concatenate(
    arrays: Sequence[Any],
    axis: int | None = 0,
    out: Any = None,
    *,
    dtype: Any = None,
    casting: str | None = None,
) -> ManifestArray:
    _no_out(out, "concatenate")
    if axis is None:
        raise ValueError(
            "np.concatenate(..., axis=None) flattens its inputs, which reorders elements "
            "across chunks: a ManifestArray cannot be flattened without reading it"
        )
    mode, storage_options = _EDGE_OPTIONS.get()
    result = concat(arrays, axis, edge_chunks=mode, storage_options=storage_options)
    return _same_dtype(result, dtype)


@_implements(np.stack)
def _np_stack(
    arrays: Sequence[Any], axis: int = 0, out: Any = None, *, dtype: Any = None, casting: Any = None
) -> ManifestArray:
    _no_out(out, "stack")
    return _same_dtype(stack(arrays, axis), dtype)


@_implements(np.expand_dims)
def _np_expand_dims(a: ManifestArray, axis: int | Sequence[int]) -> ManifestArray:
    return expand_dims(a, axis)


@_implements(np.broadcast_to)
def _np_broadcast_to(array: ManifestArray, shape: Any, subok: bool = False) -> ManifestArray:
    mode, storage_options = _EDGE_OPTIONS.get()
    return broadcast_to(array, shape, edge_chunks=mode, storage_options=storage_options)


@_implements(np.transpose)
def _np_transpose(a: ManifestArray, axes: Sequence[int] | None = None) -> ManifestArray:
    return transpose(a, axes)


@_implements(np.result_type)
def _np_result_type(*arrays_and_dtypes: Any) -> np.dtype:
    return np.result_type(
        *(x.dtype if isinstance(x, ManifestArray) else x for x in arrays_and_dtypes)
    )


@_implements(np.shape)
def _np_shape(a: ManifestArray) -> tuple[int, ...]:
    return a.shape


@_implements(np.ndim)
def _np_ndim(a: ManifestArray) -> int:
    return a.ndim


@_implements(np.size)
def _np_size(a: ManifestArray, axis: int | None = None) -> int:
    return a.size if axis is None else a.shape[normalize_axis_index(axis, a.ndim)]


def _no_out(out: Any, name: str) -> None:
    if out is not None:
        raise TypeError(f"np.{name}(..., out=...) is not supported for ManifestArrays")


def _same_dtype(result: ManifestArray, dtype: Any) -> ManifestArray:
    return result if dtype is None else result.astype(dtype)


# ---------------------------------------------------------------------- checks


def _manifest_arrays(arrays: Any, operation: str) -> list[ManifestArray]:
    arrays = list(arrays)
    if not arrays:
        raise ValueError(f"need at least one array to {operation}")
    for i, a in enumerate(arrays):
        if not isinstance(a, ManifestArray):
            raise TypeError(
                f"cannot {operation} input {i}, a {type(a).__module__}.{type(a).__name__}, with "
                "ManifestArrays: every input must be a ManifestArray (chunk references), "
                "not values in memory"
            )
    return arrays


def _label(i: int, a: ManifestArray) -> str:
    return f"input {i} ({describe_sources(a.manifest)})"


def _check_combinable(arrays: Sequence[ManifestArray], axis: int | None, *, stacking: bool) -> None:
    """Raise ``ValueError`` naming the first input that differs from input 0, and how."""
    first = arrays[0]
    edges = first.chunk_sizes
    for i, a in enumerate(arrays[1:], start=1):
        problem = _difference(first, a, edges, axis, stacking)
        if problem:
            raise ValueError(f"cannot combine {_label(0, first)} and {_label(i, a)}: {problem}")
    check_cf_attributes(
        [a.attributes for a in arrays],
        [describe_sources(a.manifest) for a in arrays],
    )


def _difference(
    first: ManifestArray, other: ManifestArray, edges: Edges, axis: int | None, stacking: bool
) -> str | None:
    """How ``other`` differs from ``first`` in a way that forbids combining them, if it does."""
    if other.ndim != first.ndim:
        return f"they have {first.ndim} and {other.ndim} dimension(s)"
    if not _same_encoding(first.metadata, other.metadata):
        ref, mine = _encoding(first.metadata), _encoding(other.metadata)
        for field, value in mine.items():
            if value != ref[field]:
                return (
                    f"their {field} differ ({ref[field]} vs {value}); chunks of one array are "
                    "all decoded alike"
                )
    other_edges = other.chunk_sizes
    for k in range(first.ndim):
        if k == axis:
            continue
        if other.shape[k] != first.shape[k]:
            need = "the same shape" if stacking else f"equal lengths except along axis {axis}"
            return f"shapes {first.shape} and {other.shape} differ on axis {k}; they need {need}"
        if other_edges[k] != edges[k]:
            return (
                f"their chunks differ on axis {k} ({_show_edges(edges[k])} vs "
                f"{_show_edges(other_edges[k])}); rechunk one of them or combine along that axis"
            )
    return None


def _same_encoding(a: ArrayV3Metadata, b: ArrayV3Metadata) -> bool:
    """A quick check that chunks of ``a`` and ``b`` decode alike (False may still be alike)."""
    fa, fb = a.fill_value, b.fill_value
    return (
        a.data_type == b.data_type
        and a.codecs == b.codecs
        and a.storage_transformers == b.storage_transformers
        and bool(fa == fb or (fa != fa and fb != fb))  # NaN fill values
    )


def _encoding(metadata: ArrayV3Metadata) -> dict[str, Any]:
    """What decides how a chunk's bytes decode, as comparable JSON."""
    doc = metadata.to_dict()
    codecs = []
    for codec in doc["codecs"]:
        codec = dict(codec)  # type: ignore[arg-type]
        ignored = _ENCODE_ONLY.get(codec.get("name"), set())
        config = {k: v for k, v in (codec.get("configuration") or {}).items() if k not in ignored}
        codecs.append({"name": codec["name"], "configuration": config})
    return {
        "dtypes": doc["data_type"],
        "codecs": codecs,
        "fill values": doc["fill_value"],
        "storage transformers": doc.get("storage_transformers", ()),
    }


def _show_edges(edges: tuple[int, ...]) -> str:
    return f"size {edges[0]}" if len(set(edges)) == 1 else f"sizes {list(edges)}"


def _common_names(arrays: Sequence[ManifestArray]) -> tuple[str | None, ...] | None:
    names = {a.dimension_names for a in arrays}
    return names.pop() if len(names) == 1 else None


# ---------------------------------------------------------------------- indexing


class _AxisSelection(NamedTuple):
    """Which chunks one indexing item keeps along one axis, and the resulting chunk sizes."""

    positions: np.ndarray
    edges: tuple[int, ...]
    length: int
    keep: bool


def _expand_key(key: Any, ndim: int) -> list[Any]:
    """The indexing key as one item per axis plus ``None`` for new axes (``...`` expanded)."""
    items = list(key) if isinstance(key, tuple) else [key]
    if sum(item is Ellipsis for item in items) > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    used = sum(item is not None and item is not Ellipsis for item in items)
    if used > ndim:
        raise IndexError(
            f"too many indices for array: array is {ndim}-dimensional, but {used} were indexed"
        )
    for item in items:
        if isinstance(item, bool | np.bool_):
            raise IndexError(f"a boolean scalar is not a valid index for a ManifestArray: {key!r}")
    at = next((i for i, item in enumerate(items) if item is Ellipsis), len(items))
    items[at : at + 1] = [slice(None)] * (ndim - used)
    arrays = sum(isinstance(item, np.ndarray | list | tuple) for item in items)
    if arrays > 1:
        raise IndexError(
            "a ManifestArray takes at most one array index at a time (NumPy would pair them "
            "up point by point); index one axis after the other"
        )
    return items


def _kept_items(items: list[Any]) -> list[Any]:
    """The items that produce an output axis: everything but integers."""
    return [item for item in items if not isinstance(item, int | np.integer)]


def _select_axis(item: Any, axis: int, length: int, edges: tuple[int, ...]) -> _AxisSelection:
    bounds = np.fromiter(accumulate(edges, initial=0), dtype=np.int64, count=len(edges) + 1)
    if isinstance(item, int | np.integer):
        i = int(item)
        if not -length <= i < length:
            raise IndexError(f"index {i} is out of bounds for axis {axis} with size {length}")
        i %= length
        chunk = int(np.searchsorted(bounds, i, side="right")) - 1
        if edges[chunk] != 1:
            raise IndexError(
                f"index {i} on axis {axis} selects one element of a chunk of "
                f"{edges[chunk]}: integer indices need chunks of size 1 along that axis; "
                "slice whole chunks instead, or read the data"
            )
        return _AxisSelection(np.array([chunk]), (), 1, keep=False)
    if isinstance(item, slice):
        start, stop, step = item.indices(length)
        if step == 1:
            return _select_slice(start, max(start, stop), axis, bounds, edges, item)
        item = np.arange(start, stop, step)
    index = np.asarray(item)
    if index.dtype == bool:
        if index.shape != (length,):
            raise IndexError(
                f"boolean index of shape {index.shape} does not match axis {axis} of length {length}"
            )
        index = np.flatnonzero(index)
    if index.ndim != 1 or (index.size and index.dtype.kind not in "iu"):
        raise IndexError(
            f"axis {axis}: only integers, slices, 1-d integer or boolean arrays, None and ... "
            f"are valid indices, got {item!r}"
        )
    index = index.astype(np.int64)
    if index.size and (index.min() < -length or index.max() >= length):
        raise IndexError(f"an index is out of bounds for axis {axis} with size {length}")
    index %= max(length, 1)
    chunks = np.searchsorted(bounds, index, side="right") - 1
    sizes = np.asarray(edges, dtype=np.int64)[chunks] if index.size else np.empty(0, np.int64)
    if (sizes != 1).any():
        raise IndexError(
            f"axis {axis}: picking single elements needs chunks of size 1 along that axis, "
            f"but element {int(index[np.argmax(sizes != 1)])} lies in a chunk of "
            f"{int(sizes.max())}; select whole chunks with a step-1 slice, or read the data"
        )
    return _AxisSelection(chunks, (1,) * index.size, int(index.size), keep=True)


def _select_slice(
    start: int, stop: int, axis: int, bounds: np.ndarray, edges: tuple[int, ...], item: slice
) -> _AxisSelection:
    if start == stop:
        return _AxisSelection(np.empty(0, dtype=np.intp), (), 0, keep=True)
    first = int(np.searchsorted(bounds, start, side="right")) - 1
    if bounds[first] != start:
        raise IndexError(
            f"slice {_show_slice(item)} on axis {axis} starts at {start}, inside the chunk "
            f"{int(bounds[first])}:{int(bounds[first + 1])}; a ManifestArray can only select "
            "whole chunks, so slices must start on a chunk boundary (they may end anywhere)"
        )
    last = int(np.searchsorted(bounds, stop - 1, side="right")) - 1
    return _AxisSelection(np.arange(first, last + 1), edges[first : last + 1], stop - start, True)


def _show_slice(s: slice) -> str:
    parts = ["" if v is None else str(v) for v in (s.start, s.stop)]
    return ":".join(parts) + ("" if s.step is None else f":{s.step}")


# ---------------------------------------------------------------------- manifests


def _select(manifest: ChunkManifest, positions: Sequence[np.ndarray]) -> ChunkManifest:
    """The chunks at ``positions`` along each axis (outer indexing); repeats allowed."""
    grid = np.ix_(*positions) if positions else ()
    inline: dict[tuple[int, ...], bytes] = {}
    for coords, data in manifest.inline.items():
        hits = [np.flatnonzero(p == c) for p, c in zip(positions, coords, strict=True)]
        for new in product(*hits):
            inline[tuple(int(c) for c in new)] = data
    return _compacted(
        manifest.paths,
        manifest.path_index[grid],
        manifest.offsets[grid],
        manifest.lengths[grid],
        inline,
        manifest.fingerprints,
    )


def _insert_axis(manifest: ChunkManifest, axis: int) -> ChunkManifest:
    return _regridded(
        manifest, lambda grid: np.expand_dims(grid, axis), lambda c: (*c[:axis], 0, *c[axis:])
    )


def _squeeze(manifest: ChunkManifest, axis: int) -> ChunkManifest:
    return _regridded(manifest, lambda grid: np.squeeze(grid, axis), lambda c: _without(c, axis))


def _regridded(
    manifest: ChunkManifest,
    grid: Callable[[np.ndarray], np.ndarray],
    coords: Callable[[tuple[int, ...]], tuple[int, ...]],
) -> ChunkManifest:
    """The same chunks on a rearranged grid: ``grid`` maps each column, ``coords`` each inline key."""
    return ChunkManifest(
        paths=manifest.paths,
        path_index=grid(manifest.path_index),
        offsets=grid(manifest.offsets),
        lengths=grid(manifest.lengths),
        inline={coords(c): d for c, d in manifest.inline.items()},
        fingerprints=manifest.fingerprints,
    )


def _compacted(
    paths: Sequence[str],
    index: np.ndarray,
    offsets: np.ndarray,
    lengths: np.ndarray,
    inline: Mapping[tuple[int, ...], bytes],
    fingerprints: Mapping[str, Fingerprint],
) -> ChunkManifest:
    """A manifest whose path table (and fingerprints) keep only the paths still referenced."""
    present = index < INLINE
    used = np.bincount(index[present], minlength=len(paths)).astype(bool)
    if not used.all():
        keep = np.flatnonzero(used)
        lut = np.zeros(len(paths), dtype=np.uint32)
        lut[keep] = np.arange(len(keep), dtype=np.uint32)
        index = _remap(index, lut)
        paths = [paths[i] for i in keep]
        fingerprints = {p: fingerprints[p] for p in paths if p in fingerprints}
    return ChunkManifest(
        paths=paths,
        path_index=index,
        offsets=offsets,
        lengths=lengths,
        inline=inline,
        fingerprints=fingerprints,
    )


def _remap(index: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """Path indices translated through ``lut``; the MISSING / INLINE sentinels kept."""
    out = np.array(index, dtype=np.uint32)
    present = out < INLINE
    out[present] = lut[out[present]]
    return out


def _shifted(coords: tuple[int, ...], axis: int, by: int) -> tuple[int, ...]:
    return (*coords[:axis], coords[axis] + by, *coords[axis + 1 :])


def _without(values: tuple[Any, ...], axis: int) -> tuple[Any, ...]:
    return (*values[:axis], *values[axis + 1 :])


# ---------------------------------------------------------------------- metadata


def _derive(
    template: ManifestArray,
    shape: Sequence[int],
    edges: Sequence[tuple[int, ...]],
    manifest: ChunkManifest,
    dimension_names: Sequence[str | None] | None,
) -> ManifestArray:
    """A ManifestArray like ``template`` with a new shape, chunk grid and manifest."""
    doc = template.metadata.to_dict()
    doc.update(
        shape=list(shape),
        chunk_grid=_chunk_grid(edges, shape),
        dimension_names=None if dimension_names is None else list(dimension_names),
    )
    return ManifestArray(metadata=doc, manifest=manifest)


def _chunk_grid(edges: Sequence[tuple[int, ...]], shape: Sequence[int]) -> dict[str, Any]:
    """A ``regular`` grid when every axis is evenly chunked, otherwise ``rectilinear``."""
    steps = [_regular_step(e, n) for e, n in zip(edges, shape, strict=True)]
    if all(s is not None for s in steps):
        return {"name": "regular", "configuration": {"chunk_shape": steps}}
    specs = [s if s is not None else list(e) for s, e in zip(steps, edges, strict=True)]
    return {"name": "rectilinear", "configuration": {"kind": "inline", "chunk_shapes": specs}}


def _regular_step(edges: tuple[int, ...], extent: int) -> int | None:
    """The chunk size if ``edges`` are what a regular grid gives over ``extent``, else None."""
    if not edges:
        return 1
    step = edges[0]
    if all(e == step for e in edges) and len(edges) == math.ceil(extent / step):
        return step
    return None


# ---------------------------------------------------------------------- ragged edges


class _EdgeReader:
    """Reads and re-encodes edge chunks when ``edge_chunks="inline"``; refuses otherwise."""

    def __init__(self, edge_chunks: EdgeChunks, storage_options: Mapping[str, Any] | None):
        if edge_chunks not in ("refuse", "inline"):
            raise ValueError(f"edge_chunks must be 'refuse' or 'inline', got {edge_chunks!r}")
        self.inline = edge_chunks == "inline"
        self._storage_options = storage_options
        self._sources: Sources | None = None
        self._checked: set[str] = set()

    def __enter__(self) -> _EdgeReader:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._sources is not None:
            self._sources.close()

    def read(self, ref: ChunkRef, recorded: Fingerprint | None) -> bytes:
        if self._sources is None:
            self._sources = Sources(self._storage_options)
        if recorded is not None and ref.path not in self._checked:
            check_unchanged(ref.path, recorded, self._sources.fingerprint(ref.path))
            self._checked.add(ref.path)
        return self._sources.read_sync(ref.path, ref.offset, ref.length)


def _exact_last_chunk(
    array: ManifestArray, axis: int, reader: _EdgeReader
) -> tuple[tuple[int, ...], ChunkManifest]:
    """Chunk sizes along ``axis`` and a manifest in which the last chunk has its true size.

    The last chunk of a length that is not a multiple of the chunk size is
    stored at full size. To put other chunks after it, its references must
    yield exactly the elements inside the array: shortened when they are
    uncompressed and those elements lead the chunk's bytes, otherwise decoded,
    cropped and re-encoded inline (inline chunks always; references only when
    ``reader`` may read), or refused.
    """
    edges = array.chunk_sizes
    manifest = array.manifest
    if not edges[axis]:
        return edges[axis], manifest
    stored = edges[axis][-1]
    true = array.shape[axis] - sum(edges[axis][:-1])
    if stored == true:
        return edges[axis], manifest
    slab = tuple(len(e) - 1 if k == axis else slice(None) for k, e in enumerate(edges))
    index = manifest.path_index[slab]
    lengths = manifest.lengths.copy()
    path_index = manifest.path_index.copy()
    offsets = manifest.offsets
    inline = dict(manifest.inline)
    references = index < INLINE
    if references.any() and _prefix_truncatable(array, edges, axis):
        expected = _chunk_nbytes(array, edges, axis, stored)
        got = lengths[slab]
        if not np.array_equal(got[references], expected[references]):
            bad = tuple(int(c) for c in np.argwhere(references & (got != expected))[0])
            raise UnsupportedDatasetError(
                f"{describe_sources(manifest)}: an uncompressed chunk of this array is "
                f"{int(got[bad])} bytes, not the {int(expected[bad])} its shape needs; it cannot "
                "be shortened safely"
            )
        lengths[slab] = np.where(references, expected // stored * true, got)
        references = np.zeros_like(references)
    if references.any() and not reader.inline:
        coords = _full_coords(np.argwhere(references)[0], axis, len(edges[axis]) - 1)
        raise UnsupportedDatasetError(
            _ragged_message(array, axis, stored, true, references, coords)
        )
    for cell in np.argwhere((index == INLINE) | references):
        coords = _full_coords(cell, axis, len(edges[axis]) - 1)
        chunk = manifest.get(coords)
        if isinstance(chunk, ChunkRef):
            chunk = reader.read(chunk, manifest.fingerprints.get(chunk.path))
        buffer = tuple(e[c] for e, c in zip(edges, coords, strict=True))
        inline[coords] = _recode(array.metadata, buffer, axis, true, chunk)  # type: ignore[arg-type]
        path_index[coords] = INLINE
        lengths[coords] = 0
    moved = _compacted(
        manifest.paths,
        path_index,
        np.where(path_index < INLINE, offsets, 0),
        lengths,
        inline,
        manifest.fingerprints,
    )
    return (*edges[axis][:-1], true), moved


def _full_coords(cell: np.ndarray, axis: int, at: int) -> tuple[int, ...]:
    """Grid coordinates of a slab cell: ``at`` inserted on ``axis``."""
    coords = [int(c) for c in cell]
    coords.insert(axis, at)
    return tuple(coords)


def _prefix_truncatable(array: ManifestArray, edges: Edges, axis: int) -> bool:
    """Whether the first elements along ``axis`` are the first bytes of every chunk.

    True for chunks stored raw (one ``bytes`` codec, C order) when every axis
    before ``axis`` has chunks of size 1.
    """
    codecs = array.metadata.codecs
    return (
        len(codecs) == 1
        and isinstance(codecs[0], BytesCodec)
        and array.dtype.kind not in "OT"
        and all(e == 1 for k in range(axis) for e in edges[k])
    )


def _chunk_nbytes(array: ManifestArray, edges: Edges, axis: int, stored: int) -> np.ndarray:
    """Raw byte sizes of the slab's chunks (the last chunks along ``axis``), slab-shaped."""
    sizes = np.full((), stored * array.dtype.itemsize, dtype=np.uint64)
    for k, e in enumerate(edges):
        if k != axis:
            sizes = np.multiply.outer(sizes, np.asarray(e, dtype=np.uint64))
    return sizes


def _ragged_message(
    array: ManifestArray,
    axis: int,
    stored: int,
    true: int,
    cells: np.ndarray,
    coords: tuple[int, ...],
) -> str:
    codecs = [c.to_dict()["name"] for c in array.metadata.codecs]  # type: ignore[index]
    ref = array.manifest.get(coords)
    where = ref.path if isinstance(ref, ChunkRef) else describe_sources(array.manifest)
    return (
        f"{where}: length {array.shape[axis]} along axis {axis} is not a multiple of the chunk "
        f"size {stored}, so its last chunk holds {true} of {stored} elements. Followed by other "
        f"chunks, it must be described at its true size, which takes decoding it (codecs "
        f"{codecs}). Pass edge_chunks='inline' to zms.concat to read those "
        f"{int(cells.sum())} chunk(s) once and store them inline, or rewrite the file with a "
        f"chunk size that divides {array.shape[axis]}"
    )


def _recode(
    metadata: ArrayV3Metadata, buffer: tuple[int, ...], axis: int, true: int, raw: bytes
) -> bytes:
    """Decode a chunk stored with ``buffer`` shape, keep ``true`` elements along ``axis``, re-encode."""
    crop = tuple(slice(0, true) if k == axis else slice(None) for k in range(len(buffer)))
    try:
        values = decode_chunk(metadata, raw, buffer)[crop]
        return encode_chunk(metadata, values.shape, values)
    except (ValueError, TypeError, NotImplementedError, RuntimeError) as e:
        raise UnsupportedDatasetError(
            f"cannot re-encode an edge chunk of {buffer} elements with codecs "
            f"{[c.to_dict() for c in metadata.codecs]}: {e}"
        ) from e
