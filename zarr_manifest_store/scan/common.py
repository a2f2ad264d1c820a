"""Helpers every scanner shares: source naming and CF attributes as xarray's Zarr backend reads them."""

from __future__ import annotations

import base64
import os
import struct
import warnings
from typing import Any, Literal

import numpy as np

from zarr_manifest_store.errors import UnsupportedDatasetError
from zarr_manifest_store.sources import is_local

__all__ = ["Refusals", "fill_value_attribute", "json_attribute", "source_path"]


def source_path(url: str | os.PathLike[str]) -> str:
    """How a manifest names a source: local files by absolute path, anything else by its URL."""
    url = os.fspath(url)
    return os.path.abspath(url) if is_local(url) and "://" not in url else url


def fill_value_attribute(value: Any, dtype: np.dtype) -> Any:
    """A ``_FillValue`` attribute encoded the way xarray's Zarr v3 backend decodes it.

    Floats are the base64 of a little-endian float64 (so NaN survives JSON),
    complex numbers a pair of those, bytes base64, integers and booleans plain.
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
    if kind == "S":
        return base64.standard_b64encode(bytes(value)).decode()
    if kind in "UOT":  # fixed- and variable-length text
        return _text(value) if isinstance(value, bytes | np.bytes_) else str(value)
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
