"""GeoTIFF: its tags kept as attributes, and a CF grid mapping where the tags make one exact.

A GeoTIFF places its raster by an affine transform, from ModelPixelScale and
one ModelTiepoint or from ModelTransformation, and names its coordinate
reference system by GeoKeys. Without rotation the transform gives 1-D ``x`` and
``y`` coordinates of the pixel centres, as rioxarray computes them (GDAL's
convention: a PixelIsPoint raster's tiepoint is a pixel's centre, and an
overview spans the image with proportionally larger pixels); the
``spatial_ref`` variable carries the GDAL ``GeoTransform`` and, where the CRS
is an EPSG code and pyproj is installed, its WKT and CF grid-mapping
attributes. A rotated transform, or several tiepoints (ground control points),
keeps only the tags.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from zarr_manifest_store.array import ManifestArray
from zarr_manifest_store.cf import json_attribute
from zarr_manifest_store.manifest import INLINE, ChunkManifest

try:
    import pyproj
except ImportError:  # the CRS's WKT is left out without it
    pyproj = None

__all__ = ["GEO_TAGS", "Transform", "coordinates", "geo_attributes", "transform_of"]

GEO_TAGS = {
    33550: "ModelPixelScaleTag",
    33922: "ModelTiepointTag",
    34264: "ModelTransformationTag",
    34735: "GeoKeyDirectoryTag",
    34736: "GeoDoubleParamsTag",
    34737: "GeoAsciiParamsTag",
    42112: "GDAL_METADATA",
    42113: "GDAL_NODATA",
}
"""The GeoTIFF (and GDAL) tags kept as the image's attributes, by their tifffile names."""
_USER_DEFINED = 32767
_MODEL_TYPE, _RASTER_TYPE, _GEOGRAPHIC_TYPE, _PROJECTED_TYPE = 1024, 1025, 2048, 3072
_PIXEL_IS_POINT = 2


@dataclass(frozen=True)
class Transform:
    """GDAL's affine geotransform without rotation: ``x = x0 + column * dx``, ``y = y0 + row * dy``."""

    x0: float
    dx: float
    y0: float
    dy: float
    width: int
    height: int
    geokeys: dict[int, Any]

    def scaled(self, width: int, height: int) -> Transform:
        """The transform of an overview of ``width`` x ``height`` pixels (GDAL's rule)."""
        dx, dy = self.dx * self.width / width, self.dy * self.height / height
        return Transform(self.x0, dx, self.y0, dy, width, height, self.geokeys)

    @property
    def geotransform(self) -> str:
        """GDAL's ``GeoTransform`` attribute, as rioxarray writes it."""
        return " ".join(str(float(v)) for v in (self.x0, self.dx, 0.0, self.y0, 0.0, self.dy))

    @property
    def epsg(self) -> int | None:
        """The EPSG code of the CRS, if the GeoKeys give one."""
        geographic = self.geokeys.get(_MODEL_TYPE) == 2
        code = self.geokeys.get(_GEOGRAPHIC_TYPE if geographic else _PROJECTED_TYPE)
        return code if isinstance(code, int) and 0 < code < _USER_DEFINED else None


def geo_attributes(tags: Any) -> dict[str, Any]:
    """The GeoTIFF tags of a page as attributes (JSON values), by tag name."""
    out = {}
    for code, name in GEO_TAGS.items():
        tag = tags.get(code)
        if tag is not None:
            value = tag.value
            out[name] = value if isinstance(value, str) else json_attribute(np.asarray(value))
    return out


def transform_of(tags: Any, width: int, height: int) -> Transform | None:
    """The image's transform, if its tags give one without rotation (None otherwise)."""
    geokeys = _geokeys(tags)
    matrix = _values(tags, 34264)
    if matrix is not None and len(matrix) == 16:
        if matrix[1] or matrix[4]:
            return None  # rotated or sheared: no 1-D coordinates
        x0, dx, y0, dy = matrix[3], matrix[0], matrix[7], matrix[5]
    else:
        scale, tiepoint = _values(tags, 33550), _values(tags, 33922)
        if scale is None or tiepoint is None or len(scale) < 2 or len(tiepoint) != 6:
            return None
        dx, dy = scale[0], -scale[1]
        x0, y0 = tiepoint[3] - tiepoint[0] * dx, tiepoint[4] - tiepoint[1] * dy
    if not (dx and dy and all(np.isfinite([x0, dx, y0, dy]))):
        return None
    if geokeys.get(_RASTER_TYPE) == _PIXEL_IS_POINT:
        x0, y0 = x0 - dx / 2, y0 - dy / 2
    return Transform(float(x0), float(dx), float(y0), float(dy), width, height, geokeys)


def coordinates(transform: Transform) -> dict[str, ManifestArray]:
    """``x``, ``y`` (pixel centres) and ``spatial_ref`` (the grid mapping), held inline."""
    geographic = transform.geokeys.get(_MODEL_TYPE) == 2
    x = (np.arange(transform.width) + 0.5) * transform.dx + transform.x0
    y = (np.arange(transform.height) + 0.5) * transform.dy + transform.y0
    if geographic:
        x_attrs = {"standard_name": "longitude", "units": "degrees_east", "axis": "X"}
        y_attrs = {"standard_name": "latitude", "units": "degrees_north", "axis": "Y"}
    else:
        x_attrs = {"standard_name": "projection_x_coordinate", "axis": "X"}
        y_attrs = {"standard_name": "projection_y_coordinate", "axis": "Y"}
    return {
        "x": _inline(x, ["x"], x_attrs),
        "y": _inline(y, ["y"], y_attrs),
        "spatial_ref": _inline(np.array(0, dtype="<i8"), [], _grid_mapping(transform)),
    }


def _grid_mapping(transform: Transform) -> dict[str, Any]:
    """The ``spatial_ref`` variable's attributes: the GeoTransform, and the CRS where exact."""
    attrs: dict[str, Any] = {"GeoTransform": transform.geotransform}
    code = transform.epsg
    if code is None:
        return attrs
    attrs["epsg_code"] = f"EPSG:{code}"
    if pyproj is None:
        return attrs
    with contextlib.suppress(pyproj.exceptions.CRSError):
        crs = pyproj.CRS.from_epsg(code)
        cf = crs.to_cf()
        attrs.update({k: v for k, v in cf.items() if k != "crs_wkt"})
        attrs["crs_wkt"] = attrs["spatial_ref"] = crs.to_wkt()
    return attrs


def _inline(values: np.ndarray, dims: list[str], attrs: dict[str, Any]) -> ManifestArray:
    """A small array whose one chunk is kept in the manifest."""
    values = np.asarray(values, dtype=values.dtype.newbyteorder("<"))
    grid = tuple(1 for _ in values.shape)
    metadata = {
        "shape": list(values.shape),
        "data_type": "float64" if values.dtype.kind == "f" else "int64",
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": list(values.shape)}},
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
        "fill_value": 0,
        "codecs": [{"name": "bytes", "configuration": {"endian": "little"}}],
        "attributes": attrs,
        "dimension_names": dims,
    }
    manifest = ChunkManifest(
        paths=[],
        path_index=np.full(grid, INLINE, dtype=np.uint32),
        offsets=np.zeros(grid, dtype=np.uint64),
        lengths=np.zeros(grid, dtype=np.uint64),
        inline={(0,) * len(grid): values.tobytes()},
    )
    return ManifestArray(metadata=metadata, manifest=manifest)


def _values(tags: Any, code: int) -> list[float] | None:
    tag = tags.get(code)
    return None if tag is None else [float(v) for v in np.ravel(tag.value)]


def _geokeys(tags: Any) -> dict[int, Any]:
    """The GeoKeys whose values the directory holds itself (short values), by key."""
    directory = _values(tags, 34735)
    if not directory or len(directory) < 4:
        return {}
    entries = np.asarray(directory[4:], dtype=np.int64)
    entries = entries[: len(entries) // 4 * 4].reshape(-1, 4)
    return {int(key): int(value) for key, where, _, value in entries if where == 0}
