"""Write docs/reference.md from the docstrings and the command line's help.

Run ``python docs/make_reference.py`` after changing a public docstring or option;
``tests/test_docs.py`` fails while the committed reference differs from what this writes.
"""

from __future__ import annotations

import inspect
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

OUTPUT = Path(__file__).with_name("reference.md")

SECTIONS = {
    "Scanning files": ["scan", "scan_hdf5", "scan_netcdf3", "scan_kerchunk"],
    "xarray": ["open_virtual_dataset", "open_virtual_mfdataset"],
    "Documents and stores": ["write_manifest", "ManifestStore", "VerifyReport", "SourceStatus"],
    "The model": ["ChunkManifest", "ChunkRef", "ManifestArray", "ManifestGroup", "concat"],
    "kerchunk references": ["to_kerchunk"],
    "Icechunk repositories": ["to_icechunk", "icechunk_containers", "scan_icechunk"],
    "Errors": ["ManifestError", "UnsupportedDatasetError", "SourceChangedError"],
}
"""Where each name of ``zarr_manifest_store.__all__`` goes; names not listed go to "Other names"."""

COMMANDS = ["scan", "info", "verify", "to-kerchunk", "demo"]

_DIRECTIVE = re.compile(r"\s*# doctest:.*$")
_ROLE = re.compile(r":(?:class|func|meth|attr|data|mod|exc|obj):`~?([^`]+)`")


def render() -> str:
    """The reference, as Markdown."""
    import zarr_manifest_store as zms

    lines = [
        "# Reference",
        "",
        "Generated from the docstrings and the command line's help by `docs/make_reference.py`;",
        "edit those, then run `python docs/make_reference.py`.",
        "",
        "- [Command line](#command-line)",
    ]
    names = list(zms.__all__)
    sections = {title: [n for n in members if n in names] for title, members in SECTIONS.items()}
    listed = {n for members in sections.values() for n in members}
    if other := [n for n in names if n not in listed]:
        sections["Other names"] = other
    lines += [f"- [{title}](#{_anchor(title)})" for title in sections]
    lines += ["", "## Command line", ""]
    lines += _commands()
    for title, members in sections.items():
        lines += ["", f"## {title}", ""]
        for name in members:
            lines += _entry(f"zms.{name}", getattr(zms, name))
        if title == "xarray":
            lines += _accessor()
    return "\n".join(lines).rstrip() + "\n"


def _commands() -> list[str]:
    from zarr_manifest_store.cli import make_parser

    os.environ["COLUMNS"] = "100"  # argparse wraps help to the terminal: keep the text stable
    parser = make_parser()
    lines = ["```text", parser.format_help().rstrip(), "```"]
    subparsers = next(a for a in parser._actions if a.dest == "command")
    for command in COMMANDS:
        lines += ["", f"### zarr-manifest {command}", "", "```text"]
        lines += [subparsers.choices[command].format_help().rstrip(), "```"]
    return lines


def _accessor() -> list[str]:
    from zarr_manifest_store.xarray.accessor import VirtualizeAccessor
    from zarr_manifest_store.xarray.backend import ManifestBackendEntrypoint

    lines = _entry("ds.virtualize", VirtualizeAccessor, members=True)
    lines += _entry(
        'xr.open_dataset(url, engine="zarr_manifest")', ManifestBackendEntrypoint, members=False
    )
    return lines


def _entry(title: str, obj: Any, members: bool | None = None) -> list[str]:
    lines = [f"### {title}", ""]
    if inspect.isclass(obj) and issubclass(obj, BaseException):
        lines += [f"`class {obj.__name__}({obj.__mro__[1].__name__})`", ""]
    elif callable(obj):
        lines += ["```py", _signature(obj), "```", ""]
    lines += _markdown(inspect.getdoc(obj) or "")
    if members is None:
        members = inspect.isclass(obj) and not issubclass(obj, BaseException | tuple)
    if members:
        for name, member in _members(obj):
            doc = _own_doc(member)
            lines += ["", f"#### `.{name}`", ""]
            if not isinstance(member, property):
                lines += ["```py", f"def {name}{_parameters(member)}", "```", ""]
            lines += _markdown(doc) if doc else ["(undocumented)"]
    return [*lines, ""]


def _members(cls: type) -> Iterator[tuple[str, Any]]:
    """Public members the class defines itself, leaving out zarr's Store interface."""
    from zarr.abc.store import Store

    store_api = set(vars(Store)) if issubclass(cls, Store) else set()
    for name, member in vars(cls).items():
        if name.startswith("_") or name in store_api:
            continue
        if isinstance(member, classmethod | staticmethod):
            member = member.__func__
        if isinstance(member, property) or inspect.isfunction(member):
            yield name, member


def _own_doc(member: Any) -> str:
    function = member.fget if isinstance(member, property) else member
    return inspect.cleandoc(function.__doc__ or "")


def _signature(obj: Any) -> str:
    name = obj.__name__
    if inspect.isclass(obj):
        return f"class {name}{_parameters(obj)}"
    return f"def {name}{_parameters(obj)}"


def _parameters(obj: Any) -> str:
    """``(a, b: int = 1, *, c: str | None = None)``, annotations as written, ``self`` left out."""
    try:
        signature = inspect.signature(obj)
    except (TypeError, ValueError):
        return "(...)"
    parts: list[str] = []
    keyword_only = False
    for name, p in signature.parameters.items():
        if name in ("self", "cls"):
            continue
        if p.kind is p.KEYWORD_ONLY and not keyword_only:
            parts.append("*")
        keyword_only |= p.kind in (p.KEYWORD_ONLY, p.VAR_POSITIONAL)
        text = {p.VAR_POSITIONAL: "*", p.VAR_KEYWORD: "**"}.get(p.kind, "") + name
        if p.annotation is not p.empty:
            annotation = getattr(p.annotation, "__forward_arg__", p.annotation)
            if not isinstance(annotation, str):
                annotation = inspect.formatannotation(annotation)
            text += f": {annotation}"
        if p.default is not p.empty:
            text += f" = {p.default!r}" if p.annotation is not p.empty else f"={p.default!r}"
        parts.append(text)
    one_line = "(" + ", ".join(parts) + ")"
    if len(one_line) <= 80:
        return one_line
    return "(\n" + "".join(f"    {part},\n" for part in parts) + ")"


def _markdown(doc: str) -> list[str]:
    """A docstring as Markdown: roles as code, doctest examples as ``pycon`` blocks."""
    lines: list[str] = []
    example = False
    for line in doc.splitlines():
        if line.startswith((">>>", "...")) or (example and line.strip()):
            if not example:
                lines += ["```pycon"]
                example = True
            lines.append(_DIRECTIVE.sub("", line))
            continue
        if example:
            lines += ["```"]
            example = False
        lines.append(_ROLE.sub(lambda m: f"`{m.group(1).rsplit('.', 1)[-1]}`", line))
    if example:
        lines.append("```")
    return lines


def _anchor(title: str) -> str:
    return re.sub(r"[^a-z0-9 -]", "", title.lower()).replace(" ", "-")


def main() -> int:
    text = render()
    OUTPUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUTPUT} ({len(text.splitlines())} lines)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
