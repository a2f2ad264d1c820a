"""scan_kerchunk: references made by real kerchunk (committed under tests/data/kerchunk) read exactly.

The fixtures were made by ``tests/data/kerchunk/make_references.py`` with
kerchunk's ``SingleHdf5ToZarr``, ``MultiZarrToZarr`` and ``refs_to_dataframe``;
their urls are relative, resolved against the working directory as fsspec does.
"""

from __future__ import annotations

import base64
import copy
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import zarr

import zarr_manifest_store as zms
from zarr_manifest_store.scan.kerchunk import scan_kerchunk

DATA = Path(__file__).parent / "data" / "kerchunk"


@pytest.fixture(autouse=True)
def in_data_folder(monkeypatch):
    monkeypatch.chdir(DATA)


def load(refs) -> xr.Dataset:
    return xr.open_zarr(zms.ManifestStore(scan_kerchunk(refs)), consolidated=False).load()


def through_fsspec(refs) -> xr.Dataset:
    """What xarray reads from the references through fsspec's ReferenceFileSystem."""
    options = {"fo": refs, "remote_protocol": "file"}
    return xr.open_dataset(
        "reference://",
        engine="zarr",
        backend_kwargs={"consolidated": False, "zarr_format": 2, "storage_options": options},
    ).load()


def source(*names: str) -> xr.Dataset:
    """The files' data; combined along time without the strings, as the fixture combined them."""
    days = [xr.open_dataset(DATA / n, engine="h5netcdf").load() for n in names]
    if len(days) == 1:
        return days[0]
    return xr.concat([d.drop_vars("zone") for d in days], dim="time", data_vars="minimal")


def refs_of(name: str) -> dict:
    return json.loads((DATA / name).read_text())


@pytest.mark.parametrize("name", ["day1.json", "day2.json", "combined.json"])
def test_kerchunk_json_reads_as_fsspec_reads_it(name):
    got = load(name)
    xr.testing.assert_identical(got, through_fsspec(name))
    files = ["day1.nc", "day2.nc"] if name == "combined.json" else [name.replace("json", "nc")]
    xr.testing.assert_equal(got, source(*files))


def test_multizarr_parquet_reads_like_its_json():
    """kerchunk's parquet (categorical paths, null for a missing chunk) imports exactly.

    fsspec itself cannot read this file's missing chunk: pandas turns the null
    path of a categorical column into NaN, which it then takes for a url.
    """
    from_parquet = scan_kerchunk("combined.parq")
    assert from_parquet.equals(scan_kerchunk("combined.json"))
    assert from_parquet["t2m"].manifest.get((11, 0, 0)) is None  # never written: fill value
    xr.testing.assert_equal(load("combined.parq"), source("day1.nc", "day2.nc"))


def test_codecs_fill_values_and_dimensions():
    g = scan_kerchunk("combined.json")
    t2m = g["t2m"].metadata.to_dict()
    assert [c["name"] for c in t2m["codecs"]] == ["bytes", "numcodecs.shuffle", "numcodecs.zlib"]
    assert t2m["dimension_names"] == ("time", "lat", "lon")
    assert "_ARRAY_DIMENSIONS" not in t2m["attributes"]
    assert g["t2m"].fill_value == -9999.0
    assert t2m["attributes"]["_FillValue"] == base64.b64encode(np.float64(-9999).tobytes()).decode()
    time = g["time"].metadata.to_dict()  # MultiZarrToZarr's combined coordinate: inline, zstd
    assert [c["name"] for c in time["codecs"]] == ["bytes", "zstd"]
    assert g["time"].manifest.inline
    assert g["lat"].manifest.get((0,)) == np.array([10.0, 20.0]).tobytes()  # raw inline string
    assert "_FillValue" not in g["sp"].attributes  # fill_value null: nothing masked
    assert g["t2m"].manifest.paths == (str(DATA / "day1.nc"), str(DATA / "day2.nc"))
    zone = scan_kerchunk("day1.json")["zone"].metadata.to_dict()  # embedded vlen strings
    assert zone["data_type"] == "string"
    assert [c["name"] for c in zone["codecs"]] == ["vlen-utf8"]


def test_version_0_and_templates_read_like_version_1():
    expected = scan_kerchunk("combined.json")
    v1 = refs_of("combined.json")
    assert scan_kerchunk(dict(v1["refs"])).equals(expected)  # version 0: refs at the top level

    templated = copy.deepcopy(v1)
    templated["templates"] = {"root": str(DATA), "d": "day"}
    for value in templated["refs"].values():
        if isinstance(value, list):
            value[0] = value[0].replace("day", "{{root}}/{{ d }}")
    assert scan_kerchunk(templated).equals(expected)


def test_gen_expands_jinja_templates_over_ranges():
    v1 = refs_of("day1.json")
    offsets = [v1["refs"][f"sp/{i}.0.0"][1] for i in range(3)]
    assert np.all(np.diff(offsets) == 320)  # the first three sp chunks follow each other
    for i in range(3):
        del v1["refs"][f"sp/{i}.0.0"]
    v1["templates"] = {"f": "day1.nc"}
    v1["gen"] = [
        {
            "key": "sp/{{i}}.0.0",
            "url": "{{f}}",
            "offset": f"{{{{ {offsets[0]} + i * 320 }}}}",
            "length": "320",
            "dimensions": {"i": {"stop": 3}},
        }
    ]
    assert scan_kerchunk(v1).equals(scan_kerchunk("day1.json"))


def test_inline_base64_and_whole_file_references(tmp_path):
    refs = refs_of("day1.json")["refs"]
    lon = np.arange(0.0, 360.0, 45.0)
    refs["lon/0"] = "base64:" + base64.b64encode(lon.tobytes()).decode()
    lat_file = tmp_path / "lat.bin"
    lat_file.write_bytes(np.array([10.0, 20.0]).tobytes())
    refs["lat/0"] = [str(lat_file)]  # the whole file is the chunk
    g = scan_kerchunk({"version": 1, "refs": refs})
    assert g["lat"].manifest.get((0,)) == (str(lat_file), 0, 16)
    xr.testing.assert_identical(load({"version": 1, "refs": refs}), load("day1.json"))


def test_group_and_drop_variables():
    refs = refs_of("day1.json")["refs"]
    nested = {".zgroup": refs[".zgroup"], "forecast/.zgroup": refs[".zgroup"]}
    nested["forecast/.zattrs"] = json.dumps({"kind": "forecast"})
    nested |= {f"forecast/{k}": v for k, v in refs.items() if not k.startswith(".z")}
    g = scan_kerchunk(nested, drop_variables="sp")
    assert list(g.groups) == ["forecast"]
    assert sorted(g["forecast"].arrays) == ["lat", "lon", "sp", "t2m", "time", "zone"]
    sub = scan_kerchunk(nested, group="forecast", drop_variables=["sp", "zone"])
    assert sorted(sub.arrays) == ["lat", "lon", "t2m", "time"]
    assert sub.attributes == {"kind": "forecast"}
    with pytest.raises(KeyError, match="no group 'analysis'"):
        scan_kerchunk(nested, group="analysis")


def test_fortran_order_and_dimension_separator(tmp_path):
    data = np.arange(12, dtype=">i4").reshape(3, 4)
    chunk = tmp_path / "chunk.bin"
    chunk.write_bytes(np.asfortranarray(data).tobytes(order="F"))
    zarray = {
        "zarr_format": 2,
        "shape": [3, 4],
        "chunks": [3, 4],
        "dtype": ">i4",
        "fill_value": 0,
        "order": "F",
        "filters": None,
        "compressor": None,
        "dimension_separator": "/",
    }
    refs = {
        ".zgroup": '{"zarr_format": 2}',
        "a/.zarray": json.dumps(zarray),
        "a/0/0": [str(chunk), 0, 48],
    }
    g = scan_kerchunk(refs)
    codecs = g["a"].metadata.to_dict()["codecs"]
    assert codecs[0] == {"name": "transpose", "configuration": {"order": (1, 0)}}
    assert codecs[1] == {"name": "bytes", "configuration": {"endian": "big"}}
    np.testing.assert_array_equal(zarr.open_group(zms.ManifestStore(g), mode="r")["a"][:], data)


def test_remote_references_and_remote_protocol(s3):
    fs, bucket, server = s3
    for name in ("day1.nc", "day1.json"):
        fs.put(str(DATA / name), f"{bucket}/{name}")
    options = server.storage_options
    from_s3 = scan_kerchunk(f"s3://{bucket}/day1.json", storage_options=options)
    assert from_s3.equals(scan_kerchunk("day1.json"))  # its relative urls: local, as for fsspec
    refs = refs_of("day1.json")
    for value in refs["refs"].values():
        if isinstance(value, list):
            value[0] = f"{bucket}/{value[0]}"
    g = scan_kerchunk(refs, remote_protocol="s3")
    assert g["t2m"].manifest.paths == (f"s3://{bucket}/day1.nc",)
    store = zms.ManifestStore(g, storage_options=options)
    xr.testing.assert_equal(xr.open_zarr(store, consolidated=False).load(), source("day1.nc"))


def test_parquet_records_never_written_are_missing_chunks(tmp_path):
    shutil.copytree(DATA / "combined.parq", tmp_path / "refs.parq")
    (tmp_path / "refs.parq" / "t2m" / "refs.1.parq").unlink()
    g = scan_kerchunk(tmp_path / "refs.parq")
    assert [g["t2m"].manifest.get((i, 0, 0)) for i in range(4, 8)] == [None] * 4
    assert g["t2m"].manifest.get((3, 0, 0)) is not None


def unsupported_refs(codec: dict) -> dict:
    refs = refs_of("day1.json")
    zarray = json.loads(refs["refs"]["t2m/.zarray"])
    zarray["filters"] = [codec]
    refs["refs"]["t2m/.zarray"] = json.dumps(zarray)
    return refs


def test_unknown_codecs_are_refused_or_skipped():
    refs = unsupported_refs({"id": "no-such-codec"})
    with pytest.raises(zms.UnsupportedDatasetError, match="'t2m' An implementation for codec 'no-"):
        scan_kerchunk(refs)
    with pytest.warns(UserWarning, match="left out dataset 't2m': An implementation for codec"):
        g = scan_kerchunk(refs, on_unsupported="skip")
    assert "t2m" not in g
    assert "sp" in g


def test_unusable_array_metadata_is_refused_by_name():
    refs = refs_of("day1.json")
    refs["refs"]["t2m/.zarray"] = json.dumps({"shape": [120, 2, 8], "chunks": [0, 2, 8]})
    with pytest.raises(zms.UnsupportedDatasetError, match=r"'t2m' unusable \.zarray"):
        scan_kerchunk(refs)


def test_pickled_objects_are_refused():
    refs = refs_of("day1.json")
    zarray = json.loads(refs["refs"]["lat/.zarray"])
    zarray |= {"dtype": "|O", "filters": [{"id": "pickle"}]}
    refs["refs"]["lat/.zarray"] = json.dumps(zarray)
    with pytest.raises(zms.UnsupportedDatasetError, match="'lat'"):
        scan_kerchunk(refs)


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        ({"version": 2}, zms.ManifestError, "unknown reference spec version 2"),
        ({"refs": {"t2m/0.0.0": 42}}, zms.ManifestError, r"'t2m/0.0.0': expected inline data"),
        ({"refs": {"t2m/99.0.0": ["day1.nc", 0, 4]}}, zms.ManifestError, "outside the chunk grid"),
        ({"refs": {"t2m/0.0": ["day1.nc", 0, 4]}}, zms.ManifestError, "'t2m/0.0'"),
        ({"refs": {"t2m/0.0.0": ["day1.nc", -1, 4]}}, zms.ManifestError, "non-negative"),
        ({"refs": {"t2m/0.0.0": "base64:%%%"}}, zms.ManifestError, "invalid base64"),
        ({"refs": {"t2m/.zarray": "{not json"}}, zms.ManifestError, "not a JSON document"),
        ({"refs": {"zarr.json": "{}"}}, zms.UnsupportedDatasetError, "Zarr v3 metadata"),
    ],
)
def test_malformed_references_name_the_key(change, error, message):
    refs = refs_of("day1.json")
    refs["version"] = change.get("version", 1)
    refs["refs"].update(change.get("refs", {}))
    with pytest.raises(error, match=message):
        scan_kerchunk(refs)


def test_not_json_is_a_clear_error(tmp_path):
    path = tmp_path / "refs.json"
    path.write_text("not json at all")
    with pytest.raises(zms.ManifestError, match="is not kerchunk JSON references"):
        scan_kerchunk(path)
