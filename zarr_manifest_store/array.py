"""ManifestArray: Zarr v3 array metadata plus the ChunkManifest of its chunks.

A ManifestArray holds no data, only where the data lives. It is numpy-like
(``shape``, ``dtype``, ``ndim``) so that it can sit inside an ``xarray.Variable``
and be combined with ``np.concatenate`` / ``np.stack``; reading values goes
through :class:`~zarr_manifest_store.ManifestStore`.

This module owns the NEP 18 registry, :data:`HANDLED_FUNCTIONS`: the operations
that rearrange chunks live in ``ops/`` and register themselves with
:func:`implements`, so that this module never imports them. Its methods that
need one (``a[key]``, ``a.transpose()``) look it up there too.
"""

from __future__ import annotations

import dataclasses
import json
import math
import operator
from collections.abc import Callable, Collection, Mapping
from typing import Any

import numpy as np

from zarr_manifest_store._zarr import ArrayV3Metadata, RectilinearChunkGridMetadata
from zarr_manifest_store.manifest import ChunkManifest

__all__ = [
    "HANDLED_FUNCTIONS",
    "ManifestArray",
    "chunk_sizes",
    "implements",
    "parse_array_metadata",
]

HANDLED_FUNCTIONS: dict[Callable[..., Any], Callable[..., Any]] = {}
"""ManifestArray's implementations of NumPy functions (NEP 18), by function; also
``operator.getitem`` for ``a[key]``. Filled by ``zarr_manifest_store.ops`` at import."""


def implements(function: Callable[..., Any]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register the decorated function as ManifestArray's implementation of ``function``.

    >>> HANDLED_FUNCTIONS[np.concatenate].__module__  # registered by ops at import
    'zarr_manifest_store.ops.numpy_api'
    """

    def register(handler: Callable[..., Any]) -> Callable[..., Any]:
        HANDLED_FUNCTIONS[function] = handler
        return handler

    return register


class ManifestArray:
    """A lazy array: Zarr v3 metadata and a manifest of chunk references.

    ``metadata`` is zarr's ``ArrayV3Metadata`` or a ``zarr.json`` dict; the
    manifest's shape must equal the chunk grid's.

    >>> import numpy as np
    >>> from zarr_manifest_store import ChunkManifest
    >>> m = ChunkManifest.from_dict({"0": {"path": "/data/a.nc", "offset": 0, "length": 16}})
    >>> a = ManifestArray(
    ...     metadata={
    ...         "zarr_format": 3, "node_type": "array", "shape": [4], "data_type": "float32",
    ...         "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [4]}},
    ...         "chunk_key_encoding": {"name": "default"}, "fill_value": 0.0,
    ...         "codecs": [{"name": "bytes", "configuration": {"endian": "little"}}],
    ...     },
    ...     manifest=m,
    ... )
    >>> a.shape, str(a.dtype), a.chunk_sizes
    ((4,), 'float32', ((4,),))
    """

    __slots__ = ("_chunk_sizes", "_manifest", "_metadata")

    def __init__(
        self, *, metadata: ArrayV3Metadata | Mapping[str, Any], manifest: ChunkManifest
    ) -> None:
        self._metadata = parse_array_metadata(metadata)
        if not isinstance(manifest, ChunkManifest):
            raise TypeError(f"manifest must be a ChunkManifest, got {type(manifest).__name__}")
        self._chunk_sizes: tuple[tuple[int, ...], ...] | None = None  # expanded when first asked
        grid = grid_shape(self._metadata)
        if manifest.shape != grid:
            raise ValueError(
                f"the manifest's chunk grid {manifest.shape} does not match the array's chunk grid "
                f"{grid} (shape {self._metadata.shape}, chunks {_chunks(self._metadata)})"
            )
        self._manifest = manifest

    @property
    def metadata(self) -> ArrayV3Metadata:
        """The Zarr v3 array metadata."""
        return self._metadata

    @property
    def manifest(self) -> ChunkManifest:
        """Where each chunk's bytes live."""
        return self._manifest

    @property
    def shape(self) -> tuple[int, ...]:
        """The array's shape."""
        return tuple(self._metadata.shape)

    @property
    def ndim(self) -> int:
        """The number of dimensions."""
        return len(self._metadata.shape)

    @property
    def size(self) -> int:
        """The number of elements."""
        return math.prod(self.shape)

    @property
    def dtype(self) -> np.dtype:
        """The NumPy dtype of the stored values (before any CF decoding)."""
        return self._metadata.dtype.to_native_dtype()

    @property
    def nbytes(self) -> int:
        """Bytes the array holds once read (like numpy), not the manifest's memory."""
        return self.size * self.dtype.itemsize

    @property
    def chunk_sizes(self) -> tuple[tuple[int, ...], ...]:
        """The stored size of every chunk along each dimension (the last may overhang the end).

        Deliberately not named ``chunks``: xarray takes any array with ``chunks``
        for a dask-like chunked array and tries to compute it through a chunk manager.
        """
        if self._chunk_sizes is None:
            self._chunk_sizes = chunk_sizes(self._metadata)
        return self._chunk_sizes

    @property
    def fill_value(self) -> Any:
        """What missing chunks read as: Zarr's ``fill_value`` (CF masking uses ``_FillValue``)."""
        return self._metadata.fill_value

    @property
    def attributes(self) -> Mapping[str, Any]:
        """The ``attributes`` of the array's ``zarr.json`` (CF attributes as xarray stores them)."""
        return self._metadata.attributes

    @property
    def dimension_names(self) -> tuple[str | None, ...] | None:
        """The names of the dimensions (xarray's dims), or None if the metadata has none."""
        return self._metadata.dimension_names

    def with_manifest(self, manifest: ChunkManifest) -> ManifestArray:
        """The same array over another manifest of the same grid."""
        return ManifestArray(metadata=self._metadata, manifest=manifest)

    def with_metadata(self, **changes: Any) -> ManifestArray:
        """A copy whose ``zarr.json`` fields are replaced by ``changes`` (e.g. ``attributes=...``)."""
        return ManifestArray(
            metadata={**self._metadata.to_dict(), **changes}, manifest=self._manifest
        )

    def equals(self, other: object) -> bool:
        """Same metadata and the same chunk references."""
        return (
            isinstance(other, ManifestArray)
            and same_json(self._metadata.to_dict(), other._metadata.to_dict())
            and self._manifest.equals(other._manifest)
        )

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        raise TypeError(
            "a ManifestArray holds chunk references, not values; to read it, serve it through "
            "zarr_manifest_store.ManifestStore and open that with zarr.open_group(store, mode='r') "
            "or xarray.open_zarr(store)"
        )

    # ------------------------------------------------------------------ NumPy duck array (NEP 18)

    def __array_function__(
        self, func: Any, types: Collection[type], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        """Run NumPy functions that only rearrange chunks (``np.concatenate``, ``np.stack``, …)."""
        if not all(issubclass(t, ManifestArray | np.ndarray) for t in types):
            return NotImplemented
        handler = HANDLED_FUNCTIONS.get(func)
        if handler is None:
            raise TypeError(_values_needed(f"numpy.{func.__name__}"))
        return handler(*args, **kwargs)

    def __array_ufunc__(self, ufunc: np.ufunc, method: str, *inputs: Any, **kwargs: Any) -> Any:
        raise TypeError(_values_needed(f"numpy.{ufunc.__name__}"))

    def __getitem__(self, key: Any) -> ManifestArray:
        """Select whole chunks (``a[0:48]``, ``a[:, 3]`` where chunks along axis 1 have size 1)."""
        return HANDLED_FUNCTIONS[operator.getitem](self, key)

    def transpose(self, *axes: Any) -> ManifestArray:
        """The array with its axes permuted (like ``ndarray.transpose``), by a ``transpose`` codec."""
        if len(axes) == 1 and (axes[0] is None or not isinstance(axes[0], int | np.integer)):
            axes = axes[0]
        return HANDLED_FUNCTIONS[np.transpose](self, axes or None)

    @property
    def T(self) -> ManifestArray:
        """The array with its axes reversed (``a.transpose()``)."""
        return self.transpose()

    def astype(self, dtype: Any, *, copy: bool = True, **kwargs: Any) -> ManifestArray:
        """This array if ``dtype`` is its own; converting values would need reading them."""
        if np.dtype(dtype) == self.dtype:
            return self
        raise TypeError(
            f"cannot convert a ManifestArray from {self.dtype} to {np.dtype(dtype)}: its chunks "
            f"are stored as {self.dtype} and are not read; combine only arrays of one dtype"
        )

    def __eq__(self, other: object) -> Any:
        raise TypeError(
            _values_needed("comparing values (==)")
            + "; to compare chunk references, use ManifestArray.equals"
        )

    def __ne__(self, other: object) -> Any:
        return self.__eq__(other)

    __hash__ = None  # type: ignore[assignment]

    def _repr_inline_(self, max_width: int) -> str:
        """xarray's one-line summary of a variable's data."""
        text = f"ManifestArray<{self._manifest.nchunks} chunk(s) in {len(self._manifest.paths)} file(s)>"
        return text if len(text) <= max_width else text[: max(max_width - 4, 0)] + "...>"

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of a 0-d ManifestArray")
        return self.shape[0]

    def __repr__(self) -> str:
        return (
            f"ManifestArray<shape={self.shape}, dtype={self.dtype}, chunks={_chunks(self._metadata)}, "
            f"references={self._manifest.nchunks}>"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return _rebuild, (self._metadata.to_dict(), self._manifest)


def _values_needed(operation: str) -> str:
    return (
        f"{operation} needs the values of a ManifestArray, which holds chunk references only; "
        "read it through zarr_manifest_store.ManifestStore (zarr.open_group(store, mode='r') or "
        "xarray.open_zarr(store)) first"
    )


def _rebuild(metadata: dict[str, Any], manifest: ChunkManifest) -> ManifestArray:
    return ManifestArray(metadata=metadata, manifest=manifest)


def parse_array_metadata(metadata: ArrayV3Metadata | Mapping[str, Any]) -> ArrayV3Metadata:
    """zarr's ``ArrayV3Metadata`` from itself or a ``zarr.json`` dict; ValueError if zarr rejects it."""
    if isinstance(metadata, ArrayV3Metadata):
        return metadata
    if not isinstance(metadata, Mapping):
        raise TypeError(
            f"metadata must be ArrayV3Metadata or a zarr.json dict, got {type(metadata).__name__}"
        )
    data = {"zarr_format": 3, "node_type": "array", **metadata}
    grid = data.get("chunk_grid")
    try:
        if not (isinstance(grid, Mapping) and grid.get("name") == "rectilinear"):
            return ArrayV3Metadata.from_dict(data)
        # zarr parses a rectilinear grid only behind its process-wide flag: parse the rest with
        # a placeholder grid, then put the real one in (zarr checks it against the shape).
        placeholder = {
            "name": "regular",
            "configuration": {"chunk_shape": [1] * len(data["shape"])},
        }
        parsed = ArrayV3Metadata.from_dict({**data, "chunk_grid": placeholder})
        return dataclasses.replace(parsed, chunk_grid=RectilinearChunkGridMetadata.from_dict(grid))
    except (TypeError, KeyError, ValueError, NotImplementedError) as e:
        raise ValueError(f"invalid Zarr v3 array metadata: {e}") from e


def same_json(a: Any, b: Any) -> bool:
    """Whether two JSON-like values are equal as JSON (so NaN equals NaN, as zarr writes it)."""
    return json.dumps(a, sort_keys=True, default=repr) == json.dumps(
        b, sort_keys=True, default=repr
    )


def grid_shape(metadata: ArrayV3Metadata) -> tuple[int, ...]:
    """How many chunks the grid has along each dimension, without listing their sizes."""
    name, config = _grid(metadata)
    if name == "regular":
        return tuple(
            [
                -(-n // c) if c else 0
                for n, c in zip(metadata.shape, config["chunk_shape"], strict=True)
            ]
        )
    return tuple(
        _count_rectilinear(spec, n)
        for spec, n in zip(config["chunk_shapes"], metadata.shape, strict=True)
    )


def _count_rectilinear(spec: int | list[Any], extent: int) -> int:
    if isinstance(spec, int):
        return math.ceil(extent / spec) if spec else 0
    return sum(item[1] if isinstance(item, list) else 1 for item in spec)


def chunk_sizes(metadata: ArrayV3Metadata) -> tuple[tuple[int, ...], ...]:
    """The sizes of the chunks along each dimension, for regular and rectilinear grids.

    Edge chunks of a regular grid are reported at their full (nominal) size, as
    Zarr stores them; the sizes along a dimension therefore sum to at least its length.
    """
    name, config = _grid(metadata)
    if name == "regular":
        return tuple(
            (c,) * (math.ceil(n / c) if c else 0)
            for n, c in zip(metadata.shape, config["chunk_shape"], strict=True)
        )
    return tuple(
        _expand_rectilinear(spec, n)
        for spec, n in zip(config["chunk_shapes"], metadata.shape, strict=True)
    )


def _grid(metadata: ArrayV3Metadata) -> tuple[str, dict[str, Any]]:
    """The chunk grid's name and configuration, as written in ``zarr.json``."""
    grid = metadata.chunk_grid.to_dict()
    return grid["name"], grid["configuration"]  # type: ignore[index, return-value]


def _expand_rectilinear(spec: int | list[Any], extent: int) -> tuple[int, ...]:
    """One rectilinear dimension: an int is a regular step; a list holds sizes or [size, count] runs."""
    if isinstance(spec, int):
        return (spec,) * math.ceil(extent / spec) if spec else ()
    sizes: list[int] = []
    for item in spec:
        if isinstance(item, list):
            size, count = item
            sizes.extend([size] * count)
        else:
            sizes.append(item)
    return tuple(sizes)


def _chunks(metadata: ArrayV3Metadata) -> tuple[int, ...] | tuple[tuple[int, ...], ...]:
    name, config = _grid(metadata)
    return tuple(config["chunk_shape"]) if name == "regular" else chunk_sizes(metadata)
