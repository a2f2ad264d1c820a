"""Record families: arrays served in rows whose rows lie in one file at the same places but
for a shift each (the record variables of a netCDF-3 file).

A family's served chunk ``n`` of every member lies within one range of the file (the
records it spans), so one read of that range gives every member its chunk: a strided copy
(:meth:`Family.cut`), which also turns the stored byte order to the served one.
:mod:`.served_blocks` decides where the range comes from (the file's memory map, records
kept from another member's read, or a read now); this module says where it lies and how a
member's chunk is cut from it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

import numpy as np

from zarr_manifest_store.array import ManifestArray
from zarr_manifest_store.io.sources import ByteData
from zarr_manifest_store.manifest import INLINE

__all__ = ["Family", "RowArray", "families_of"]


class RowArray(Protocol):
    """An array served in rows, as its family and the blocks see it."""

    path: str
    array: ManifestArray
    stored_dtype: np.dtype
    served_dtype: np.dtype

    def rows(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Path index, offset and length of each stored chunk along the first axis."""
        ...

    @property
    def factor(self) -> int:
        """Stored chunks per served chunk."""
        ...

    @property
    def fill_row(self) -> np.ndarray:
        """One stored chunk of fill values as served."""
        ...


class Family:
    """Arrays served in rows whose rows all lie in one file, at the same places but for a
    shift each: the record variables of a netCDF-3 file. A served chunk of every member is
    cut from one read of its records."""

    __slots__ = ("bit", "everyone", "factor", "id", "members", "path", "shifts", "starts")

    def __init__(self, number: int, path: str, members: list[RowArray], starts: np.ndarray):
        self.id, self.path, self.members = number, path, members
        self.bit = {m.path: 1 << i for i, m in enumerate(members)}
        self.everyone = (1 << len(members)) - 1
        self.factor = members[0].factor
        first = min(int(m.rows()[1][0]) for m in members)
        self.shifts = {m.path: int(m.rows()[1][0]) - first for m in members}
        self.starts = starts - starts[0] + first  # where each record's first member row lies

    def region(self, number: int) -> tuple[int, int] | None:
        """Where the records of served chunk ``number`` lie, ``(start, span)``; None unless
        they are evenly spaced."""
        starts = self.starts[number * self.factor : (number + 1) * self.factor]
        steps = np.diff(starts)
        if len(starts) == 0 or (len(steps) and (steps[0] <= 0 or (steps != steps[0]).any())):
            return None
        return int(starts[0]), self._span(starts)

    def _span(self, starts: np.ndarray) -> int:
        """The bytes from the first member row of ``starts[0]`` to the last of ``starts[-1]``."""
        last = max(self.shifts[m.path] + m.fill_row.nbytes for m in self.members)
        return int(starts[-1] - starts[0]) + last

    def cut(self, member: RowArray, number: int, data: ByteData, out: np.ndarray) -> None:
        """Cut served chunk ``number`` of ``member`` from ``data``, the bytes of its records,
        into ``out``: rows of the member's ``served_dtype`` (swapped in this one copy where
        they differ from the stored), at least as many as the chunk has; rows past them
        take the fill value."""
        first = number * self.factor
        starts = self.starts[first : first + self.factor]
        fill, dtype = member.fill_row, member.stored_dtype
        stride = int(starts[1] - starts[0]) if len(starts) > 1 else fill.nbytes
        span = self._span(starts)
        if len(data) != span:
            raise OSError(f"reading {self.path!r} gave {len(data)} bytes, not {span}")
        rows = np.ndarray(
            (len(starts), len(fill)),
            dtype,
            data,
            self.shifts[member.path],
            (stride, dtype.itemsize),
        )
        out[: len(starts)] = rows
        out[len(starts) :] = fill


def families_of(arrays: Iterable[RowArray]) -> dict[str, Family]:
    """The family of each array that has one (of two members or more), by array."""
    groups: dict[tuple[Any, ...], list[RowArray]] = {}
    for served in arrays:
        index, offsets, lengths = served.rows()
        size = served.fill_row.nbytes
        if not len(index) or index[0] >= INLINE or (index != index[0]).any():
            continue  # rows in several files, missing or inline: read row by row
        if (lengths != size).any():
            continue  # refused when read, naming the chunk
        path = served.array.manifest.paths[int(index[0])]
        key = (served.factor, path, (offsets - offsets[0]).tobytes())
        groups.setdefault(key, []).append(served)
    families: dict[str, Family] = {}
    for number, ((_, path, _), members) in enumerate(groups.items()):
        if len(members) < 2:
            continue
        family = Family(number, path, members, members[0].rows()[1])
        families.update((m.path, family) for m in members)
    return families
