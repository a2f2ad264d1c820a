"""Counts per class and per package, failure classes, slow files: as text and as JSON."""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from typing import Any

DATASET_CLASSES = ("exact", "refused", "missing", "wrong", "read-error", "file-error", "unreadable")
VIEW_CLASSES = ("equal", "mismatch", "refused", "unreadable", "open_zarr-differs")
SLOW_SCAN_RATIO = 2.0  # scan <= 2x h5py's visit of the file (issue 18)
SLOW_READ_RATIO = 5.0  # xr.open_zarr(...).load() <= 5x xr.open_dataset(...).load()
SLOW_OPEN_GROUP = 1.0  # zarr.open_group on the store, seconds
MIN_SECONDS = 0.5  # below this, a ratio is noise
MIN_REFERENCE = 0.05  # an empty view loads in no time at all
SLOW_FILE = 60.0  # seconds of ours per file: scan, open, and every view loaded (issue 18)


def signature(reason: str) -> str:
    """A reason with names, numbers and shapes blanked, so that reasons of one kind group."""
    text = reason.splitlines()[0] if reason else ""
    text = re.sub(r"(?<![A-Za-z])'[^']*'|\"[^\"]*\"", "'…'", text)
    text = re.sub(r"([<>|=])([USVa-z])\d+", r"\1\2N", text)  # <U12, |S3, <f8 ...
    text = re.sub(r"\[[^\]]*\]|\([\d, ]*\)", "[…]", text)
    text = re.sub(r"(?<![A-Za-z_\d])-?\d+(\.\d+)?(e-?\d+)?", "N", text)
    return text


def failures(results: list[dict[str, Any]]) -> dict[tuple[str, str], list[str]]:
    """Every non-exact item, as 'label :: item :: reason' lines, by (class, signature)."""
    groups: dict[tuple[str, str], list[str]] = defaultdict(list)
    for r in results:
        label = f"{r['package']}/{r['member']}"
        reasons = " ".join(str(d.get("reason")) for d in [*r["datasets"], *r["views"]])
        for message in r["warnings"]:
            if _first(message) not in reasons:  # not a dataset's refusal: an attribute, a link, ...
                groups[("scan-warning", signature(message))].append(f"{label} :: {message}")
        if r["error"]:
            message = r["error"]["message"]
            groups[("file", signature(message))].append(f"{label} :: {message}")
        for d in r["datasets"]:
            if d["class"] not in ("exact", "not-a-variable", "file-error"):
                reason = d.get("reason", "")
                groups[(d["class"], signature(reason))].append(
                    f"{label} :: {d['name']} :: {reason}"
                )
        for v in r["views"]:
            if v["class"] != "equal":
                where = f"{v['group'] or '/'}:{v['variable']} ({v['engine']})"
                reason = v.get("reason", "")
                groups[(f"view-{v['class']}", signature(reason))].append(
                    f"{label} :: {where} :: {reason}"
                )
    return dict(sorted(groups.items(), key=lambda kv: (kv[0][0], -len(kv[1]))))


def _first(message: str) -> str:
    return message.strip().splitlines()[0] if message.strip() else ""


def slow(result: dict[str, Any]) -> list[str]:
    """What was slow in one file's check, against the issue's targets."""
    t = result["times"]
    out = []
    ours = t.get("scan", 0.0) + t.get("open_group", 0.0)
    ours += sum(vt["timing"]["open_zarr"] for vt in result["view_times"])
    if ours > SLOW_FILE:
        out.append(f"{ours:.1f} s of ours (scan, open, views), over {SLOW_FILE:g} s")
    scan, visit = t.get("scan", 0.0), t.get("h5py_visit")
    if visit is not None and scan > MIN_SECONDS and scan > SLOW_SCAN_RATIO * visit:
        out.append(f"scan {scan:.2f} s = {scan / visit:.1f}x h5py's visit ({visit:.2f} s)")
    if t.get("open_group", 0.0) > SLOW_OPEN_GROUP:
        out.append(f"zarr.open_group {t['open_group']:.2f} s")
    for vt in result["view_times"][:1]:
        ref, ours = vt["timing"]["open_dataset"], vt["timing"]["open_zarr"]
        if ours > MIN_SECONDS and ours > SLOW_READ_RATIO * max(ref, MIN_REFERENCE):
            out.append(f"xr.open_zarr + load {ours:.2f} s, xr.open_dataset + load {ref:.2f} s")
    return out


def summarize(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Totals and per-package counts."""
    per_package: dict[str, dict[str, Any]] = {}
    for r in results:
        p = per_package.setdefault(r["package"], _empty(r["version"]))
        _add(p, r)
    total = _empty("")
    for r in results:
        _add(total, r)
    return {"total": total, "packages": per_package}


def _empty(version: str) -> dict[str, Any]:
    return {"version": version, "files": 0, "datasets": Counter(), "views": Counter(),
            "file_errors": 0, "timeouts": 0, "slow": 0}  # fmt: skip


def _add(counts: dict[str, Any], r: dict[str, Any]) -> None:
    counts["files"] += 1
    counts["datasets"].update(d["class"] for d in r["datasets"])
    counts["views"].update(v["class"] for v in r["views"])
    counts["file_errors"] += bool(r["error"])
    counts["timeouts"] += bool(r["error"] and r["error"]["message"].startswith("timeout"))
    counts["slow"] += bool(slow(r))


def text_report(results: list[dict[str, Any]], max_items: int = 20) -> str:
    """The summary table, the failure classes with their items, the slow files."""
    summary = summarize(results)
    header = [
        "package",
        "files",
        *DATASET_CLASSES,
        "| views:",
        *VIEW_CLASSES,
        "|",
        "errors",
        "slow",
    ]
    rows = [_row(f"{name}=={c['version']}", c) for name, c in summary["packages"].items()]
    rows.append(_row("TOTAL", summary["total"]))
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=True)]
    lines = [
        "  ".join(str(x).rjust(w) for x, w in zip(row, widths, strict=True))
        for row in [header, *rows]
    ]
    lines.append("")
    for (cls, sig), items in failures(results).items():
        lines.append(f"[{cls}] x{len(items)}: {sig}")
        lines.extend(f"    {item}" for item in items[:max_items])
        if len(items) > max_items:
            lines.append(f"    ... and {len(items) - max_items} more (see the JSON report)")
    lines.append("")
    for r in results:
        for what in slow(r):
            lines.append(f"[slow] {r['package']}/{r['member']}: {what}")
    return "\n".join(lines)


def _row(name: str, c: dict[str, Any]) -> list[Any]:
    return [name, c["files"], *(c["datasets"][k] for k in DATASET_CLASSES), "|",
            *(c["views"][k] for k in VIEW_CLASSES), "|", c["file_errors"], c["slow"]]  # fmt: skip


def json_report(results: list[dict[str, Any]], command: str) -> dict[str, Any]:
    """Everything: the command, the counts, the failure classes and every file's records."""
    return {
        "command": command,
        "summary": summarize(results),
        "failure_classes": [
            {"class": cls, "signature": sig, "count": len(items), "items": items}
            for (cls, sig), items in failures(results).items()
        ],
        "slow": {f"{r['package']}/{r['member']}": slow(r) for r in results if slow(r)},
        "files": results,
    }
