"""scan_grib: a GRIB2 file's messages, their headers read, gathered into hypercubes (see the package)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from zarr_manifest_store.errors import UnsupportedDatasetError
from zarr_manifest_store.format_codecs.grib_sections import END, MAGIC, frame
from zarr_manifest_store.group import ManifestGroup
from zarr_manifest_store.io.paths import source_path
from zarr_manifest_store.scan.common import Refusals, dropped_names
from zarr_manifest_store.scan.grib.hypercubes import Message, hypercubes
from zarr_manifest_store.scan.grib.keys import Field, header_signature, look_up, message_times
from zarr_manifest_store.scan.source import scan_source

__all__ = ["scan_grib"]

HEAD_WINDOW = 4096
"""Bytes read at the start of each message: its headers, in one read, for most messages."""


def scan_grib(
    url: str | os.PathLike[str],
    *,
    group: str | None = None,
    drop_variables: str | Iterable[str] | None = None,
    on_unsupported: str = "raise",
    storage_options: dict[str, Any] | None = None,
) -> ManifestGroup:
    """Describe a GRIB2 file as a ManifestGroup, reading only its messages' headers.

    Each message is a chunk of a float32 array decoded by the
    ``zarr_manifest_store.grib`` codec (ecCodes: the ``grib`` extra), so that
    ``xr.open_zarr(ManifestStore(g))`` equals ``xr.open_dataset(url, engine="cfgrib")``.
    A file of one hypercube gives its arrays at the root; a file of several
    (which cfgrib opens one at a time with ``filter_by_keys``) gives a group
    each, named ``<typeOfLevel>_<stepType>`` (``_2``, ``_3``, ... when one pair
    holds several hypercubes); ``group`` selects one of them. Fields that
    cannot be read exactly are refused (``on_unsupported="skip"``: left out
    with a warning); ``drop_variables`` names variables to leave out.

    >>> g = scan_grib("era5-levels.grib2")  # doctest: +SKIP
    >>> xr.open_zarr(zms.ManifestStore(g)).t.dims  # doctest: +SKIP
    ('isobaricInhPa', 'latitude', 'longitude')
    """
    path = source_path(url)
    refusals = Refusals(path, on_unsupported)
    dropped = dropped_names(drop_variables)
    with scan_source(path, storage_options) as source:
        found = list(_messages(path, source.size, source.sources.read_sync))
        if not found:
            raise UnsupportedDatasetError(f"{path!r} holds no GRIB message")
        messages = [m for m in found if _readable(m.field, dropped, refusals)]
    refusals.finish()
    groups = _named(hypercubes(messages, path, source.fingerprint))
    if group not in (None, "", "/"):
        if group.strip("/") not in groups:
            raise ValueError(
                f"{path!r} has no hypercube {group!r}; it has {sorted(groups) or 'none'}"
            )
        return groups[group.strip("/")]
    if len(groups) == 1:
        return next(iter(groups.values()))
    attributes = {"Conventions": "CF-1.7"}
    return ManifestGroup(groups=groups, attributes=attributes)


def _named(cubes: dict[tuple[str, ...], ManifestGroup]) -> dict[str, ManifestGroup]:
    """Each hypercube's group name: ``<typeOfLevel>_<stepType>``, with ``_<n>`` from the second."""
    return {
        f"{level}_{step}" + ("" if n == "1" else f"_{n}"): cube
        for (level, step, n), cube in cubes.items()
    }


def _readable(field: Field, dropped: set[str], refusals: Refusals) -> bool:
    if field.name in dropped:
        return False
    if field.refused is not None:
        refusals.add(field.name, f"(on {field.type_of_level} levels): {field.refused}")
        return False
    return True


def _messages(path: str, size: int, read: Callable[[str, int, int], bytes]) -> Iterator[Message]:
    """Every message of the file, with its field; only the headers are read.

    Bytes between messages (padding) are skipped, as ecCodes skips them.
    """
    fields: dict[bytes, Field] = {}
    offset = 0
    while offset < size:
        window = bytes(read(path, offset, min(HEAD_WINDOW, size - offset)))
        if not window.startswith(MAGIC):
            offset = _next_message(path, size, read, offset)
            continue

        def take(start: int, end: int, window: bytes = window, at: int = offset) -> bytes:
            if end <= len(window):
                return window[start:end]
            return bytes(read(path, at + start, min(end, size - at) - start))

        try:
            framing = frame(take, size - offset)
            head = take(0, framing.data_start)
            signature, timed = header_signature(framing, head)
            time, step = message_times(framing, head, timed)
        except ValueError as e:  # MessageError, or a date that is no date
            raise UnsupportedDatasetError(
                f"{path!r}: the GRIB message at byte {offset} is refused: {e}"
            ) from None
        field = fields.get(signature)
        if field is None:
            field = fields[signature] = _look_up(path, offset, framing.sections[3], head)
            _check_times(path, offset, field, time, step)
        yield Message(offset, framing.length, field, time, step if timed else field.step)
        offset += framing.length


def _next_message(path: str, size: int, read: Callable[[str, int, int], bytes], offset: int) -> int:
    """Where the next message starts at or after ``offset`` (``size`` if none does)."""
    while offset < size:
        window = bytes(read(path, offset, min(HEAD_WINDOW, size - offset)))
        found = window.find(MAGIC)
        if found >= 0:
            return offset + found
        if offset + len(window) >= size:
            return size
        offset += len(window) - len(MAGIC) + 1
    return size


def _look_up(path: str, offset: int, grid: tuple[int, int], head: bytes) -> Field:
    """The field of a message's headers, from ecCodes, given the headers and an empty section 7."""
    length = len(head) + 5 + len(END)
    stub = MAGIC + head[4:8] + length.to_bytes(8, "big") + head[16:] + b"\x00\x00\x00\x05\x07" + END
    try:
        field = look_up(stub)
    except ImportError:
        raise
    except Exception as e:
        raise UnsupportedDatasetError(
            f"{path!r}: ecCodes cannot read the headers of the GRIB message at byte {offset}: {e}"
        ) from None
    start, length = grid
    field.grid = head[start : start + length]
    return field


def _check_times(path: str, offset: int, field: Field, time: int, step: float | None) -> None:
    """The times read from a message's bytes must be those ecCodes gives for it."""
    if field.time != time or (step is not None and field.step != step):
        raise UnsupportedDatasetError(
            f"{path!r}: the GRIB message at byte {offset} has a reference time or step "
            f"({time}, {step}) that ecCodes reads otherwise ({field.time}, {field.step}); "
            f"it cannot be read exactly"
        )
