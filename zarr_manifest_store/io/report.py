"""The outcome of checking a store's sources: one :class:`SourceStatus` per file, in a
:class:`VerifyReport` (what ``ManifestStore.verify`` and ``zarr-manifest verify`` return)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple

from zarr_manifest_store.manifest import Fingerprint

__all__ = ["SourceStatus", "VerifyReport"]


class SourceStatus(NamedTuple):
    """The outcome of checking one source file (see :meth:`Sources.verify`).

    ``status`` is ``"ok"``, ``"changed"`` (fingerprint mismatch),
    ``"truncated"`` (shorter than the chunks it should hold), ``"missing"``,
    ``"forbidden"`` (outside the allow-list) or ``"unreadable"``.

    >>> import zarr_manifest_store as zms
    >>> zms.write_manifest(zms.scan("data/era_2026-01-02.nc"), "checked.zarr", mode="w")
    >>> [status] = zms.ManifestStore.open("checked.zarr", allow=["data/"]).verify().sources
    >>> status.status, status.path.endswith("era_2026-01-02.nc"), status.recorded == status.current
    ('ok', True, True)
    """

    path: str
    status: Literal["ok", "changed", "truncated", "missing", "forbidden", "unreadable"]
    detail: str
    recorded: Fingerprint | None = None
    current: Fingerprint | None = None


@dataclass(frozen=True)
class VerifyReport:
    """Every source of a store, checked: ``report.ok`` is True when all can be read as scanned.

    >>> report = VerifyReport((SourceStatus("/data/a.nc", "missing", "not found"),))
    >>> report.ok, [s.path for s in report.problems]
    (False, ['/data/a.nc'])
    """

    sources: tuple[SourceStatus, ...]

    @property
    def ok(self) -> bool:
        """True when every source can be read as it was scanned."""
        return not self.problems

    @property
    def problems(self) -> tuple[SourceStatus, ...]:
        """The sources whose status is not ``"ok"``."""
        return tuple(s for s in self.sources if s.status != "ok")

    def __str__(self) -> str:
        lines = [
            f"{len(self.sources)} source(s) checked, {len(self.problems)} problem(s)",
            *(f"{s.status:>10}  {s.path}: {s.detail}" for s in self.sources),
        ]
        return "\n".join(lines)
