"""What part of a value a zarr ``ByteRequest`` asks for: the store's one reading of zarr's
byte-range types (a malformed request is refused, an unknown type is a TypeError)."""

from __future__ import annotations

from zarr.abc.store import ByteRequest, OffsetByteRequest, RangeByteRequest, SuffixByteRequest

__all__ = ["window", "window_of"]


def window(byte_range: ByteRequest | None, size: int) -> tuple[int, int]:
    """The ``[start, stop)`` slice of a value of ``size`` bytes that ``byte_range`` asks for."""
    if byte_range is None:
        return 0, size
    if isinstance(byte_range, RangeByteRequest):
        if byte_range.start < 0 or byte_range.end < byte_range.start:
            raise ValueError(f"invalid byte range {byte_range}: need 0 <= start <= end")
        return min(byte_range.start, size), min(byte_range.end, size)
    if isinstance(byte_range, OffsetByteRequest):
        if byte_range.offset < 0:
            raise ValueError(f"invalid byte range {byte_range}: the offset is negative")
        return min(byte_range.offset, size), size
    if isinstance(byte_range, SuffixByteRequest):
        if byte_range.suffix < 0:
            raise ValueError(f"invalid byte range {byte_range}: the suffix is negative")
        return max(0, size - byte_range.suffix), size
    raise TypeError(f"Unexpected byte_range, got {byte_range!r}")


def window_of(data: bytes, byte_range: ByteRequest | None) -> bytes:
    """The part of a joined chunk's bytes that ``byte_range`` asks for."""
    start, stop = window(byte_range, len(data))
    return data[start:stop]
