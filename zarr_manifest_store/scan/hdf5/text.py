"""Variable-length HDF5 strings in the Zarr data type that shows them as netCDF readers do.

Their bytes cannot be referenced in place, so they are read and stored
inline; the data type is chosen so that ``xr.open_zarr`` gives what
``xr.open_dataset(engine="h5netcdf")`` gives. UTF-8 strings come back from
h5netcdf as fixed-width unicode (``<U`` as wide as the longest), and so does
a single ASCII string: they are stored as ``fixed_length_utf32`` of that
width. Arrays of ASCII strings come back as Python ``str`` objects: they are stored as their bytes (``null_terminated_bytes``
as wide as the longest) with ``_Encoding: "ascii"``, which xarray decodes to
``str`` objects. (HDF5
strings end at their first NUL, so ``<U``, which drops trailing NULs, holds
them exactly.) Fixed-width text larger than the inline budget is stored
compressed (gzip: it is mostly padding), and refused if it is still too large;
only UTF-8 strings whose fixed width would take more than
:data:`WIDE_TEXT_FACTOR` times the budget (one long string among many short
ones) stay Zarr's ``string`` type (read as NumPy ``StringDType``).
"""

from __future__ import annotations

import functools
from typing import Any

import h5py
import numpy as np
from h5py import h5t
from zarr.dtype import parse_dtype

from zarr_manifest_store.scan.common import Refused

__all__ = ["text_form"]

Codec = dict[str, Any]

WIDE_TEXT_FACTOR = 64
"""Fixed-width text may take this many times the inline budget before it is compressed."""


def text_form(
    ds: h5py.Dataset, base: dict[str, Any], budget: int
) -> tuple[dict[str, Any], list[Codec], np.ndarray]:
    """The array metadata, codecs and values of a dataset of variable-length strings (as long as
    ``base``'s shape: netCDF pads a variable shorter than its unlimited dimension with its fill
    value)."""
    raw = _padded(np.asarray(ds[()], dtype=object), tuple(base["shape"]), ds)
    ascii_text = ds.id.get_type().get_cset() == h5t.CSET_ASCII
    if ascii_text and raw.ndim:
        return _ascii(raw, base, budget)
    encoding = "ascii" if ascii_text else "utf-8"  # as h5py's asstr decodes them
    try:
        texts = np.array(
            [v.decode(encoding) if isinstance(v, bytes) else v for v in raw.flat], dtype=object
        ).reshape(raw.shape)
    except UnicodeDecodeError as e:
        raise Refused(f"holds strings that are not valid {encoding} ({e})") from None
    width = max((len(t) for t in texts.flat), default=0) or 1
    if 4 * width * texts.size > WIDE_TEXT_FACTOR * budget:
        return {**base, "data_type": "string", "fill_value": ""}, [{"name": "vlen-utf8"}], texts
    zdtype = _text_type(f"<U{width}")
    meta = {
        **base,
        "data_type": zdtype.to_json(zarr_format=3),
        "fill_value": zdtype.to_json_scalar("", zarr_format=3),
    }
    bytes_codec = {"name": "bytes", "configuration": {"endian": "little"}}
    return meta, _codecs(bytes_codec, 4 * width * texts.size, budget), texts.astype(f"<U{width}")


def _padded(raw: np.ndarray, shape: tuple[int, ...], ds: h5py.Dataset) -> np.ndarray:
    """``raw`` padded to ``shape`` with the fill value of ``ds`` (netCDF's padding; reading the
    fill value takes a tenth of a string dataset's scan, so only where there is padding)."""
    if raw.shape == shape:
        return raw
    fill = ds.fillvalue
    out = np.empty(shape, dtype=object)
    out[...] = b"" if fill is None else fill
    out[tuple(slice(0, n) for n in raw.shape)] = raw
    return out


def _ascii(
    raw: np.ndarray, base: dict[str, Any], budget: int
) -> tuple[dict[str, Any], list[Codec], np.ndarray]:
    """ASCII strings as fixed-width bytes (at least two wide: xarray reads ``S1`` as characters
    to join) with ``_Encoding: "ascii"`` where they decode, as h5py's ``asstr`` decodes them."""
    data = [v.encode("utf-8", "surrogateescape") if isinstance(v, str) else v for v in raw.flat]
    width = max(2, max(map(len, data), default=0))
    if width * raw.size > WIDE_TEXT_FACTOR * budget:
        raise Refused(
            f"holds {raw.size} ASCII strings of up to {width} bytes, more than "
            f"{WIDE_TEXT_FACTOR} times the inline budget (max_inline_bytes={budget}); raise "
            "max_inline_bytes to materialise them"
        )
    attributes = dict(base.get("attributes", {}))
    if all(b.isascii() for b in data):
        attributes["_Encoding"] = "ascii"
    zdtype = _text_type(f"S{width}")
    meta = {
        **base,
        "data_type": zdtype.to_json(zarr_format=3),
        "fill_value": zdtype.to_json_scalar(b"", zarr_format=3),
        "attributes": attributes,
    }
    values = np.array(data, dtype=f"S{width}").reshape(raw.shape)
    return meta, _codecs({"name": "bytes", "configuration": {}}, width * raw.size, budget), values


@functools.cache
def _text_type(numpy_type: str) -> Any:
    """The Zarr data type of a fixed-width text type, found once (a look-up in zarr's registry
    costs 0.1 ms, and files hold thousands of string datasets)."""
    return parse_dtype(np.dtype(numpy_type), zarr_format=3)


def _codecs(bytes_codec: Codec, nbytes: int, budget: int) -> list[Codec]:
    """``bytes_codec``, then gzip (a core Zarr codec: every reader has it) where the fixed-width
    values (``nbytes``) are larger than the inline budget: the encoded chunk is then held to
    the budget (or refused) where it is stored."""
    if nbytes <= budget:
        return [bytes_codec]
    return [bytes_codec, {"name": "gzip", "configuration": {"level": 1}}]
