"""scan_hdf5's options, manifests, refusals, netCDF-4 naming and remote scanning."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
import xarray as xr
import zarr
from hdf5_corpus import CASES
from helpers import hdf5_chunk_manifest

import zarr_manifest_store as zms
from zarr_manifest_store.io.sources import Sources

pytestmark = pytest.mark.filterwarnings("ignore::zarr.errors.UnstableSpecificationWarning")

BUILD = {c.name: c.build for c in CASES}


def build(name: str, tmp_path: Path) -> Path:
    path = tmp_path / f"{name}.h5"
    BUILD[name](path)
    return path


def read(group: zms.ManifestGroup, name: str, **store_options) -> np.ndarray:
    return zarr.open_group(zms.ManifestStore(group, **store_options), mode="r")[name][...]


def test_chunked_manifest_matches_get_chunk_info_and_records_the_fingerprint(
    tmp_path, gzip_shuffle_file
):
    path, data = gzip_shuffle_file
    g = zms.scan_hdf5(path)
    a = g["t2m"]
    assert a.manifest.equals(hdf5_chunk_manifest(path, "t2m"))
    assert a.manifest.paths == (str(path.resolve()),)
    assert a.manifest.fingerprints[str(path)] == Sources().fingerprint(str(path))
    assert a.fill_value == -9999.0
    assert [c.to_dict()["name"] for c in a.metadata.codecs] == [
        "bytes",
        "numcodecs.shuffle",
        "numcodecs.zlib",
    ]
    np.testing.assert_array_equal(read(g, "t2m"), data)


def test_relative_paths_are_recorded_absolute(tmp_path, gzip_shuffle_file, monkeypatch):
    path, _ = gzip_shuffle_file
    monkeypatch.chdir(path.parent)
    g = zms.scan_hdf5(path.name)
    assert g["t2m"].manifest.paths == (str(path),)


def test_contiguous_data_is_split_along_the_first_axis(tmp_path):
    path = build("contiguous", tmp_path)
    g = zms.scan_hdf5(path, contiguous_chunk_bytes=1000)
    # 80-byte rows: 12 rows per chunk; the padded last chunk reads bytes that follow the data
    assert g["padded"].metadata.chunks == (12, 10)
    assert g["padded"].manifest.nchunks == 9
    # nothing follows this one in the file, so its 96 rows split evenly (48 divides 96)
    assert g["at_end"].metadata.chunks == (48, 4)
    assert g["small"].manifest.nchunks == 1
    assert g["unwritten"].manifest.nchunks == 0
    np.testing.assert_array_equal(read(g, "unwritten"), np.full((6, 5), -1.5, "f4"))
    whole = zms.scan_hdf5(path, contiguous_chunk_bytes=None)
    assert whole["padded"].metadata.chunks == (101, 10)
    with h5py.File(path) as f:
        np.testing.assert_array_equal(read(whole, "padded"), f["padded"][...])


def test_external_storage_is_described_as_ranges_of_the_external_files(tmp_path):
    path = build("external", tmp_path)
    g = zms.scan_hdf5(path, contiguous_chunk_bytes=48)
    manifest = g["external"].manifest
    one, two = str(path.with_suffix(".ext0.bin")), str(path.with_suffix(".ext1.bin"))
    assert set(manifest.paths) == {one, two}
    assert set(manifest.fingerprints) == {one, two}
    # 24-byte rows, 2 per chunk: 2 chunks in the first file (after its header), 4 in the second
    assert manifest.get((0, 0)) == zms.ChunkRef(one, 16, 48)
    assert manifest.get((2, 0)) == zms.ChunkRef(two, 0, 48)
    with h5py.File(path) as f:
        np.testing.assert_array_equal(read(g, "external"), f["external"][...])


def test_external_names_resolve_like_hdf5_against_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("raw.bin").write_bytes(np.arange(6, dtype="<f8").tobytes())
    with h5py.File("f.h5", "w") as f:
        f.create_dataset("x", shape=(6,), dtype="<f8", external=[("raw.bin", 0, 48)])
    g = zms.scan_hdf5("f.h5")
    assert g["x"].manifest.paths == (str(tmp_path / "raw.bin"),)
    np.testing.assert_array_equal(read(g, "x"), np.arange(6.0))


def test_chunks_that_skipped_a_filter_are_inlined_encoded_for_the_array(tmp_path):
    path = build("filter_mask", tmp_path)
    g = zms.scan_hdf5(path)
    manifest = g["masked"].manifest
    assert isinstance(manifest.get((0, 0)), zms.ChunkRef)
    assert isinstance(manifest.get((1, 0)), bytes)
    np.testing.assert_array_equal(read(g, "masked"), np.arange(24).reshape(6, 4))


def test_raise_lists_every_refused_dataset_and_how_to_proceed(tmp_path):
    path = build("enum_opaque_refs", tmp_path)
    with pytest.raises(zms.UnsupportedDatasetError) as info:
        zms.scan_hdf5(path)
    message = str(info.value)
    assert isinstance(info.value, ValueError)
    assert "'refs'" in message
    assert "references" in message
    assert "'vlen_ints'" in message
    assert "on_unsupported='skip'" in message
    assert "drop_variables=" in message
    assert str(path) in message


def test_skip_warns_once_per_refused_dataset(tmp_path):
    path = build("enum_opaque_refs", tmp_path)
    with pytest.warns(UserWarning, match="left out dataset") as caught:
        g = zms.scan_hdf5(path, on_unsupported="skip")
    messages = [str(w.message) for w in caught if "left out dataset" in str(w.message)]
    assert len(messages) == 2
    assert {"cloud", "opaque", "target"} <= set(g)


def test_drop_variables_avoids_refusals_and_group_scans_one_group(tmp_path):
    path = build("enum_opaque_refs", tmp_path)
    g = zms.scan_hdf5(path, drop_variables=["refs", "vlen_ints", "target"])
    assert set(g) == {"cloud", "opaque"}
    path = build("groups", tmp_path)
    sub = zms.scan_hdf5(path, group="forecast", drop_variables="surface/sst")
    assert set(sub.arrays) == {"step", "t2m"}
    assert set(sub["surface"].arrays) == set()
    assert sub.attributes["model"] == "test"
    assert sub["t2m"].dimension_names == ("step", "x")
    with pytest.raises(ValueError, match="no group 'nowhere'"):
        zms.scan_hdf5(path, group="nowhere")
    with pytest.raises(ValueError, match="on_unsupported"):
        zms.scan_hdf5(path, on_unsupported="ignore")


def test_enum_maps_to_its_base_type_without_attributes(tmp_path):
    # xr.open_dataset (h5netcdf, netcdf4) shows an enum variable's values with no attributes
    g = zms.scan_hdf5(build("enum_opaque_refs", tmp_path), drop_variables=["refs", "vlen_ints"])
    cloud = g["cloud"]
    assert cloud.dtype == np.dtype("u1")
    assert "flag_values" not in cloud.attributes
    assert "flag_meanings" not in cloud.attributes


def test_netcdf_dimension_names_and_hidden_attributes(tmp_path):
    g = zms.scan_hdf5(build("scales", tmp_path))
    assert g["field"].dimension_names == ("lat_bnds_scale", "lon")  # dataset names, as h5netcdf
    assert g["lat"].dimension_names == ("lat",)
    for _, node in g.walk():
        assert not {"DIMENSION_LIST", "REFERENCE_LIST", "CLASS", "NAME"} & set(node.attributes)
    g = zms.scan_hdf5(build("phony", tmp_path))
    assert g["a"].dimension_names == ("phony_dim_0", "phony_dim_1")
    assert g["b"].dimension_names == ("phony_dim_1", "phony_dim_2", "phony_dim_0")
    assert g["c"].dimension_names == ("phony_dim_3",)
    # numbered on from the root group's, as h5netcdf does when it opens the group
    assert g["inner/d"].dimension_names == ("phony_dim_4", "phony_dim_5")
    g = zms.scan_hdf5(build("dimension_only", tmp_path))
    assert set(g) == {"data"}
    assert g["data"].dimension_names == ("x", "nv")


def test_several_scales_on_an_axis_and_scales_on_some_axes_only(tmp_path):
    """The last scale attached names an axis, as netCDF-C and h5netcdf do; a partly labelled
    dataset is refused (h5netcdf cannot open such a file at all) while the rest scans."""

    def scales(f: h5py.File) -> None:
        for name, n in (("x", 3), ("x_alt", 3), ("y", 2)):
            f[name] = np.arange(n, dtype="f8")
            f[name].make_scale(name)

    path = tmp_path / "several.h5"
    with h5py.File(path, "w") as f:
        scales(f)
        both = f.create_dataset("both", data=np.zeros((3, 2)))
        both.dims[0].attach_scale(f["x"])
        both.dims[0].attach_scale(f["x_alt"])
        both.dims[1].attach_scale(f["y"])
    expected = xr.open_dataset(path, engine="h5netcdf")
    assert zms.scan_hdf5(path)["both"].dimension_names == expected["both"].dims == ("x_alt", "y")

    path = tmp_path / "partly.h5"
    with h5py.File(path, "w") as f:
        scales(f)
        f.create_dataset("partly", data=np.zeros((3, 2))).dims[0].attach_scale(f["x"])
    with pytest.raises(
        zms.UnsupportedDatasetError, match=r"'partly'.*some axes and none on others"
    ):
        zms.scan_hdf5(path)
    with pytest.warns(UserWarning, match="left out dataset 'partly'"):
        assert set(zms.scan_hdf5(path, on_unsupported="skip")) == {"x", "x_alt", "y"}


def test_cf_attributes_as_xarrays_zarr_backend_reads_them(tmp_path):
    g = zms.scan_hdf5(build("cf", tmp_path))
    temp = g["temp"]
    assert temp.fill_value == -999.0
    assert isinstance(temp.attributes["_FillValue"], str)  # base64 of a float64, as xarray writes
    assert g["nan_fill"].attributes["_FillValue"] == "AAAAAAAA+H8="
    assert g["packed"].attributes["_FillValue"] == -32767
    assert np.isnan(g.attributes["nan_attr"])
    assert g.attributes["inf_attr"] == [np.inf, -np.inf]
    assert g.attributes["history"] == "made by a test"
    assert "_NCProperties" not in g.attributes
    ds = xr.open_zarr(zms.ManifestStore(g), consolidated=False)
    assert int(ds["temp"].isnull().sum()) == 1
    assert ds["packed"].isnull().values.tolist()[0] == [False, False, True, False]
    assert ds["time"].dtype.kind == "M"


def test_compact_and_vlen_beyond_the_inline_limit_are_refused(tmp_path):
    path = tmp_path / "big_strings.h5"
    names = [os.urandom(50).hex() for _ in range(50)]  # text gzip cannot shrink below 1000 bytes
    with h5py.File(path, "w") as f:
        f.create_dataset("names", data=np.array(names, dtype=h5py.string_dtype()))
    with pytest.raises(zms.UnsupportedDatasetError, match="max_inline_bytes=1000"):
        zms.scan_hdf5(path, max_inline_bytes=1000)
    g = zms.scan_hdf5(path)
    assert read(g, "names").tolist() == names


@pytest.fixture
def remote_file(tmp_path):
    path = tmp_path / "remote.nc"
    BUILD["cf"](path)
    return path


def _check_remote(group: zms.ManifestGroup, url: str, local: Path, **store_options) -> None:
    assert group["temp"].manifest.paths == (url,)
    fp = group["temp"].manifest.fingerprints[url]
    assert fp.size == local.stat().st_size
    assert fp.etag
    with h5py.File(local) as f:
        np.testing.assert_array_equal(read(group, "temp", **store_options), f["temp"][...])


def test_scan_over_http_counts_requests(http_server, remote_file):
    (http_server.root / "remote.nc").write_bytes(remote_file.read_bytes())
    url = f"{http_server.url}/remote.nc"
    http_server.requests.clear()
    g = zms.scan_hdf5(url, storage_options={"skip_instance_cache": True})
    requests = http_server.requests.count(path_contains="/remote.nc")
    # one look-up of size and ETag, one block of the file (it is smaller than a block)
    assert requests <= 3, http_server.requests.entries
    _check_remote(g, url, remote_file)


def test_scan_over_s3_counts_requests(s3, remote_file):
    fs, bucket, server = s3
    fs.put_file(str(remote_file), f"{bucket}/remote.nc")
    server.requests.clear()
    url = f"s3://{bucket}/remote.nc"
    g = zms.scan_hdf5(url, storage_options=server.storage_options)
    assert server.requests.count(path_contains="/remote.nc") <= 3, server.requests.entries
    _check_remote(g, url, remote_file, storage_options=server.storage_options)


def test_remote_external_storage_is_refused(http_server, tmp_path):
    local = build("external", tmp_path)
    (http_server.root / "ext.h5").write_bytes(local.read_bytes())
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        g = zms.scan_hdf5(
            f"{http_server.url}/ext.h5",
            on_unsupported="skip",
            storage_options={"skip_instance_cache": True},
        )
    assert "external" not in g
    assert os.path.exists(local)


def test_virtual_stack_references_the_source_files_chunks(tmp_path):
    path = build("virtual", tmp_path)
    group = zms.scan_hdf5(path)
    assert group["part"].manifest.inline  # part of a source: read through HDF5, inline
    stack = group["stack"]
    sources = {str(tmp_path / f"virtual.src{i}.h5") for i in range(2)}
    assert set(stack.manifest.paths) == sources
    assert set(stack.manifest.fingerprints) == sources
    assert stack.metadata.chunks == (1, 5)
    assert stack.manifest.get((2, 0)) is None  # mapped by no source: the virtual fill value
    assert stack.manifest.get((1, 1)).path == str(tmp_path / "virtual.src1.h5")
