"""Helpers every scanner shares: source naming and CF attributes as xarray's Zarr backend reads them."""

from __future__ import annotations

import base64
import math
import os
import struct
import warnings
from typing import Any, Literal

import numpy as np

from zarr_manifest_store.errors import UnsupportedDatasetError
from zarr_manifest_store.sources import is_local

__all__ = [
    "CONTIGUOUS_CHUNK_BYTES",
    "Refusals",
    "fill_value_attribute",
    "json_attribute",
    "rows_per_chunk",
    "source_path",
]

CONTIGUOUS_CHUNK_BYTES = 8 * 2**20
"""Default target size of the chunks that large uncompressed contiguous data is split into."""


def source_path(url: str | os.PathLike[str]) -> str:
    """How a manifest names a source: local files by absolute path, anything else by its URL."""
    url = os.fspath(url)
    return os.path.abspath(url) if is_local(url) and "://" not in url else url


def fill_value_attribute(value: Any, dtype: np.dtype) -> Any | None:
    """A ``_FillValue`` attribute encoded the way xarray's Zarr v3 backend decodes it.

    Floats are the base64 of a little-endian float64 (so NaN survives JSON),
    complex numbers a pair of those, integers and booleans plain. For bytes and
    text that backend has no decoding (it raises on opening), so the result is
    None: the attribute is left out and the value lives only in the Zarr
    ``fill_value``, which means such variables are not CF-masked.
    """
    kind = dtype.kind
    if kind == "f":
        return _b64_float(float(value))
    if kind == "c":
        value = complex(value)
        return [_b64_float(value.real), _b64_float(value.imag)]
    if kind in "iu":
        return int(value)
    if kind == "b":
        return bool(value)
    if kind in "SUOTV":
        return None
    raise ValueError(f"no _FillValue encoding for dtype {dtype}")


def json_attribute(value: Any) -> Any:
    """An HDF5 / netCDF attribute value as JSON: bytes decoded, numpy values as Python numbers.

    One-element arrays become scalars (netCDF stores every attribute as an
    array); NaN and infinities are kept, as zarr writes them.
    """
    if isinstance(value, bytes | np.bytes_):
        return _text(bytes(value))
    if isinstance(value, np.ndarray):
        if value.dtype.kind == "O" or value.dtype.kind in "SU":
            items = [json_attribute(v) for v in value.ravel()]
            return items[0] if len(items) == 1 else items
        items = value.ravel().tolist()
        return items[0] if value.size == 1 else items
    if isinstance(value, np.generic):
        return value.item()
    return value


def _b64_float(x: float) -> str:
    return base64.standard_b64encode(struct.pack("<d", x)).decode()


def _text(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


class Refusals:
    """The datasets a scan could not describe exactly, reported together when it ends.

    With ``on_unsupported="raise"``, :meth:`finish` raises one
    :class:`~zarr_manifest_store.UnsupportedDatasetError` listing every dataset
    and its reason; with ``"skip"`` it warns once per dataset left out.

    >>> r = Refusals("/data/f.h5", "skip")
    >>> r.add("refs", "holds object references")
    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     r.finish()
    >>> str(caught[0].message)
    "/data/f.h5: left out dataset 'refs': holds object references"
    """

    def __init__(self, source: str, on_unsupported: Literal["raise", "skip"]) -> None:
        if on_unsupported not in ("raise", "skip"):
            raise ValueError(f"on_unsupported must be 'raise' or 'skip', got {on_unsupported!r}")
        self.source = source
        self.on_unsupported = on_unsupported
        self.reasons: dict[str, str] = {}

    def add(self, name: str, reason: str) -> None:
        """Record that dataset ``name`` (its path in the file) is refused, and why."""
        self.reasons[name] = reason

    def finish(self) -> None:
        """Raise or warn about every refused dataset (nothing if there is none)."""
        if not self.reasons:
            return
        if self.on_unsupported == "skip":
            for name, reason in self.reasons.items():
                warnings.warn(
                    f"{self.source}: left out dataset {name!r}: {reason}",
                    UserWarning,
                    stacklevel=3,
                )
            return
        listing = "\n".join(f"  {name!r} {reason}" for name, reason in self.reasons.items())
        raise UnsupportedDatasetError(
            f"{self.source}: {len(self.reasons)} dataset(s) cannot be described exactly:\n"
            f"{listing}\n"
            "Pass on_unsupported='skip' to leave them out (with a warning each), or "
            f"drop_variables={sorted(self.reasons)!r}."
        )


def rows_per_chunk(
    n: int, row_bytes: int, *, target: int | None, room_after: int = 0, align: int = 0
) -> int:
    """Rows per chunk to split ``n`` contiguous rows of ``row_bytes`` into chunks of about ``target`` bytes.

    Zarr reads an edge chunk at its full nominal size, so the last chunk may
    run past the data into what follows it (its extra rows are discarded) when
    that padding stays within ``room_after`` bytes; else the count divides
    ``n``, or, when only a much smaller divisor would, the data stays one chunk.
    With ``align`` the count must divide it, so that no chunk straddles a
    boundary. ``target=None`` keeps the rows in one chunk.

    >>> rows_per_chunk(98, 24, target=1000)  # 41 rows fit; 14 divides 98
    14
    """
    if n <= 0:
        return max(n, 1)
    limit = n if target is None else max(1, min(n, target // max(row_bytes, 1)))
    if align:
        return max(d for d in _divisors(align) if d <= limit)
    if limit == n or (-n % limit) * row_bytes <= room_after:
        return limit
    best = max(d for d in _divisors(n) if d <= limit)
    # Splitting into many more chunks than asked for costs more than it saves.
    return best if best * 8 >= limit else n


def _divisors(n: int) -> list[int]:
    small = [d for d in range(1, math.isqrt(n) + 1) if n % d == 0]
    return sorted({*small, *(n // d for d in small)})
