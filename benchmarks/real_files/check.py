"""Check one file: scan it, compare every dataset with h5py / scipy and every netCDF view with xarray.

:func:`check_file` is the whole check of one file, in this process; the
runner's workers call it with a :class:`Recorder` that writes each record as
a JSON line as soon as it has it, so that a timeout or a crash still leaves
what was checked before.
"""

from __future__ import annotations

import json
import time
import traceback
import warnings
from collections.abc import Callable
from typing import Any, TextIO

import h5py
import zarr

import zarr_manifest_store as zms

from .datasets import check_hdf5, check_netcdf3, first_line, h5py_visit
from .fetch import sniff_path
from .views import check_views

MAX_GROUPS = 20
"""Groups compared through xarray per file: the root, then subgroups in h5py's order."""


class Recorder:
    """The result of one file's check, built from events that may also be streamed as JSON lines."""

    def __init__(self, path: str, fmt: str, stream: TextIO | None = None) -> None:
        self.result: dict[str, Any] = {
            "path": path,
            "format": fmt,
            "stage": "start",
            "times": {},
            "warnings": [],
            "error": None,
            "h5py_datasets": None,
            "datasets": [],
            "views": [],
            "view_times": [],
        }
        self.stream = stream

    def event(self, kind: str, payload: Any) -> None:
        """Apply one event (and stream it)."""
        apply(self.result, kind, payload)
        if self.stream is not None:
            self.stream.write(json.dumps({kind: payload}, default=str) + "\n")
            self.stream.flush()

    @staticmethod
    def assemble(path: str, fmt: str, lines: list[str]) -> dict[str, Any]:
        """The result a (possibly interrupted) worker's JSON lines describe."""
        recorder = Recorder(path, fmt)
        for line in lines:
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                break  # the last line of a killed worker may be cut
            for kind, payload in event.items():
                apply(recorder.result, kind, payload)
        return recorder.result


def apply(result: dict[str, Any], kind: str, payload: Any) -> None:
    if kind == "time":
        result["times"].update(payload)
    elif kind in ("dataset", "view"):
        result[f"{kind}s"].append(payload)
    elif kind == "view_time":
        result["view_times"].append(payload)
    else:  # stage, warnings, error, h5py_datasets
        result[kind] = payload


def check_file(
    path: str, fmt: str | None = None, *, recorder: Recorder | None = None
) -> dict[str, Any]:
    """Scan ``path`` and classify its datasets and netCDF views (see the package docstring).

    ``recorder`` receives the records as they come (a worker streams them).
    """
    fmt = fmt or sniff_path(path) or "unknown"
    rec = recorder or Recorder(path, fmt)
    if fmt == "hdf5":
        rec.event("stage", "h5py-visit")
        seconds, count = h5py_visit(path)
        rec.event("time", {"h5py_visit": seconds})
        rec.event("h5py_datasets", count)
    rec.event("stage", "scan")
    group, messages, failure = _timed(rec, "scan", lambda: scan(path))
    rec.event("warnings", messages)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zarr's notes on unstable data types, on every read
        root, store, failure = _open(rec, group, failure, path)
        if failure:
            rec.event("error", {"stage": rec.result["stage"], "message": failure})
        rec.event("stage", "datasets")
        check = check_hdf5 if fmt == "hdf5" else check_netcdf3
        for record in check(path, root, messages, failure):
            rec.event("dataset", record)
        if root is not None:
            rec.event("stage", "views")
            for record in check_views(path, fmt, store, _groups(path, fmt), messages):
                rec.event("view_time" if "timing" in record else "view", record)
    rec.event("stage", "done")
    return rec.result


def _open(
    rec: Recorder, group: zms.ManifestGroup | None, failure: str, path: str
) -> tuple[zarr.Group | None, zms.ManifestStore | None, str]:
    """The scan served by a ManifestStore and opened by zarr: (root, store, failure)."""
    if group is None:
        return None, None, failure
    rec.event("stage", "open_group")
    try:
        store = zms.ManifestStore(group)
        return _timed(rec, "open_group", lambda: zarr.open_group(store, mode="r")), store, ""
    except Exception as e:
        return None, None, describe(e, path)


def scan(path: str) -> tuple[zms.ManifestGroup | None, list[str], str]:
    """The scan with ``on_unsupported="skip"``: (group or None, warnings, failure)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            group, failure = zms.scan(path, on_unsupported="skip"), ""
        except Exception as e:
            group, failure = None, describe(e, path)
    return group, [str(w.message).replace(path, "<file>") for w in caught if _ours(w)], failure


def _ours(caught: warnings.WarningMessage) -> bool:
    """Not one of zarr's / numcodecs' notes on unstable specifications (they name no dataset)."""
    return not caught.category.__module__.startswith(("zarr", "numcodecs"))


def describe(error: BaseException, path: str) -> str:
    """An exception's type and first line, and the innermost frame it came from."""
    frames = traceback.extract_tb(error.__traceback__)
    ours = [f for f in frames if "zarr_manifest_store" in f.filename] or frames
    where = f" [{ours[-1].filename.rsplit('/', 1)[-1]}:{ours[-1].lineno}]" if ours else ""
    return first_line(error).replace(path, "<file>") + where


def _timed(rec: Recorder, name: str, work: Callable[[], Any]) -> Any:
    start = time.perf_counter()
    try:
        return work()
    finally:
        rec.event("time", {name: time.perf_counter() - start})


def _groups(path: str, fmt: str) -> list[str]:
    if fmt != "hdf5":
        return [""]
    names: list[str] = []
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Group) else None)
    return ["", *names[: MAX_GROUPS - 1]]
