"""Every dataset of a file against the scan's Zarr view of it.

HDF5 datasets are read with h5py, netCDF3 variables with scipy (raw: no
masking or scaling), and each is classified:

- ``exact``: the array read through ``ManifestStore`` holds the same values;
- ``refused``: the scan has no array for it and a warning names it (or a group above it);
- ``missing``: no array and no warning — a silent drop;
- ``wrong``: the values differ;
- ``read-error``: the scan describes it, but reading the array raises;
- ``not-a-variable``: a netCDF-4 dimension-only scale, which netCDF readers do not show;
- ``unreadable``: the reference reader cannot read it either (not counted against the scan).
"""

from __future__ import annotations

import ast
import contextlib
import functools
import re
import time
from collections.abc import Iterator
from typing import Any

import h5py
import numpy as np
import zarr

from .compare import difference

NOT_A_VARIABLE = b"This is a netCDF dimension but not a netCDF variable"
NON_COORD_PREFIX = "_nc4_non_coord_"
QUOTED = re.compile(r"'([^']*)'|\"([^\"]*)\"")


def named_in(messages: list[str]) -> set[str]:
    """The quoted names in warnings / errors, without leading slashes."""
    return set(_first_naming(tuple(messages)))


@functools.lru_cache(maxsize=8)
def _first_naming(messages: tuple[str, ...]) -> dict[str, str]:
    """Each quoted name (without leading slashes) and the first message naming it: made once
    per file's warnings, not once per dataset (a file may refuse thousands)."""
    first: dict[str, str] = {}
    for message in messages:
        for single, double in QUOTED.findall(message):
            first.setdefault((single or double).strip("/"), message)
            if "\\" in (single or double):  # a name as Python's repr writes it: '\\' for '\'
                with contextlib.suppress(ValueError, SyntaxError):
                    quote = "'" if single else '"'
                    name = ast.literal_eval(quote + (single or double) + quote)
                    first.setdefault(name.strip("/"), message)
    return first


def refused_by(name: str, named: set[str]) -> bool:
    """Whether ``name`` or a group above it is among the names refused."""
    parts = name.strip("/").split("/")
    return any("/".join(parts[:i]) in named for i in range(1, len(parts) + 1))


def h5py_visit(path: str) -> tuple[float, int]:
    """(seconds, datasets): h5py visiting every dataset and reading its storage info.

    The floor of a scan's time (issue 18's target: a scan within 2x of it).
    """
    count = 0
    start = time.perf_counter()
    with h5py.File(path, "r") as f:

        def visit(_name: str, obj: Any) -> None:
            nonlocal count
            if isinstance(obj, h5py.Dataset):
                count += 1
                dsid = obj.id
                dsid.get_storage_size()
                if dsid.get_create_plist().get_layout() == h5py.h5d.CHUNKED:
                    dsid.chunk_iter(lambda _info: None)

        f.visititems(visit)
    return time.perf_counter() - start, count


def hdf5_datasets(path: str) -> Iterator[tuple[str, h5py.Dataset]]:
    """(path without leading slash, dataset) of every dataset h5py reaches by hard links; a name
    that is not UTF-8 (h5py gives bytes) with U+FFFD for its invalid bytes, as the scan names it."""
    found: list[tuple[str, h5py.Dataset]] = []
    with h5py.File(path, "r") as f:

        def visit(name: str | bytes, obj: Any) -> None:
            if isinstance(obj, h5py.Dataset):
                found.append((_text_name(name), obj))

        f.visititems(visit)
        yield from found


def _text_name(name: str | bytes) -> str:
    return name.decode("utf-8", "replace") if isinstance(name, bytes) else name


def check_hdf5(
    path: str, root: zarr.Group | None, messages: list[str], failure: str = ""
) -> Iterator[dict]:
    """One record per HDF5 dataset (``root`` None: the scan failed with ``failure``)."""
    register_filters()
    for name, ds in hdf5_datasets(path):
        if _dimension_only(ds):
            yield {"name": name, "class": "not-a-variable", "reason": "netCDF-4 dimension scale"}
            continue
        try:
            expected = _read_h5py(ds)
        except Exception as e:
            reason = f"h5py: {first_line(e)} ({_scan_of(name, root, messages)})"
            yield {"name": name, "class": "unreadable", "reason": reason}
            continue
        node = _get(root, zarr_path(name)) if root is not None else None
        expected = _netcdf_padded(ds, expected, node)
        yield {"name": name, **classify(name, expected, root, messages, failure, node)}


def _netcdf_padded(ds: h5py.Dataset, values: Any, node: zarr.Array | None) -> Any:
    """h5py's values padded with the fill value to the array's shape along unlimited axes,
    as netCDF presents a variable shorter than its unlimited dimension (the scan too)."""
    if node is None or not isinstance(values, np.ndarray) or node.shape == values.shape:
        return values
    unlimited = [m is None for m in (ds.maxshape or ())]
    grows = [a >= e for a, e in zip(node.shape, values.shape, strict=False)]
    if (
        len(node.shape) != values.ndim
        or not all(u or a == e for u, a, e in zip(unlimited, node.shape, values.shape, strict=True))
        or not all(grows)
    ):
        return values  # a real difference in shape: classify reports it
    pad = [(0, a - e) for a, e in zip(node.shape, values.shape, strict=True)]
    return np.pad(values, pad, mode="constant", constant_values=_netcdf_padding(ds))


def _netcdf_padding(ds: h5py.Dataset) -> Any:
    """What netCDF-C pads a variable with: HDF5's fill value, except for numbers written with
    NC_NOFILL (fill time "never") or without a fill value, which it pads with netCDF's default
    fill for the type."""
    from netCDF4 import default_fillvals

    dcpl = ds.id.get_create_plist()
    never = dcpl.get_fill_time() == h5py.h5d.FILL_TIME_NEVER
    never |= dcpl.fill_value_defined() == h5py.h5d.FILL_VALUE_UNDEFINED
    key = f"{ds.dtype.kind}{ds.dtype.itemsize}"
    return default_fillvals[key] if never and key in default_fillvals else ds.fillvalue


def register_filters() -> None:
    """Let h5py decode the plugin filters of the reference reads (after the scan, which runs without)."""
    with contextlib.suppress(ImportError):
        import hdf5plugin  # noqa: F401


def check_netcdf3(
    path: str, root: zarr.Group | None, messages: list[str], failure: str = ""
) -> Iterator[dict]:
    """One record per netCDF3 variable, read raw with scipy."""
    from scipy.io import netcdf_file

    try:
        f = netcdf_file(path, "r", mmap=False, maskandscale=False)
    except Exception as e:
        yield {"name": "", "class": "unreadable", "reason": f"scipy: {first_line(e)}"}
        return
    with f:
        for raw, var in f.variables.items():
            expected = np.array(var.data, copy=True)
            name = _netcdf3_name(raw)
            yield {"name": name, **classify(name, expected, root, messages, failure)}


def _netcdf3_name(scipy_name: str) -> str:
    """A name as netCDF-C (and the scan) read it: scipy decodes every name as Latin-1, the scan
    as UTF-8 where it is valid."""
    try:
        return scipy_name.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return scipy_name


def classify(
    name: str,
    expected: Any,
    root: zarr.Group | None,
    messages: list[str],
    failure: str = "",
    node: zarr.Array | None = None,
) -> dict:
    """The class (and reason) of one dataset whose values h5py / scipy gave as ``expected``
    (``node``: its array, if the caller has opened it already)."""
    if root is None:
        return {"class": "file-error", "reason": failure or "the scan failed"}
    node = node if node is not None else _get(root, zarr_path(name))
    if node is None:
        if refused_by(name, named_in(messages)):
            return {"class": "refused", "reason": reason_for(name, messages)}
        return {"class": "missing", "reason": "no array and no warning names it"}
    try:
        actual = node[...]
    except Exception as e:
        return {"class": "read-error", "reason": f"reading the array raises {first_line(e)}"}
    if isinstance(expected, h5py.Empty):
        return {"class": "wrong", "reason": f"h5py has no data (null dataspace); zarr {node.shape}"}
    try:
        found = difference(expected, actual)
    except Exception as e:
        found = f"cannot compare: {first_line(e)}"
    return {"class": "wrong", "reason": found} if found else {"class": "exact"}


def _scan_of(name: str, root: zarr.Group | None, messages: list[str]) -> str:
    """What the scan did with a dataset h5py cannot read."""
    if root is None:
        return "the scan failed"
    node = _get(root, zarr_path(name))
    if node is None and refused_by(name, named_in(messages)):
        return f"the scan refused it: {reason_for(name, messages)}"
    if node is None:
        return "no array"
    try:
        node[...]
    except Exception as e:
        return f"the scan describes it; reading the array raises {first_line(e)}"
    return "the scan describes it and the array reads"


def _get(root: zarr.Group, name: str) -> zarr.Array | None:
    try:
        node = root[name]
    except (KeyError, ValueError):
        return None
    return node if isinstance(node, zarr.Array) else None


def _read_h5py(ds: h5py.Dataset) -> Any:
    if ds.shape is None:
        return h5py.Empty(ds.dtype)
    return ds[()]


def _dimension_only(ds: h5py.Dataset) -> bool:
    try:
        return h5py.h5ds.is_scale(ds.id) and NOT_A_VARIABLE in (
            h5py.h5ds.get_scale_name(ds.id) or b""
        )
    except Exception:
        return False


def zarr_path(name: str) -> str:
    """The node path the scan gives an HDF5 path (netCDF-4 prefix off, names Zarr reserves
    escaped)."""
    head, _, last = name.rpartition("/")
    parts = [*(head.split("/") if head else []), last.removeprefix(NON_COORD_PREFIX)]
    return "/".join(escaped(p) for p in parts)


def escaped(name: str) -> str:
    """A node name as the scan stores it: Zarr reserves ``__`` and names no node ``.``, ``..`` or
    ``zarr.json``, zarr-python reads ``\\`` as ``/``; such names (and ``%...``) start
    percent-encoded, ``%`` and ``\\`` after it too (docs/howto/scanning.md, "Names")."""
    if name.startswith(("__", "%")) or name in (".", "..", "zarr.json") or "\\" in name:
        first = "".join(f"%{byte:02X}" for byte in name[0].encode())
        return first + name[1:].replace("%", "%25").replace("\\", "%5C")
    return name


def reason_for(name: str, messages: list[str]) -> str:
    """The warning that names ``name`` or its nearest group."""
    first = _first_naming(tuple(messages))
    parts = name.strip("/").split("/")
    for i in range(len(parts), 0, -1):
        message = first.get("/".join(parts[:i]))
        if message is not None:
            return first_line(message)
    return ""


def first_line(error: object) -> str:
    """An exception's (or message's) first line, with its type for exceptions."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    if isinstance(error, BaseException):
        return f"{type(error).__name__}: {text}"
    return text
