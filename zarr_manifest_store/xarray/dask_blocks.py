"""The ManifestArray behind a dask array that ``xr.open_mfdataset(..., engine="virtual")`` made.

``xr.open_mfdataset`` opens every file with ``chunks={}``: xarray wraps each
variable the engine returns (``CopyOnWriteArray``) and hands it to
``dask.array.from_array``, one block per variable and file, whose tasks would
turn it into NumPy values (a ManifestArray refuses that: it holds no values).
Combining the files concatenates those dask arrays block by block. This
module reads the dask graph (the collection protocol: ``__dask_graph__``,
``__dask_keys__``) back into the ManifestArray that concatenating the
blocks' arrays gives, and accepts only that shape of graph: each block must
be one whole file's array, reached through aliases only. Any other operation
on the blocks is refused with the call that does it on ManifestArrays.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
from xarray.core.indexing import (
    CopyOnWriteArray,
    ImplicitToExplicitIndexingAdapter,
    MemoryCachedArray,
    NdArrayLikeIndexingAdapter,
)

from zarr_manifest_store.array import ManifestArray
from zarr_manifest_store.errors import UnsupportedDatasetError

try:
    from dask.core import get_dependencies
    from dask.task_spec import Alias
except ImportError:  # without dask there are no dask arrays to look into
    Alias = None
    get_dependencies = None

__all__ = ["is_dask_array", "manifest_array_of_blocks"]

_PASS_THROUGH = (
    ImplicitToExplicitIndexingAdapter,
    CopyOnWriteArray,
    MemoryCachedArray,
    NdArrayLikeIndexingAdapter,
)
"""xarray's wrappers that hold an array as it is (no selection): unwrapped to find a ManifestArray."""

_HOW = (
    "combine the files with zms.open_virtual_mfdataset(paths, combine=..., preprocess=...), "
    "which does such operations on chunk references"
)


def is_dask_array(data: Any) -> bool:
    """Whether ``data`` is a dask collection with array blocks (``__dask_graph__``, ``chunks``)."""
    return hasattr(data, "__dask_graph__") and hasattr(data, "chunks")


def manifest_array_of_blocks(data: Any, name: Hashable) -> ManifestArray | None:
    """The ManifestArray a dask array's blocks concatenate to, or None if no block is virtual.

    Raises ``UnsupportedDatasetError`` naming the variable ``name`` when some
    blocks come from virtual variables but the graph does more than
    concatenate whole files' arrays.
    """
    graph = data.__dask_graph__()
    if not any(_virtual(value) is not None for value in graph.values()):
        return None
    blocks = _map_nested(data.__dask_keys__(), lambda key: _block(graph, key, name))
    joined = _join(blocks, 0)
    if joined.shape != tuple(data.shape):
        raise UnsupportedDatasetError(
            f"variable {name!r}: its dask blocks join to shape {joined.shape}, not {data.shape}; "
            + _HOW
        )
    return joined


def _block(graph: Mapping[Any, Any], key: Any, name: Hashable) -> ManifestArray:
    """The ManifestArray one block of the graph is, reached through aliases only."""
    while _is_alias(graph, value := graph[key]):
        key = value.target if Alias is not None and isinstance(value, Alias) else value
    dependencies = get_dependencies(graph, key)
    if len(dependencies) == 1:
        array = _virtual(graph[next(iter(dependencies))])
        if array is not None:
            return array
    raise UnsupportedDatasetError(
        f"variable {name!r} was transformed by dask after opening (block {key!r} is not one "
        f"file's whole array: rechunked, broadcast, selected or computed); {_HOW}, or pass "
        "chunks={} to xr.open_mfdataset and data_vars='minimal' so that files are only "
        "concatenated"
    )


def _is_alias(graph: Mapping[Any, Any], value: Any) -> bool:
    """Whether a graph value only names another key (dask's legacy tuples, or an ``Alias``)."""
    if Alias is not None and isinstance(value, Alias):
        return True
    return isinstance(value, tuple | str) and _hashable(value) and value in graph


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def _virtual(value: Any) -> ManifestArray | None:
    """The ManifestArray inside xarray's pass-through wrappers, or None."""
    while isinstance(value, _PASS_THROUGH):
        value = value.array
    return value if isinstance(value, ManifestArray) else None


def _map_nested(nested: Any, function: Any) -> Any:
    if isinstance(nested, list):
        return [_map_nested(item, function) for item in nested]
    return function(nested)


def _join(blocks: Any, axis: int) -> ManifestArray:
    """Nested lists of blocks (one level per axis) concatenated into one ManifestArray."""
    if not isinstance(blocks, list):
        return blocks
    parts = [_join(item, axis + 1) for item in blocks]
    return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=axis)
