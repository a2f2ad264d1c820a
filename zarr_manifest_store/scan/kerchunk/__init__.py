"""Import kerchunk references (JSON spec versions 0 and 1, or fsspec's parquet layout) as a ManifestGroup.

A reference set describes a Zarr v2 hierarchy whose chunks are either bytes
(inline, raw or ``base64:``) or ``[url, offset, length]`` / ``[url]`` (a whole
file). Version 1 adds ``templates`` (``{{name}}`` in urls) and ``gen``
(references generated from jinja2 templates over ranges); both are expanded
here the way fsspec's ``ReferenceFileSystem`` does. Array metadata becomes
Zarr v3 through :func:`zarr_manifest_store.v2.v2_to_v3`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from typing import Any

from zarr_manifest_store.array import ManifestArray
from zarr_manifest_store.errors import UnsupportedDatasetError
from zarr_manifest_store.group import ManifestGroup
from zarr_manifest_store.scan.common import Refusals, zarr_name
from zarr_manifest_store.scan.kerchunk.chunks import Targets
from zarr_manifest_store.scan.kerchunk.references import load
from zarr_manifest_store.scan.registry import Folder, Format, Head
from zarr_manifest_store.v2 import v2_to_v3

__all__ = ["FORMAT", "scan_kerchunk"]


def scan_kerchunk(
    refs: str | os.PathLike[str] | Mapping[str, Any],
    *,
    group: str | None = None,
    drop_variables: str | Iterable[str] | None = None,
    on_unsupported: str = "raise",
    storage_options: Mapping[str, Any] | None = None,
    remote_protocol: str | None = None,
) -> ManifestGroup:
    """Read kerchunk references (a dict, a JSON file, or a parquet folder) as a ManifestGroup.

    Compressor and filters become Zarr v3 codecs, ``_ARRAY_DIMENSIONS`` the
    ``dimension_names``, and the v2 ``fill_value`` (xarray's CF fill value
    for v2) the ``_FillValue`` attribute, so ``xr.open_zarr(ManifestStore(g))``
    equals xarray reading the references through fsspec. ``group`` opens a
    subgroup; ``drop_variables`` leaves arrays of that group out.
    ``storage_options`` reach fsspec for the reference files and for sizing
    whole-file references; ``remote_protocol`` is prefixed to urls that have
    none (as fsspec's option of that name). Arrays that Zarr v3 cannot express
    (unknown codecs) raise ``UnsupportedDatasetError``, or with
    ``on_unsupported="skip"`` are left out with a warning each.

    >>> g = scan_kerchunk("refs.json")
    >>> xr.open_zarr(zms.ManifestStore(g)).t2m.shape
    (24, 73, 144)
    >>> g = scan_kerchunk("s3://bucket/refs.parq", storage_options={"anon": True})  # doctest: +SKIP
    """
    name = "references" if isinstance(refs, Mapping) else repr(os.fspath(refs))
    refusals = Refusals(name, on_unsupported)  # type: ignore[arg-type]  # it checks the value
    options = dict(storage_options or {})
    loaded = load(refs, options)
    targets = Targets(remote_protocol, options)
    metadata = loaded.metadata
    if any(k == "zarr.json" or k.endswith("/zarr.json") for k in metadata):
        raise UnsupportedDatasetError(
            f"{name} hold Zarr v3 metadata (zarr.json); only kerchunk's Zarr v2 references are read"
        )
    if ".zarray" in metadata:
        raise UnsupportedDatasetError(
            f"{name} describe a single array at the root; scan_kerchunk reads groups of named arrays"
        )
    prefix = (group or "").strip("/")
    if prefix and not any(k.startswith(f"{prefix}/") for k in metadata):
        raise KeyError(f"{name} have no group {group!r}")
    dropped = {drop_variables} if isinstance(drop_variables, str) else set(drop_variables or ())
    base = f"{prefix}/" if prefix else ""
    wanted = [  # in the references' order, as xarray lists variables
        path
        for key in metadata
        if key.endswith("/.zarray")
        and (path := key.removesuffix("/.zarray")).startswith(base)
        and path.removeprefix(base) not in dropped
    ]
    converted: dict[str, dict[str, Any]] = {}
    for path in wanted:
        try:
            zattrs = metadata.get(f"{path}/.zattrs", {})
            converted[path] = v2_to_v3(path, metadata[f"{path}/.zarray"], zattrs)
        except UnsupportedDatasetError as e:
            refusals.add(path, str(e).removeprefix(f"array {path!r}: "))
    chunks = loaded.chunks(converted)
    built = {
        path: ManifestArray(metadata=meta, manifest=chunks[path].manifest(path, meta, targets))
        for path, meta in converted.items()
    }
    refusals.finish()
    return _tree(prefix, metadata, built)


def _tree(
    prefix: str, metadata: Mapping[str, Any], arrays: Mapping[str, ManifestArray]
) -> ManifestGroup:
    """The group at ``prefix``, with its arrays and (implicit or explicit) subgroups (names
    Zarr reserves escaped, as the HDF5 scan escapes them)."""
    base = f"{prefix}/" if prefix else ""
    members: dict[str, ManifestArray] = {}
    subgroups: set[str] = set()
    for path, array in arrays.items():
        if not path.startswith(base):
            continue
        rest = path.removeprefix(base)
        if "/" in rest:
            subgroups.add(rest.partition("/")[0])
        else:
            members[zarr_name(rest)] = array
    for key in metadata:
        rest = key.removeprefix(base)
        if key.startswith(base) and rest.endswith("/.zgroup"):  # not this group's own .zgroup
            subgroups.add(rest.partition("/")[0])
    attributes = metadata.get(f"{base}.zattrs", {})
    groups = {
        zarr_name(name): _tree(f"{base}{name}", metadata, arrays) for name in sorted(subgroups)
    }
    return ManifestGroup(arrays=members, groups=groups, attributes=attributes)


# ---------------------------------------------------------------------- recognising references


def _looks_like_json(file: Head) -> bool:
    """A JSON object: what a reference file starts with (after a byte-order mark or blanks)."""
    return file.head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{")


def _is_parquet_folder(folder: Folder) -> bool:
    """Parquet references: a ``.zmetadata`` that holds a ``record_size``."""
    try:
        index = json.loads(folder.read(".zmetadata") or b"null")
    except ValueError:
        return False
    return isinstance(index, dict) and "record_size" in index


FORMAT = Format(
    name="kerchunk",
    scan=scan_kerchunk,
    description="kerchunk references (a JSON object, or a parquet folder)",
    sniff=_looks_like_json,
    sniff_folder=_is_parquet_folder,
    folder_description="kerchunk parquet references (a .zmetadata file with a record_size)",
    sniff_mapping=lambda refs: True,  # a mapping given to zms.scan is references held in memory
)
"""Kerchunk references in the format registry: JSON files, parquet folders and mappings."""
