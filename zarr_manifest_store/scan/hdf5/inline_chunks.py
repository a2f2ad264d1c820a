"""Chunks the scan cannot reference in place, read through h5py and encoded to be stored inline.

A compact dataset, variable-length strings, chunks that skipped a filter, netCDF's padding:
their bytes are read with h5py (or taken from the values an object header held) and encoded
with the array's codecs, within the scan's ``max_inline_bytes``. Plain numbers under a lone
``bytes`` codec are their own encoding, without zarr's per-chunk cost.
"""

from __future__ import annotations

import math
from typing import Any

import h5py
import numpy as np
from h5py import h5s
from zarr.codecs import BytesCodec

from zarr_manifest_store._zarr import ArrayV3Metadata
from zarr_manifest_store.codecs import encode_chunk
from zarr_manifest_store.manifest import ChunkCoords
from zarr_manifest_store.scan.common import Refused
from zarr_manifest_store.scan.hdf5.objects import Dataset
from zarr_manifest_store.scan.hdf5.parsed import HeaderDataset

__all__ = ["plain_bytes", "read_inline"]


def read_inline(
    ds: h5py.Dataset,
    metadata: ArrayV3Metadata,
    cells: list[ChunkCoords],
    budget: int,
    *,
    reason: str,
    reader: Any = None,
) -> dict[ChunkCoords, bytes]:
    """The chunks at ``cells`` read with h5py (or from ``reader``, the values read already)
    and encoded with ``metadata``'s codecs; refused (naming ``reason``, why they cannot be
    referenced in place) past ``budget`` bytes (``max_inline_bytes``)."""
    chunk_shape = metadata.chunk_grid.chunk_shape  # the scan's grids are regular
    if isinstance(ds, HeaderDataset) and ds.values is None:
        ds = Dataset(ds.id, readonly=True)  # described from its header, read through h5py
    if len(cells) * math.prod(chunk_shape) * ds.dtype.itemsize > budget:
        raise Refused(
            f"cannot be referenced in place ({reason}) and {len(cells)} chunk(s) of it are "
            f"too large to store inline (max_inline_bytes={budget}); raise "
            "max_inline_bytes to materialise them"
        )
    if reader is None:
        reader = ds.asstr() if h5py.check_string_dtype(ds.dtype) and ds.dtype.kind == "O" else ds
    inline = {}
    whole = reader is ds and cells == [(0,) * ds.ndim]
    extent = reader.shape if isinstance(reader, np.ndarray) else ds.shape  # values read: padded
    for cell in cells:
        try:
            values = _whole(ds) if whole else None
            if values is None:
                region = tuple(
                    slice(c * s, min((c + 1) * s, n))
                    for c, s, n in zip(cell, chunk_shape, extent, strict=True)
                )
                values = reader[region]
        except UnicodeDecodeError as e:
            raise Refused(f"holds strings that are not valid UTF-8 ({e})") from None
        except OSError as e:  # a filter whose plugin HDF5 cannot load, say
            raise Refused(f"cannot be referenced in place ({reason}) nor read ({e})") from None
        if getattr(values, "dtype", None) is not None and values.dtype.fields:
            values = values.astype(metadata.data_type.to_native_dtype())  # Zarr's packing
        inline[cell] = plain_bytes(metadata, chunk_shape, values) or encode_chunk(
            metadata, tuple(chunk_shape), values
        )
    if sum(map(len, inline.values())) > budget:
        raise Refused(
            f"cannot be referenced in place ({reason}) and takes "
            f"{sum(map(len, inline.values()))} bytes inline (max_inline_bytes={budget}); "
            "raise max_inline_bytes to materialise it"
        )
    return inline


def plain_bytes(
    metadata: ArrayV3Metadata, chunk_shape: tuple[int, ...], values: Any
) -> bytes | None:
    """A chunk encoded by a lone ``bytes`` codec: its values in C order and the codec's byte
    order. None when that does not apply (other codecs, structured types, values that do not
    fill the chunk): zarr's own encoding then runs, which costs milliseconds a chunk."""
    codec = metadata.codecs[0] if len(metadata.codecs) == 1 else None
    if not isinstance(codec, BytesCodec) or np.shape(values) != tuple(chunk_shape):
        return None
    native = metadata.data_type.to_native_dtype()
    if native.kind not in _PLAIN_KINDS or native.fields is not None:
        return None
    order = ">" if str(getattr(codec.endian, "value", codec.endian)) == "big" else "<"
    ordered = native.newbyteorder(order) if native.itemsize > 1 and native.kind != "S" else native
    return np.ascontiguousarray(values, dtype=ordered).tobytes()


_PLAIN_KINDS = frozenset("biufcSUmM")
"""NumPy kinds whose ``bytes`` codec encoding is the array's own bytes."""


def _whole(ds: h5py.Dataset) -> np.ndarray | None:
    """A dataset of plain numbers read whole with one low-level call (None for other types),
    or the values its header held: h5py's indexing costs a millisecond of selection logic,
    which a file of thousands of tiny compact datasets pays thousands of times."""
    if isinstance(ds, HeaderDataset):
        return ds.values
    if ds.dtype.kind not in "biuf" or ds.dtype.fields is not None or not ds.ndim:
        return None
    values = np.empty(ds.shape, dtype=ds.dtype)
    ds.id.read(h5s.ALL, h5s.ALL, values)
    return values
