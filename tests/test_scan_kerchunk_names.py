"""Kerchunk references whose keys name nodes as Zarr does not allow (issue #18).

kerchunk's references to an AnnData file hold ``obs/__categories/...`` keys (Zarr reserves
``__``), and HyperSpy's groups hold a ``\\`` (zarr-python reads it as ``/``): the first failed
the whole file, the second left its array unreachable. Every nested explicit group also
showed a phantom empty subgroup named ``.zgroup``.
"""

from __future__ import annotations

import base64
import json
import warnings

import numpy as np
import zarr

import zarr_manifest_store as zms

DATA = np.arange(3, dtype="<i4")
ZARRAY = {
    "chunks": [3],
    "compressor": None,
    "dtype": "<i4",
    "fill_value": 0,
    "filters": None,
    "order": "C",
    "shape": [3],
    "zarr_format": 2,
}


def _array_refs(path: str) -> dict[str, str]:
    return {
        f"{path}/.zarray": json.dumps(ZARRAY),
        f"{path}/.zattrs": json.dumps({"_ARRAY_DIMENSIONS": ["n"]}),
        f"{path}/0": "base64:" + base64.b64encode(DATA.tobytes()).decode(),
    }


def _scan(tmp_path, refs):
    path = tmp_path / "refs.json"
    path.write_text(json.dumps({"version": 1, "refs": refs}))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing is left out
        return zms.scan(str(path), on_unsupported="raise")


def test_names_zarr_reserves_are_escaped_as_in_hdf5_scans(tmp_path):
    group_meta = json.dumps({"zarr_format": 2})
    refs = {
        ".zgroup": group_meta,
        "obs/.zgroup": group_meta,
        "obs/__categories/.zgroup": group_meta,
        **_array_refs("obs/__categories/cell"),
        **_array_refs("a\\b"),
    }
    root = zarr.open_group(zms.ManifestStore(_scan(tmp_path, refs)), mode="r")
    assert sorted(root.keys()) == ["%61%5Cb", "obs"]
    np.testing.assert_array_equal(root["%61%5Cb"][:], DATA)
    np.testing.assert_array_equal(root["obs/%5F_categories/cell"][:], DATA)


def test_nested_groups_have_no_phantom_zgroup_member(tmp_path):
    group_meta = json.dumps({"zarr_format": 2})
    refs = {".zgroup": group_meta, "g/.zgroup": group_meta, "g/h/.zgroup": group_meta}
    refs.update(_array_refs("g/h/v"))
    group = _scan(tmp_path, refs)
    assert [path for path, _ in group.walk()] == ["g", "g/h", "g/h/v"]
