"""scan_tiff: a TIFF file's series as groups of arrays, through tifffile (see the package)."""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping
from typing import Any, Literal

from zarr_manifest_store.array import ManifestArray
from zarr_manifest_store.group import ManifestGroup
from zarr_manifest_store.io.paths import source_path
from zarr_manifest_store.scan.common import Refusals, Refused, dropped_names
from zarr_manifest_store.scan.source import scan_source
from zarr_manifest_store.scan.tiff.geo import coordinates, geo_attributes, transform_of
from zarr_manifest_store.scan.tiff.segments import Image, image_array

try:
    import tifffile
except ImportError:  # the formats extra is optional; scanning then names it
    tifffile = None

__all__ = ["scan_tiff"]

_MASK = 4  # NewSubfileType: a transparency mask


def scan_tiff(
    url: str | os.PathLike[str],
    *,
    group: str | None = None,
    drop_variables: Collection[str] | str | None = None,
    on_unsupported: Literal["raise", "skip"] = "raise",
    storage_options: Mapping[str, Any] | None = None,
) -> ManifestGroup:
    """Scan a TIFF / BigTIFF / GeoTIFF / COG file into a :class:`ManifestGroup` of chunk references.

    The first series' image is the array ``image`` (``mask`` beside it), its
    overview levels the groups ``1``, ``2``, ..., further series the groups
    ``series1``, ... (``group`` scans one of them: ``"1"``, ``"series1/2"``);
    ``drop_variables`` names arrays or groups to leave out, as paths relative
    to it. An image that cannot be read exactly raises
    :class:`~zarr_manifest_store.UnsupportedDatasetError` (``on_unsupported="raise"``)
    or is left out with a warning (``"skip"``). Values equal
    ``tifffile.TiffFile(url).series[i].levels[j].asarray()``.

    >>> import numpy as np, tifffile, zarr_manifest_store as zms
    >>> tifffile.imwrite("/tmp/scan_tiff_doc.tif", np.arange(64, dtype="u2").reshape(8, 8),
    ...                  tile=(16, 16), compression="zlib")
    >>> g = zms.scan_tiff("/tmp/scan_tiff_doc.tif")
    >>> zarr.open_group(zms.ManifestStore(g), mode="r")["image"][0, :4].tolist()
    [0, 1, 2, 3]
    """
    if tifffile is None:
        raise ImportError(
            "scanning TIFF files needs tifffile: pip install 'zarr-manifest-store[formats]'"
        )
    path = source_path(url)
    refusals = Refusals(path, on_unsupported)
    prefix = "" if group in (None, "", "/") else group.strip("/") + "/"
    dropped = {prefix + name.strip("/") for name in dropped_names(drop_variables)}
    with (
        scan_source(path, storage_options) as source,
        source.file() as f,
        tifffile.TiffFile(f) as tif,
    ):
        fingerprint = source.fingerprint
        image = Image(path, fingerprint.size or 0, fingerprint, tif.byteorder)
        root = _hierarchy(tif, image, refusals, dropped, prefix)
    refusals.finish()
    return _subgroup(root, prefix, path)


def _hierarchy(
    tif: Any, image: Image, refusals: Refusals, dropped: set[str], prefix: str
) -> ManifestGroup:
    """The root group: the first series, with the others as groups ``series1``, ..."""
    images: list[tuple[Any, list[Any]]] = []
    for series in tif.series:
        if images and series.keyframe is not None and series.keyframe.subfiletype & _MASK:
            images[-1][1].append(series)
        else:
            images.append((series, []))
    if not images:
        return ManifestGroup()
    root = _series_group(*images[0], image, refusals, dropped, "", prefix)
    others = {}
    for k, (series, masks) in enumerate(images[1:], start=1):
        name = f"series{k}"
        if name not in dropped and _wanted(name, prefix):
            others[name] = _series_group(series, masks, image, refusals, dropped, name, prefix)
    return root.replace(groups={**root.groups, **others})


def _series_group(
    series: Any,
    masks: list[Any],
    image: Image,
    refusals: Refusals,
    dropped: set[str],
    where: str,
    prefix: str,
) -> ManifestGroup:
    """A series' group: its full-resolution image (and mask), its overview levels as groups."""
    key = series.keyframe
    transform = transform_of(key.tags, key.imagewidth, key.imagelength) if key else None
    levels: list[ManifestGroup] = []
    for j, level in enumerate(series.levels):
        at = f"{where}/{j}".lstrip("/") if j else where
        if j and (at in dropped or not _wanted(at, prefix)):
            levels.append(ManifestGroup())
            continue
        layers = {"image": level}
        for m, mask in enumerate(masks):
            if j < len(mask.levels):
                layers["mask" if m == 0 else f"mask{m}"] = mask.levels[j]
        arrays: dict[str, ManifestArray] = {}
        level_key = level.keyframe
        level_transform = None
        if transform is not None and level_key is not None:
            level_transform = transform.scaled(level_key.imagewidth, level_key.imagelength)
            arrays.update(coordinates(level_transform))
        for name, layer in layers.items():
            path = f"{at}/{name}".lstrip("/")
            if path in dropped or not _wanted(path, prefix):
                continue
            attributes = geo_attributes(key.tags) if j == 0 and name == "image" else {}
            if level_transform is not None:
                attributes.update(grid_mapping="spatial_ref", coordinates="spatial_ref")
            try:
                arrays[name] = image_array(layer, image, attributes)
            except Refused as e:
                refusals.add(path, str(e))
        levels.append(ManifestGroup(arrays=arrays))
    groups = {str(j): g for j, g in enumerate(levels) if j and (g.arrays or g.groups)}
    return levels[0].replace(groups=groups)


def _wanted(path: str, prefix: str) -> bool:
    """Whether the node at ``path`` is inside (or above) the group ``prefix`` being scanned."""
    return not prefix or (path + "/").startswith(prefix) or prefix.startswith(path + "/")


def _subgroup(root: ManifestGroup, prefix: str, path: str) -> ManifestGroup:
    """The group at ``prefix`` (the root if it is empty)."""
    if not prefix:
        return root
    node = root
    for part in prefix.strip("/").split("/"):
        child = node.groups.get(part)
        if child is None:
            raise ValueError(f"{path!r} has no group {prefix.strip('/')!r}")
        node = child
    return node
