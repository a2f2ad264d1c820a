"""scan_dmrpp: DMR++ sidecars, written for generated HDF5 / netCDF-4 files following OPeNDAP's
schema, give the arrays scan_hdf5 gives for the files, and read the same values."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
import xarray as xr
import zarr
from dmrpp_writer import write_dmrpp
from test_docs import Page, sample_folder, sample_template  # noqa: F401 - the page's fixtures

import zarr_manifest_store as zms
from zarr_manifest_store.cli import main
from zarr_manifest_store.scan import sniff


def compact(f: h5py.File, name: str, data: np.ndarray) -> None:
    """A dataset of compact layout (its values in the object header)."""
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_layout(h5py.h5d.COMPACT)
    space = h5py.h5s.create_simple(data.shape)
    tid = h5py.h5t.py_create(data.dtype)
    dsid = h5py.h5d.create(f.id, name.encode(), tid, space, dcpl=dcpl)
    dsid.write(h5py.h5s.ALL, h5py.h5s.ALL, data)


def _pairs(a: zms.ManifestGroup, b: zms.ManifestGroup, prefix: str = ""):
    assert set(a.arrays) == set(b.arrays), prefix
    assert set(a.groups) == set(b.groups), prefix
    assert a.attributes == b.attributes, prefix
    for name in a.arrays:
        yield f"{prefix}{name}", a.arrays[name], b.arrays[name]
    for name in a.groups:
        yield from _pairs(a.groups[name], b.groups[name], f"{prefix}{name}/")


def assert_same_as_hdf5(dmrpp: Path | str, data: Path | str, **options) -> zms.ManifestGroup:
    """scan_dmrpp(dmrpp) equals scan_hdf5(data): metadata, manifests, and the values read."""
    got = zms.scan_dmrpp(dmrpp, **options)
    want = zms.scan_hdf5(data, **{k: v for k, v in options.items() if k != "data_url"})
    for name, a, b in _pairs(got, want):
        assert a.metadata.to_dict() == b.metadata.to_dict(), name
        assert a.manifest == b.manifest, name
        assert dict(a.manifest.fingerprints) == dict(b.manifest.fingerprints), name
    mine = zarr.open_group(zms.ManifestStore(got), mode="r")
    theirs = zarr.open_group(zms.ManifestStore(want), mode="r")
    for name, _, _ in _pairs(got, want):
        np.testing.assert_array_equal(mine[name][...], theirs[name][...], err_msg=name)
    return got


@pytest.fixture
def netcdf4(tmp_path: Path) -> Path:
    """A netCDF-4 file (h5netcdf) with dimensions, coordinates, a group, filters and attributes."""
    import h5netcdf

    path = tmp_path / "archive.nc"
    rng = np.random.default_rng(1)
    with h5netcdf.File(path, "w") as f:
        f.dimensions = {"time": 5, "lat": 6, "lon": 8}
        f.attrs["title"] = "test archive"
        f.attrs["history"] = ["made", "by tests"]
        f.attrs["version"] = np.int16(3)
        time = f.create_variable("time", ("time",), "f8")
        time[:] = np.arange(5.0)
        time.attrs["units"] = "days since 2000-01-01"
        f.create_variable("lat", ("lat",), "f4", data=np.linspace(-50, 50, 6))
        f.create_variable("lon", ("lon",), "f4", data=np.linspace(0, 350, 8))
        t2m = f.create_variable(
            "t2m", ("time", "lat", "lon"), "f4", chunks=(2, 3, 4), compression="gzip",
            compression_opts=4, shuffle=True, fillvalue=np.float32(-9999.0),
        )  # fmt: skip
        t2m[:4] = rng.normal(280, 10, (4, 6, 8)).astype("f4")  # the last time chunk: never written
        t2m.attrs["units"] = "K"
        t2m.attrs["scale_factor"] = np.float32(0.5)
        t2m.attrs["valid_range"] = np.array([100.0, 400.0], dtype="f8")
        counts = f.create_variable(
            "counts", ("time", "lat"), ">i2", data=rng.integers(-300, 300, (5, 6)), fletcher32=True,
            chunks=(5, 3),
        )  # fmt: skip
        counts.attrs["long_name"] = "big-endian counts with checksums"
        flags = f.create_variable("flags", ("lat",), "u1", data=np.arange(6, dtype="u1"))
        flags.attrs["flag_values"] = np.arange(3, dtype="u1")
        sub = f.create_group("surface")
        sub.dimensions = {"station": 3}
        sp = sub.create_variable("sp", ("time", "station"), "i8", data=np.arange(15).reshape(5, 3))
        sp.attrs["_FillValue"] = np.int64(-1)
        sub.attrs["comment"] = "a subgroup"
    return path


def test_netcdf4_file_equals_scan_hdf5(netcdf4):
    dmrpp = write_dmrpp(netcdf4)
    g = assert_same_as_hdf5(dmrpp, netcdf4)
    assert g["t2m"].metadata.dimension_names == ("time", "lat", "lon")
    assert g["t2m"].manifest.nchunks == 2 * 2 * 2  # the chunks of the last time step: fill
    assert g["t2m"].manifest.paths == (str(netcdf4),)
    got = xr.open_dataset(zms.ManifestStore(g), engine="zarr_manifest")  # float32 packing
    want = xr.open_dataset(netcdf4, engine="h5netcdf")
    xr.testing.assert_identical(got.drop_encoding(), want.drop_encoding().load())
    assert_same_as_hdf5(dmrpp, netcdf4, group="surface")  # dimensions of the groups above
    assert_same_as_hdf5(dmrpp, netcdf4, drop_variables=["counts", "surface/sp"])
    tree = xr.open_zarr(zms.ManifestStore(g), group="surface", consolidated=False)
    np.testing.assert_array_equal(tree.sp.values, np.arange(15).reshape(5, 3))


def test_hdf5_layouts_types_and_phony_dimensions(tmp_path):
    path = tmp_path / "plain.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("contiguous", data=np.arange(12.0).reshape(3, 4))
        f.create_dataset("big_rows", data=np.arange(40_000, dtype="<u4").reshape(400, 100))
        f.create_dataset("scalar", data=np.float64(2.5))
        compact(f, "compact", np.arange(5, dtype=">i4"))
        f.create_dataset("empty", shape=(4,), dtype="i4", fillvalue=7)
        f.create_dataset("be", data=np.arange(10, dtype=">f8"), chunks=(4,), compression="gzip")
        f.create_dataset("bools", data=np.array([True, False, True]))
        f.create_dataset("text", data=np.array([b"ab", b"cde"], dtype="S3"))
        for kind in ("i1", "u2", "u4", "u8", "i8"):
            f.create_dataset(
                f"n_{kind}", data=np.arange(6, dtype=kind).reshape(2, 3), chunks=(1, 3)
            )
        f["contiguous"].attrs["note"] = "rows"
        f["contiguous"].attrs["weights"] = np.array([0.1, 0.2], dtype="f4")
    dmrpp = write_dmrpp(path)
    g = assert_same_as_hdf5(dmrpp, path, contiguous_chunk_bytes=8000)
    assert g["big_rows"].metadata.chunks == (20, 100)  # split as scan_hdf5 splits it
    assert g["compact"].manifest.inline  # dmrpp:compact: the values inline
    assert g["empty"].manifest.nchunks == 0
    assert g["bools"].metadata.data_type.to_native_dtype() == np.dtype(bool)
    assert all(n.startswith("phony_dim_") for n in g["contiguous"].metadata.dimension_names)


def test_filter_order_of_old_dmrpp_files(tmp_path):
    """Without dmrpp:version, compressionType lists filters in any order: OPeNDAP applies
    shuffle, deflate, fletcher32; with it, the order written is the pipeline's."""
    path = tmp_path / "f.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=np.arange(100, dtype="i4"), chunks=(25,), shuffle=True,
                         compression="gzip", fletcher32=True)  # fmt: skip
    dmrpp = write_dmrpp(path, version=None)
    text = Path(dmrpp).read_text()
    Path(dmrpp).write_text(text.replace("shuffle deflate fletcher32", "deflate fletcher32 shuffle"))
    assert_same_as_hdf5(dmrpp, path)
    write_dmrpp(path)  # with a version, the order written is the order applied
    text = Path(dmrpp).read_text()
    Path(dmrpp).write_text(text.replace("shuffle deflate fletcher32", "deflate fletcher32 shuffle"))
    codecs = [c.to_dict()["name"] for c in zms.scan_dmrpp(dmrpp)["x"].metadata.codecs]
    assert codecs == ["bytes", "numcodecs.zlib", "numcodecs.fletcher32", "numcodecs.shuffle"]


def test_hrefs_resolve_against_the_dmrpp_and_chunk_overrides(tmp_path):
    data_dir, side_dir = tmp_path / "data", tmp_path / "sidecars"
    data_dir.mkdir(), side_dir.mkdir()
    path = data_dir / "f.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("a", data=np.arange(8.0), chunks=(4,))
        f.create_dataset("b", data=np.arange(8.0), chunks=(4,))
        f.create_dataset("c", data=np.arange(8.0))  # contiguous: one chunk, no position
    copy = data_dir / "copy.h5"
    shutil.copy(path, copy)
    dmrpp = write_dmrpp(
        path,
        side_dir / "f.h5.dmrpp",
        href="../data/f.h5",
        chunk_href={"/b": "../data/copy.h5", "/c": "../data/copy.h5"},
    )
    g = zms.scan_dmrpp(dmrpp)
    assert g["a"].manifest.paths == (str(path),)
    assert g["b"].manifest.paths == (str(copy),)
    assert g["c"].manifest.paths == (str(copy),)
    values = zarr.open_group(zms.ManifestStore(g), mode="r")["b"][:]
    np.testing.assert_array_equal(values, np.arange(8.0))
    # data_url names the data file instead; the placeholder href means the sidecar's own name
    assert zms.scan_dmrpp(dmrpp, data_url=copy)["a"].manifest.paths == (str(copy),)
    placeholder = write_dmrpp(path, href="OPeNDAP_DMRpp_DATA_ACCESS_URL")
    assert zms.scan_dmrpp(placeholder)["a"].manifest.paths == (str(path),)
    with pytest.raises(FileNotFoundError):
        zms.scan_dmrpp(write_dmrpp(path, side_dir / "g.dmrpp", href="missing.h5"))


def test_a_remote_dmrpp_names_local_files_only_when_trusted(tmp_path, http_server):
    path = tmp_path / "f.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("a", data=np.arange(8.0), chunks=(4,))
    shutil.copy(path, http_server.root / "f.h5")
    write_dmrpp(path, http_server.root / "f.h5.dmrpp")
    g = zms.scan(f"{http_server.url}/f.h5.dmrpp")  # relative href: beside it on the server
    assert g["a"].manifest.paths == (f"{http_server.url}/f.h5",)
    np.testing.assert_array_equal(
        zarr.open_group(zms.ManifestStore(g), mode="r")["a"][:], np.arange(8.0)
    )
    write_dmrpp(path, http_server.root / "local.dmrpp", href=str(path))
    with pytest.raises(zms.UnsupportedDatasetError, match="dmrpp:trust"):
        zms.scan_dmrpp(f"{http_server.url}/local.dmrpp")
    text = (http_server.root / "local.dmrpp").read_text()
    (http_server.root / "local.dmrpp").write_text(
        text.replace("dmrpp:href=", 'dmrpp:trust="true" dmrpp:href=', 1)
    )
    assert zms.scan_dmrpp(f"{http_server.url}/local.dmrpp")["a"].manifest.paths == (str(path),)


def test_variables_that_cannot_be_described_are_refused_by_name(tmp_path):
    path = tmp_path / "f.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("ok", data=np.arange(4.0))
        f.create_dataset("names", data=["a", "bc"], dtype=h5py.string_dtype())
    dmrpp = write_dmrpp(path)
    with pytest.raises(zms.UnsupportedDatasetError, match="'names' holds variable-length strings"):
        zms.scan_dmrpp(dmrpp)
    with pytest.warns(UserWarning, match="left out dataset 'names'"):
        g = zms.scan_dmrpp(dmrpp, on_unsupported="skip")
    assert set(g.arrays) == {"ok"}
    assert set(zms.scan_dmrpp(dmrpp, drop_variables=["names"]).arrays) == {"ok"}


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (('chunkPositionInArray="[4]"', 'chunkPositionInArray="[3]"'), "not the start of a chunk"),
        (('chunkPositionInArray="[4]"', 'chunkPositionInArray="[0]"'), "position twice"),
        (('chunkPositionInArray="[4]"', 'chunkPositionInArray="[12]"'), "inside its shape"),
        (('compressionType="deflate"', 'compressionType="szip"'), "'szip'"),
        (('byteOrder="LE"', 'byteOrder="XE"'), "byteOrder"),
        ((' fillValue="0.0"', ""), "no fillValue"),
        (('chunkPositionInArray="[4]"', 'chunkPositionInArray="[4]" fm="1"'), "skipped filters"),
        (('nBytes="', 'nBytes="9999'), "past the end|holds"),
    ],
)
def test_a_dmrpp_that_does_not_describe_its_file_exactly_is_refused(tmp_path, edit, match):
    path = tmp_path / "f.h5"
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("x", shape=(12,), dtype="f8", chunks=(4,), compression="gzip")
        ds[:8] = np.arange(8.0)  # the last chunk is never written
    dmrpp = Path(write_dmrpp(path))
    text = dmrpp.read_text()
    assert edit[0] in text
    dmrpp.write_text(text.replace(edit[0], edit[1], 1))
    with pytest.raises(zms.UnsupportedDatasetError, match=rf"'x'.*({match})"):
        zms.scan_dmrpp(dmrpp)


def test_compact_and_missing_data_values_are_bounded(tmp_path):
    path = tmp_path / "f.h5"
    with h5py.File(path, "w") as f:
        compact(f, "c", np.arange(50, dtype="<i4"))
    dmrpp = Path(write_dmrpp(path))
    with pytest.raises(zms.UnsupportedDatasetError, match=r"'c'.*max_inline_bytes=100"):
        zms.scan_dmrpp(dmrpp, max_inline_bytes=100)
    text = dmrpp.read_text()
    dmrpp.write_text(text.replace("<dmrpp:compact>", "<dmrpp:compact>AAAA"))
    with pytest.raises(zms.UnsupportedDatasetError, match=r"'c'.*bytes of values"):
        zms.scan_dmrpp(dmrpp)
    # missingdata: zlib-compressed, inflated no further than the array's size
    import base64
    import zlib

    bomb = base64.b64encode(zlib.compress(bytes(10_000_000))).decode()
    dmrpp.write_text(
        text.replace("<dmrpp:compact>", "<dmrpp:missingdata>")
        .replace("</dmrpp:compact>", "</dmrpp:missingdata>")
        .split("<dmrpp:missingdata>")[0]
        + f"<dmrpp:missingdata>{bomb}</dmrpp:missingdata>\n</Int32>\n</Dataset>\n"
    )
    with pytest.raises(zms.UnsupportedDatasetError, match=r"'c'.*201 bytes of values"):
        zms.scan_dmrpp(dmrpp)
    good = base64.b64encode(zlib.compress(np.arange(50, dtype="<i4").tobytes())).decode()
    dmrpp.write_text(dmrpp.read_text().replace(bomb, good))
    values = zarr.open_group(zms.ManifestStore(zms.scan_dmrpp(dmrpp)), mode="r")["c"][:]
    np.testing.assert_array_equal(values, np.arange(50))


def test_hostile_xml_is_refused(tmp_path):
    laughs = tmp_path / "laughs.dmrpp"
    entities = "".join(f'<!ENTITY l{i} "{f"&l{i - 1};" * 10}">' for i in range(1, 12))
    laughs.write_text(
        f'<?xml version="1.0"?><!DOCTYPE Dataset [<!ENTITY l0 "lol">{entities}]>'
        '<Dataset xmlns="http://xml.opendap.org/ns/DAP/4.0#" '
        'xmlns:dmrpp="http://xml.opendap.org/dap/dmrpp/1.0.0#" name="x" dmrpp:href="x">'
        "<Attribute name='a' type='String'><Value>&l11;</Value></Attribute></Dataset>"
    )
    with pytest.raises(zms.UnsupportedDatasetError, match="not well-formed XML"):
        zms.scan_dmrpp(laughs, data_url=laughs)
    with pytest.raises(zms.UnsupportedDatasetError, match="max_dmrpp_bytes=100"):
        zms.scan_dmrpp(laughs, max_dmrpp_bytes=100)
    other = tmp_path / "other.dmrpp"
    other.write_text('<Dataset xmlns="urn:other"/>')
    with pytest.raises(zms.UnsupportedDatasetError, match="not a DMR"):
        zms.scan_dmrpp(other)


def test_scan_sniff_virtual_datasets_and_cli_accept_dmrpp(netcdf4, tmp_path):
    dmrpp = write_dmrpp(netcdf4)
    assert zms.scan(dmrpp)["t2m"].shape == (5, 6, 8)

    assert sniff(dmrpp) == "dmrpp"
    ds = zms.open_virtual_dataset(dmrpp, loadable_variables=["time"])
    assert isinstance(ds.t2m.data, zms.ManifestArray)
    second = tmp_path / "second.nc"
    shutil.copy(netcdf4, second)
    write_dmrpp(second)
    both = zms.open_virtual_mfdataset(
        [dmrpp, f"{second}.dmrpp"], combine="nested", concat_dim="time", coords="minimal",
        compat="override", data_vars="minimal",
    )  # fmt: skip
    assert both.t2m.shape == (10, 6, 8)
    assert main(["scan", dmrpp, "-o", str(tmp_path / "out.zarr")]) == 0
    store = zms.ManifestStore.open(tmp_path / "out.zarr", allow=[str(tmp_path)])
    got = xr.open_dataset(store, engine="zarr_manifest")  # float32 packing
    xr.testing.assert_identical(
        got.t2m.load(), xr.open_dataset(netcdf4, engine="h5netcdf").t2m.load()
    )


def test_kerchunk_export_of_a_dmrpp_scan_reads_the_same(netcdf4, tmp_path):
    g = zms.scan_dmrpp(write_dmrpp(netcdf4))
    refs = zms.to_kerchunk(g, None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = xr.open_dataset(
            "reference://", engine="zarr", backend_kwargs={"consolidated": False,
            "storage_options": {"fo": refs}, "zarr_format": 2},
        )  # fmt: skip
    np.testing.assert_array_equal(
        got.t2m.values, xr.open_dataset(netcdf4, engine="h5netcdf").t2m.values
    )


def test_sniffing_leaves_other_xml_alone(tmp_path):
    other = tmp_path / "x.xml"
    other.write_text('<?xml version="1.0"?><Dataset xmlns="urn:not-dap"/>')
    with pytest.raises(zms.UnsupportedDatasetError, match="cannot identify"):
        zms.scan(other)
    assert os.path.exists(other)


def test_page_docs_howto_dmrpp(sample_folder):  # noqa: F811
    for path in sorted((sample_folder / "data").glob("era_*.nc")):
        write_dmrpp(path)
    assert Page("docs/howto/dmrpp.md").run() >= 3


def _document(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "x.h5.dmrpp"
    path.write_text(
        '<Dataset xmlns="http://xml.opendap.org/ns/DAP/4.0#" '
        'xmlns:dmrpp="http://xml.opendap.org/dap/dmrpp/1.0.0#" name="x.h5" dmrpp:href="x.h5" '
        f'dmrpp:version="3.21.1">{body}</Dataset>'
    )
    (tmp_path / "x.h5").write_bytes(bytes(64))
    return path


def test_a_small_dmrpp_costs_memory_in_proportion_to_itself(tmp_path):
    """Dimensions of 2**62 elements never written: a sparse manifest, not a grid in memory (nor
    a search for divisors of an odd count)."""
    huge = (
        '<Byte name="never"><Dim size="4611686018427387903"/><dmrpp:chunks fillValue="1"/></Byte>'
        '<Byte name="chunks"><Dim size="4611686018427387904"/><dmrpp:chunks fillValue="1">'
        "<dmrpp:chunkDimensionSizes>1</dmrpp:chunkDimensionSizes>"
        '<dmrpp:chunk offset="0" nBytes="1" chunkPositionInArray="[4611686018427387903]"/>'
        "</dmrpp:chunks></Byte>"
        '<Byte name="lying"><Dim size="4611686018427387904"/><dmrpp:chunks fillValue="1">'
        '<dmrpp:chunk offset="0" nBytes="4611686018427387904"/></dmrpp:chunks></Byte>'
    )
    capped = textwrap.dedent(
        """
        import json, resource, sys
        resource.setrlimit(resource.RLIMIT_AS, (3 * 2**30, 3 * 2**30))
        import zarr_manifest_store as zms
        g = zms.scan_dmrpp(sys.argv[1], drop_variables="lying")
        print(json.dumps([[g[n].manifest.sparse, g[n].manifest.nchunks] for n in ("never", "chunks")]))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", capped, str(_document(tmp_path, huge))],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout) == [[True, 0], [True, 1]]
    with pytest.raises(zms.UnsupportedDatasetError, match=r"'lying'.*holds 64 bytes"):
        zms.scan_dmrpp(_document(tmp_path, huge))
    with pytest.raises(zms.UnsupportedDatasetError, match="has size '-5'"):
        zms.scan_dmrpp(_document(tmp_path, '<Dimension name="d" size="-5"/>'))


def test_contiguous_data_in_several_pieces(tmp_path):
    """Contiguous bytes listed as several dmrpp:chunk pieces: row blocks that each lie in one
    piece; a piece boundary inside a row is refused."""
    values = np.arange(8.0).reshape(4, 2)
    pieces = (
        '<Float64 name="x"><Dim size="4"/><Dim size="2"/><dmrpp:chunks fillValue="0" '
        'byteOrder="LE"><dmrpp:chunk offset="32" nBytes="32"/><dmrpp:chunk offset="0" '
        'nBytes="32"/></dmrpp:chunks></Float64>'
    )
    doc = _document(tmp_path, pieces)
    (tmp_path / "x.h5").write_bytes(values[2:].tobytes() + values[:2].tobytes())
    g = zms.scan_dmrpp(doc)
    assert g["x"].metadata.chunks == (2, 2)
    np.testing.assert_array_equal(zarr.open_group(zms.ManifestStore(g), mode="r")["x"][:], values)
    doc.write_text(
        doc.read_text().replace(
            'nBytes="32"/><dmrpp:chunk offset="0" nBytes="32"',
            'nBytes="24"/><dmrpp:chunk offset="0" nBytes="40"',
        )
    )
    with pytest.raises(zms.UnsupportedDatasetError, match=r"'x'.*inside a row"):
        zms.scan_dmrpp(doc)
