"""What every scanner shares: refusing a dataset it cannot describe exactly, naming nodes
the way Zarr allows, the names to drop, and splitting contiguous data into chunks."""

from __future__ import annotations

import math
import urllib.parse
import warnings
from collections.abc import Iterable
from typing import Any, Literal

from zarr_manifest_store.errors import UnsupportedDatasetError

__all__ = [
    "CONTIGUOUS_CHUNK_BYTES",
    "Refusals",
    "Refused",
    "check_chunk_bytes",
    "dropped_names",
    "file_name",
    "rows_per_chunk",
    "zarr_name",
]

CONTIGUOUS_CHUNK_BYTES = 8 * 2**20
"""Default target size of the chunks that large uncompressed contiguous data is split into."""


def dropped_names(drop_variables: str | Iterable[str] | None) -> set[str]:
    """A scanner's ``drop_variables`` as a set of names (one name may come as a string)."""
    if isinstance(drop_variables, str):
        return {drop_variables}
    return set(drop_variables or ())


class Refused(Exception):
    """A dataset that cannot be described exactly; the message is the reason (see Refusals)."""


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
                    f"{self.source}: left out dataset {quoted(name)}: {reason}",
                    UserWarning,
                    stacklevel=3,
                )
            return
        listing = "\n".join(f"  {quoted(name)} {reason}" for name, reason in self.reasons.items())
        raise UnsupportedDatasetError(
            f"{self.source}: {len(self.reasons)} dataset(s) cannot be described exactly:\n"
            f"{listing}\n"
            "Pass on_unsupported='skip' to leave them out (with a warning each), or "
            f"drop_variables={sorted(self.reasons)!r}."
        )


def quoted(name: str) -> str:
    r"""A name in quotes as it is, not as ``repr`` escapes it (``'a\b'``, not ``'a\\b'``), so
    that a warning names the very object: ``"`` quotes a name holding ``'``."""
    return f'"{name}"' if "'" in name else f"'{name}'"


_RESERVED = frozenset({".", "..", "zarr.json"})
"""Names no Zarr node can have (besides those starting with ``__``)."""


def zarr_name(name: str) -> str:
    r"""A file's node name as a legal Zarr node name, reversibly (see :func:`file_name`).

    Zarr reserves names starting with ``__`` (AnnData's ``__categories``, say),
    ``.``, ``..`` and ``zarr.json`` name no node, and zarr-python reads a ``\``
    in a path as ``/`` (HyperSpy's ``$t-\lambda$``); such a name, and a name
    starting with ``%``, is stored with its first character percent-encoded
    (``%5F_categories``, ``%7Aarr.json``) and every ``%`` and ``\`` after it too
    (``%24t-%5Clambda$``), so that every stored name maps back to exactly one
    name in the file. Other names are unchanged.

    >>> zarr_name("__categories"), zarr_name("%5F"), zarr_name("_FillValue"), zarr_name(".")
    ('%5F_categories', '%255F', '_FillValue', '%2E')
    >>> zarr_name("a\\b%c"), zarr_name("\u00e9\\")
    ('%61%5Cb%25c', '%C3%A9%5C')
    """
    if name.startswith(("__", "%")) or name in _RESERVED or "\\" in name:
        rest = name[1:].replace("%", "%25").replace("\\", "%5C")
        first = "".join(f"%{byte:02X}" for byte in name[0].encode())
        return first + rest
    return name


def with_stored_coordinates(attributes: dict[str, Any]) -> dict[str, Any]:
    """``attributes`` with the names of a CF ``coordinates`` attribute as :func:`zarr_name`
    stores those variables, so that they stay coordinates in every view."""
    value = attributes.get("coordinates")
    if not isinstance(value, str):
        return attributes
    names = value.split()
    stored = [zarr_name(name) for name in names]
    return attributes if stored == names else {**attributes, "coordinates": " ".join(stored)}


def file_name(stored: str) -> str:
    r"""The node name in the file that :func:`zarr_name` stored as ``stored``.

    >>> file_name("%5F_categories"), file_name("%255F"), file_name("%7Aarr.json"), file_name("x")
    ('__categories', '%5F', 'zarr.json', 'x')
    >>> file_name("%61%5Cb%25c"), file_name("%C3%A9%5C") == "\u00e9\\"
    ('a\\b%c', True)
    """
    code = stored[1:3]
    if stored.startswith("%") and len(code) == 2 and all(c in "0123456789ABCDEF" for c in code):
        return urllib.parse.unquote(stored)
    return stored


def check_chunk_bytes(contiguous_chunk_bytes: int | None) -> None:
    """Refuse a ``contiguous_chunk_bytes`` (the scanners' option) that is neither None nor positive."""
    if contiguous_chunk_bytes is not None and contiguous_chunk_bytes < 1:
        raise ValueError(f"contiguous_chunk_bytes must be positive, got {contiguous_chunk_bytes}")


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
