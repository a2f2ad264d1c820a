"""Zarr array metadata as the HDF5 scan builds it: parsed once per distinct document."""

from __future__ import annotations

import functools
import marshal
from typing import Any

from zarr_manifest_store._zarr import ArrayV3Metadata
from zarr_manifest_store.array import parse_array_metadata

__all__ = ["CHUNK_KEY_ENCODING", "array_metadata", "regular"]


CHUNK_KEY_ENCODING = {"name": "default", "configuration": {"separator": "/"}}


def array_metadata(doc: dict[str, Any]) -> ArrayV3Metadata:
    """``parse_array_metadata``, memoised on the document without its attributes.

    The files of a collection repeat the same arrays, and so do the thousands
    of small datasets of a MATLAB file, each with attributes of its own (its
    ``H5PATH``); zarr's parsing costs more than the rest of describing a small
    dataset. So the rest of the document is parsed once, and the attributes —
    JSON that zarr keeps as a plain dict, checking nothing in them — are set
    on a copy the way zarr's own ``__init__`` sets them on a frozen instance.
    The parsed metadata is immutable, so arrays of different files may share it.
    The key is the document's ``marshal`` form: exact for the JSON types (``1``,
    ``1.0`` and ``True``, ``0.0`` and ``-0.0`` differ) and several times cheaper
    than JSON text. marshal writes only the exact built-in types, and anything
    else that has a buffer (NumPy values) as raw ``bytes``: so a key that holds
    no ``bytes`` is the form of one document alone. A document whose key holds
    ``bytes`` is parsed directly.
    """
    rest = dict(doc)
    attributes = rest.pop("attributes", None) or {}
    try:
        key = marshal.dumps(rest)
    except ValueError:  # no marshal form
        return parse_array_metadata(doc)
    parsed = _parsed_metadata(key)
    if parsed is None:
        return parse_array_metadata(doc)
    if not attributes:
        return parsed
    if not isinstance(attributes, dict):
        return parse_array_metadata(doc)  # zarr's own error for attributes that are no dict
    with_attributes = object.__new__(ArrayV3Metadata)  # copy.copy, without its generic costs
    for name, value in vars(parsed).items():  # set one by one: Python keeps them inline, where
        object.__setattr__(with_attributes, name, value)  # vars() would make a dict to collect
    object.__setattr__(with_attributes, "attributes", dict(attributes))
    return with_attributes


@functools.lru_cache(maxsize=1024)
def _parsed_metadata(key: bytes) -> ArrayV3Metadata | None:
    """The metadata of the document whose marshal form is ``key`` (None: one with ``bytes``,
    which stand for any object with a buffer)."""
    doc = marshal.loads(key)
    return None if _holds_bytes(doc) else parse_array_metadata(doc)


def _holds_bytes(value: Any) -> bool:
    if isinstance(value, dict):
        return any(_holds_bytes(k) or _holds_bytes(v) for k, v in value.items())
    if isinstance(value, list | tuple | set | frozenset):
        return any(map(_holds_bytes, value))
    return isinstance(value, bytes)


def regular(chunk_shape: tuple[int, ...]) -> dict[str, Any]:
    return {"name": "regular", "configuration": {"chunk_shape": list(chunk_shape)}}
