"""NumPy functions on ManifestArrays (NEP 18): each rearranges chunk references, never data.

``np.concatenate``, ``np.stack``, ``np.expand_dims``, ``np.broadcast_to`` and
``np.transpose`` return ManifestArrays whose manifests are the inputs'
rearranged and laid side by side (path tables merged, fingerprints and inline
chunks kept); ``a[key]`` selects whole chunks. Importing this module registers
them in ``array.HANDLED_FUNCTIONS``, which ``ManifestArray`` dispatches through.
Nothing is read from the source files, except ragged edge chunks on request
(see ``edges.py``).
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.lib.array_utils import normalize_axis_index, normalize_axis_tuple

from zarr_manifest_store.array import ManifestArray, implements
from zarr_manifest_store.io.fingerprints import merge_fingerprints
from zarr_manifest_store.manifest import ChunkManifest
from zarr_manifest_store.ops.combinable import check_combinable, common_names, manifest_arrays
from zarr_manifest_store.ops.edges import EdgeChunks, EdgeReader, edge_options, exact_last_chunk
from zarr_manifest_store.ops.grid import chunk_grid, derive
from zarr_manifest_store.ops.indexing import getitem

__all__ = ["broadcast_to", "concat", "expand_dims", "stack", "transpose"]


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
    ``rectilinear`` chunk grid (zarr reads it once ``array.rectilinear_chunks`` is on, as
    importing the package sets it unless you chose otherwise). A compressed
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
    arrays = manifest_arrays(arrays, "concatenate")
    first = arrays[0]
    if first.ndim == 0:
        raise ValueError("zero-dimensional arrays cannot be concatenated")
    axis = normalize_axis_index(axis, first.ndim)
    check_combinable(arrays, axis, stacking=False)
    if len(arrays) == 1:
        return first
    with EdgeReader(edge_chunks, storage_options) as reader:
        parts = [exact_last_chunk(a, axis, reader) for a in arrays[:-1]]
    parts.append((arrays[-1].chunk_sizes[axis], arrays[-1].manifest))
    edges = list(first.chunk_sizes)
    edges[axis] = tuple(itertools.chain.from_iterable(axis_edges for axis_edges, _ in parts))
    shape = list(first.shape)
    shape[axis] = sum(a.shape[axis] for a in arrays)
    manifests = [m for _, m in parts]
    manifest = ChunkManifest.concat(manifests, axis, fingerprints=merge_fingerprints(manifests))
    return derive(first, shape, edges, manifest, common_names(arrays))


def stack(arrays: Sequence[ManifestArray], axis: int = 0) -> ManifestArray:
    """Join equally shaped ManifestArrays along a new axis, like ``np.stack``; no data is read.

    >>> b = np.stack([a1, a2])  # doctest: +SKIP
    """
    arrays = manifest_arrays(arrays, "stack")
    axis = normalize_axis_index(axis, arrays[0].ndim + 1)
    check_combinable(arrays, None, stacking=True)
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
    array = manifest_arrays([array], "broadcast_to")[0]
    target = (int(shape),) if isinstance(shape, int | np.integer) else tuple(map(int, shape))
    lead = len(target) - array.ndim
    if lead < 0 or any(n < 0 for n in target):
        raise ValueError(f"cannot broadcast an array of shape {array.shape} to shape {target}")
    with EdgeReader(edge_chunks, storage_options) as reader:
        for i, (n, want) in enumerate(zip(array.shape, target[lead:], strict=True)):
            if n != want and n != 1:
                raise ValueError(
                    f"cannot broadcast an array of shape {array.shape} to shape {target}: "
                    f"axis {i} has length {n}"
                )
            if n != want:
                edges = list(array.chunk_sizes)
                edges[i], manifest = exact_last_chunk(array, i, reader)
                array = derive(array, array.shape, edges, manifest, array.dimension_names)
    expanded = getitem(array, (None,) * lead + (Ellipsis,)) if lead else array
    edges = list(expanded.chunk_sizes)
    positions = []
    for i, (n, want) in enumerate(zip(expanded.shape, target, strict=True)):
        if n == want:
            positions.append(np.arange(len(edges[i])))
        else:
            positions.append(np.zeros(want, dtype=np.intp))
            edges[i] = (1,) * want
    manifest = expanded.manifest.take(positions)
    return derive(expanded, target, edges, manifest, expanded.dimension_names)


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
    doc.update(
        codecs=codecs,
        shape=[array.shape[k] for k in perm],
        chunk_grid=chunk_grid([edges[k] for k in perm], [array.shape[k] for k in perm]),
        dimension_names=None if names is None else [names[k] for k in perm],
    )
    return ManifestArray(metadata=doc, manifest=array.manifest.transpose(perm))


# ---------------------------------------------------------------------- registrations


@implements(operator.getitem)
def _getitem(array: ManifestArray, key: Any) -> ManifestArray:
    return getitem(array, key)


@implements(np.concatenate)
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
    mode, storage_options = edge_options()
    result = concat(arrays, axis, edge_chunks=mode, storage_options=storage_options)
    return _same_dtype(result, dtype)


@implements(np.stack)
def _np_stack(
    arrays: Sequence[Any], axis: int = 0, out: Any = None, *, dtype: Any = None, casting: Any = None
) -> ManifestArray:
    _no_out(out, "stack")
    return _same_dtype(stack(arrays, axis), dtype)


@implements(np.expand_dims)
def _np_expand_dims(a: ManifestArray, axis: int | Sequence[int]) -> ManifestArray:
    return expand_dims(a, axis)


@implements(np.broadcast_to)
def _np_broadcast_to(array: ManifestArray, shape: Any, subok: bool = False) -> ManifestArray:
    mode, storage_options = edge_options()
    return broadcast_to(array, shape, edge_chunks=mode, storage_options=storage_options)


@implements(np.transpose)
def _np_transpose(a: ManifestArray, axes: Sequence[int] | None = None) -> ManifestArray:
    return transpose(a, axes)


@implements(np.result_type)
def _np_result_type(*arrays_and_dtypes: Any) -> np.dtype:
    return np.result_type(
        *(x.dtype if isinstance(x, ManifestArray) else x for x in arrays_and_dtypes)
    )


@implements(np.shape)
def _np_shape(a: ManifestArray) -> tuple[int, ...]:
    return a.shape


@implements(np.ndim)
def _np_ndim(a: ManifestArray) -> int:
    return a.ndim


@implements(np.size)
def _np_size(a: ManifestArray, axis: int | None = None) -> int:
    return a.size if axis is None else a.shape[normalize_axis_index(axis, a.ndim)]


def _no_out(out: Any, name: str) -> None:
    if out is not None:
        raise TypeError(f"np.{name}(..., out=...) is not supported for ManifestArrays")


def _same_dtype(result: ManifestArray, dtype: Any) -> ManifestArray:
    return result if dtype is None else result.astype(dtype)
