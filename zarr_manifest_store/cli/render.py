"""What ``zarr-manifest info`` prints: a document's hierarchy as a tree, or as JSON."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from zarr_manifest_store.array import ManifestArray
from zarr_manifest_store.group import ManifestGroup
from zarr_manifest_store.summary import ArraySummary, DocumentSummary, arrays_of, groups_of

__all__ = ["describe", "format_bytes", "plural", "render"]


def describe(name: str, root: ManifestGroup | ManifestArray) -> dict[str, Any]:
    """``info --json``: the document's groups and arrays, and totals."""
    summaries = _summaries(root)
    arrays = []
    for path, array in arrays_of(root):
        s = summaries[path]
        names = array.dimension_names
        arrays.append(
            {
                "path": path,
                "shape": list(array.shape),
                "dtype": str(array.dtype),
                "dimension_names": None if names is None else list(names),
                "chunk_grid": array.metadata.chunk_grid.to_dict(),
                "codecs": [c.to_dict() for c in array.metadata.codecs],
                "chunks": s.chunks,
                "references": s.references,
                "inline": s.inline,
                "missing": s.missing,
                "sources": len(s.sources),
                "bytes_referenced": s.bytes_referenced,
                "bytes_inline": s.bytes_inline,
            }
        )
    groups = [{"path": p, "attributes": len(g.attributes)} for p, g in groups_of(root)]
    totals = vars(DocumentSummary.of(root, summaries))
    return {"document": name, "groups": groups, "arrays": arrays, "totals": totals}


def render(name: str, root: ManifestGroup | ManifestArray) -> str:
    """``info``: the hierarchy as a tree, two detail lines under each array, totals last."""
    summaries = _summaries(root)
    lines = [f"{name}: chunk-manifest document"]
    if isinstance(root, ManifestArray):
        lines += _array_lines("/ (root array)", root, summaries[""], "    ")
    else:
        lines.append(f"/ ({plural(len(root.attributes), 'attribute')})")
        lines += _tree(root, "", "", summaries)
    t = DocumentSummary.of(root, summaries)
    where = f" in {plural(t.groups + 1, 'group')}" if t.groups else ""
    missing = (
        f"{t.missing:,} missing ({_percent(t.missing, t.chunks)})" if t.missing else "none missing"
    )
    lines.append(
        f"total: {plural(t.arrays, 'array')}{where}, {plural(t.chunks, 'chunk')}: "
        f"{plural(t.references, 'reference')} to {plural(t.sources, 'source file')} "
        f"({format_bytes(t.bytes_referenced)}), {t.inline:,} inline; {missing}"
    )
    return "\n".join(lines) + "\n"


def _tree(
    group: ManifestGroup, prefix: str, indent: str, summaries: Mapping[str, ArraySummary]
) -> Iterator[str]:
    names = list(group)
    for i, name in enumerate(names):
        branch, below = ("└── ", "    ") if i == len(names) - 1 else ("├── ", "│   ")
        node = group[name]
        if isinstance(node, ManifestGroup):
            yield f"{indent}{branch}{name}/ ({plural(len(node.attributes), 'attribute')})"
            yield from _tree(node, f"{prefix}{name}/", indent + below, summaries)
        else:
            summary = summaries[f"{prefix}{name}"]
            yield from _array_lines(
                f"{indent}{branch}{name}", node, summary, indent + below + "    "
            )


def _array_lines(head: str, array: ManifestArray, s: ArraySummary, indent: str) -> list[str]:
    """An array's line (``head``, dtype, dimensions) and two detail lines: chunks and codecs, then where they are."""
    codecs = ", ".join(_codec_text(c.to_dict()) for c in array.metadata.codecs)
    held = []
    if s.references:
        held.append(
            f"{plural(s.references, 'reference')} to {plural(len(s.sources), 'source')} "
            f"({format_bytes(s.bytes_referenced)})"
        )
    if s.inline:
        held.append(f"{s.inline:,} inline ({format_bytes(s.bytes_inline)})")
    missing = "none missing"
    if s.missing:
        fill = _scalar(array.fill_value)
        missing = (
            f"{s.missing:,} missing ({_percent(s.missing, s.chunks)}, read as fill value {fill!r})"
        )
    return [
        f"{head}  {array.dtype} {_dims(array)}",
        f"{indent}chunks {_chunk_text(array)}; codecs {codecs}",
        f"{indent}{plural(s.chunks, 'chunk')}: {', '.join(held) or 'none stored'}; {missing}",
    ]


def _dims(array: ManifestArray) -> str:
    names = array.dimension_names
    if names is None:
        return str(array.shape)
    return "(" + ", ".join(f"{d}: {n}" for d, n in zip(names, array.shape, strict=True)) + ")"


def _chunk_text(array: ManifestArray) -> str:
    grid = array.metadata.chunk_grid.to_dict()
    config = grid["configuration"]  # type: ignore[index]
    if grid["name"] == "regular":  # type: ignore[index]
        shape = tuple(config["chunk_shape"])  # type: ignore[index]
    else:
        shape = tuple(
            sizes[0] if len(set(sizes)) == 1 else f"{min(sizes)}..{max(sizes)}"
            for sizes in (s or (0,) for s in array.chunk_sizes)
        )
        return f"{_tuple(shape)} (rectilinear), grid {_tuple(array.manifest.shape)}"
    return f"{_tuple(shape)}, grid {_tuple(array.manifest.shape)}"


def _tuple(items: Sequence[Any]) -> str:
    return "(" + ", ".join(map(str, items)) + ("," if len(items) == 1 else "") + ")"


def _codec_text(codec: Mapping[str, Any]) -> str:
    """A codec as ``name(key=value, ...)``, nested codec lists by name."""
    name = str(codec.get("name", "?")).removeprefix("numcodecs.")
    config = codec.get("configuration") or {}
    parts = []
    for key, value in config.items():
        if isinstance(value, list) and all(isinstance(v, Mapping) for v in value):
            value = "[" + ", ".join(_codec_text(v) for v in value) + "]"
        parts.append(f"{key}={value}")
    return f"{name}({', '.join(parts)})" if parts else name


def _scalar(value: Any) -> Any:
    """A NumPy scalar as the Python value it holds (so that it prints as ``-1.0``, not ``np.float32(-1.0)``)."""
    return value.item() if isinstance(value, np.generic) else value


def _percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "0%"


def plural(n: int, noun: str) -> str:
    """``"1 file"``, ``"2 files"``, ``"1,024 files"``."""
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def format_bytes(n: int) -> str:
    """A byte count in binary units.

    >>> format_bytes(512), format_bytes(3 * 2**20 + 2**19)
    ('512 B', '3.5 MiB')
    """
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _summaries(root: ManifestGroup | ManifestArray) -> dict[str, ArraySummary]:
    return {path: ArraySummary.of(array) for path, array in arrays_of(root)}
