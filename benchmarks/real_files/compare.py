"""Value comparison: None when two arrays hold the same values, else the first difference.

Numbers must have the same kind and size and equal values (NaN equals NaN,
NaT equals NaT); integers and bytes are compared bit for bit. Strings compare
by value whatever their representation (fixed-length bytes, object arrays of
bytes or str, numpy's StringDType). Compound types compare field by field,
variable-length sequences element by element.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

STRING_KINDS = frozenset("SUOT")


def difference(expected: Any, actual: Any) -> str | None:
    """How ``actual`` differs from ``expected`` (None: not at all)."""
    e, a = np.asarray(expected), np.asarray(actual)
    if e.shape != a.shape:
        return f"shape {a.shape} where {e.shape} was expected"
    if e.dtype.names or a.dtype.names:
        return _fields_difference(e, a)
    if e.dtype.kind in STRING_KINDS or a.dtype.kind in STRING_KINDS:
        return _object_difference(e, a)
    if e.dtype.kind == "V" or a.dtype.kind == "V":
        if e.dtype.itemsize != a.dtype.itemsize or e.tobytes() != a.tobytes():
            return f"opaque bytes differ ({a.dtype} where {e.dtype} was expected)"
        return None
    if _kind(e.dtype) != _kind(a.dtype):
        return f"dtype {a.dtype} where {e.dtype} was expected"
    return _numeric_difference(e, a)


def _kind(dtype: np.dtype) -> tuple[str, int]:
    return dtype.kind, dtype.itemsize


def _numeric_difference(e: np.ndarray, a: np.ndarray) -> str | None:
    nan_aware = e.dtype.kind in "fcmM"
    if np.array_equal(e, a, equal_nan=nan_aware):
        return None
    if e.dtype.kind in "fc":
        differs = ~((e == a) | (np.isnan(e) & np.isnan(a)))
    elif e.dtype.kind in "mM":
        differs = ~((e == a) | (np.isnat(e) & np.isnat(a)))
    else:
        differs = e != a
    return _first_difference(e, a, np.argwhere(np.atleast_1d(differs)), int(differs.sum()))


def _first_difference(e: np.ndarray, a: np.ndarray, where: np.ndarray, count: int) -> str:
    index = tuple(int(i) for i in where[0]) if e.ndim else ()
    return (
        f"{count} of {e.size} values differ; first at {list(index)}: "
        f"{_short(a[index])} where {_short(e[index])} was expected"
    )


def _fields_difference(e: np.ndarray, a: np.ndarray) -> str | None:
    if not (e.dtype.names and a.dtype.names):
        return f"dtype {a.dtype} where {e.dtype} was expected"
    if list(e.dtype.names) != list(a.dtype.names):
        return f"fields {list(a.dtype.names)} where {list(e.dtype.names)} were expected"
    for name in e.dtype.names:
        found = difference(e[name], a[name])
        if found:
            return f"field {name!r}: {found}"
    return None


def _object_difference(e: np.ndarray, a: np.ndarray) -> str | None:
    """Element by element, as Python values (strings decoded, sequences as lists)."""
    if e.dtype.kind not in STRING_KINDS and e.dtype.kind != "V" and a.dtype.kind in "SU":
        return f"dtype {a.dtype} where {e.dtype} was expected"
    ev, av = e.ravel(), a.ravel()
    for i in range(ev.size):
        x, y = plain(ev[i]), plain(av[i])
        if not same(x, y):
            index = list(np.unravel_index(i, e.shape)) if e.ndim else []
            count = sum(not same(plain(p), plain(q)) for p, q in zip(ev, av, strict=True))
            return (
                f"{count} of {e.size} values differ; first at {[int(j) for j in index]}: "
                f"{_short(y)} where {_short(x)} was expected"
            )
    return None


def plain(value: Any) -> Any:
    """A value as plain Python: bytes decoded, arrays and tuples as lists, numpy scalars unwrapped."""
    if isinstance(value, bytes | np.bytes_):
        return bytes(value).decode("utf-8", "surrogateescape")
    if isinstance(value, np.ndarray):
        if value.dtype.names:
            return [plain(value[n]) for n in value.dtype.names]
        return [plain(v) for v in value.ravel()] + [("shape", value.shape)]
    if isinstance(value, np.void) and value.dtype.names:
        return [plain(value[n]) for n in value.dtype.names]
    if isinstance(value, tuple | list):
        return [plain(v) for v in value]
    if isinstance(value, np.generic):
        return plain(value.item())
    return value


def same(x: Any, y: Any) -> bool:
    """Plain values equal, NaN equal to NaN."""
    if isinstance(x, float) and isinstance(y, float):
        return x == y or (math.isnan(x) and math.isnan(y))
    if isinstance(x, list) and isinstance(y, list):
        return len(x) == len(y) and all(same(p, q) for p, q in zip(x, y, strict=True))
    try:
        return bool(x == y)
    except (TypeError, ValueError):
        return False


def _short(value: Any, limit: int = 60) -> str:
    text = repr(plain(value) if not isinstance(value, np.ndarray) else value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
