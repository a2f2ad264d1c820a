"""GRIB2 message framing, read from the bytes: where each message and its sections lie.

A GRIB2 message is section 0 (``GRIB``, the discipline, the edition, the total
length), sections 1 to 7 (each a 4-byte length and its number), then ``7777``.
Both the scanner (which reads the sections' headers only, never the data) and
the codec (which checks a chunk before ecCodes sees it) walk them here, so that
no malformed length reaches the C library.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["END", "MAGIC", "Framing", "MessageError", "frame", "identification_time"]

MAGIC = b"GRIB"
END = b"7777"
_SECTION0 = 16
_SECTION_HEAD = 5


class MessageError(ValueError):
    """A message whose framing is malformed; the message says what (not where)."""


@dataclass(frozen=True)
class Framing:
    """One GRIB2 message: its length and the (start, length) of each section, by number.

    Offsets are relative to the message's first byte.
    """

    length: int
    discipline: int
    sections: dict[int, tuple[int, int]]

    @property
    def data_start(self) -> int:
        """Where section 7 (the packed values) starts: the bytes before it are the headers."""
        return self.sections[7][0]


def frame(read: Callable[[int, int], bytes], available: int) -> Framing:
    """The framing of the message whose bytes ``read(start, end)`` gives (``available`` of them).

    Raises :class:`MessageError` for anything but one well-formed GRIB2 field:
    a bad signature, another edition, a length past the bytes available,
    sections that overrun the message or come out of order, several fields in
    one message, or a missing ``7777``.
    """
    head = read(0, _SECTION0)
    if head[:4] != MAGIC:
        raise MessageError(f"it does not start with {MAGIC!r} (found {head[:4]!r})")
    if len(head) < _SECTION0:
        raise MessageError(f"it is cut short: {len(head)} bytes, fewer than section 0's 16")
    if head[7] != 2:
        raise MessageError(
            f"it is a GRIB edition {head[7]} message; only GRIB2 is read (convert GRIB1 "
            f"with ecCodes' grib_set -s edition=2)"
        )
    length = int.from_bytes(head[8:16], "big")
    if length > available:
        raise MessageError(f"its length {length} runs past the {available} bytes there are")
    sections: dict[int, tuple[int, int]] = {}
    pos, last = _SECTION0, 0
    while pos < length - len(END):
        part = read(pos, pos + _SECTION_HEAD)
        size, number = int.from_bytes(part[:4], "big"), part[4]
        if size < _SECTION_HEAD or pos + size > length - len(END) or not last < number <= 7:
            raise MessageError(
                f"section {number} at byte {pos} (length {size}) does not fit the message of "
                f"{length} bytes after section {last}" + _multi(number, last)
            )
        sections[number] = (pos, size)
        pos, last = pos + size, number
    if pos != length - len(END) or read(pos, pos + len(END)) != END:
        raise MessageError(f"it does not end with {END!r} at byte {length - len(END)}")
    missing = {1, 3, 4, 5, 7} - set(sections)
    if missing:
        raise MessageError(f"it has no section {min(missing)}")
    return Framing(length, head[6], sections)


def _multi(number: int, last: int) -> str:
    if number and number <= last:
        return " (a message of several fields, which is not read: split it with grib_copy)"
    return ""


def identification_time(section1: bytes) -> tuple[int, int, int, int, int]:
    """(year, month, day, hour, minute) of the reference time in section 1's bytes."""
    return (
        int.from_bytes(section1[12:14], "big"),
        section1[14],
        section1[15],
        section1[16],
        section1[17],
    )
