"""Zarr array metadata as the HDF5 scan builds it: parsed once per distinct document."""

from __future__ import annotations

import functools
import json
from typing import Any

from zarr_manifest_store._zarr import ArrayV3Metadata
from zarr_manifest_store.array import parse_array_metadata

__all__ = ["CHUNK_KEY_ENCODING", "array_metadata", "regular"]


CHUNK_KEY_ENCODING = {"name": "default", "configuration": {"separator": "/"}}


def array_metadata(doc: dict[str, Any]) -> ArrayV3Metadata:
    """``parse_array_metadata``, memoised on the document.

    The files of a collection repeat the same arrays, and zarr's parsing costs
    more than the rest of describing a small dataset. The parsed metadata is
    immutable, so arrays of different files may share it.
    """
    try:
        key = json.dumps(doc, allow_nan=True)
    except (TypeError, ValueError):
        return parse_array_metadata(doc)
    return _parsed_metadata(key)


@functools.lru_cache(maxsize=1024)
def _parsed_metadata(key: str) -> ArrayV3Metadata:
    return parse_array_metadata(json.loads(key))


def regular(chunk_shape: tuple[int, ...]) -> dict[str, Any]:
    return {"name": "regular", "configuration": {"chunk_shape": list(chunk_shape)}}
