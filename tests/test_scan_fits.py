"""scan_fits: FITS image HDUs, written by astropy, read back through ManifestStore equal to astropy.

astropy (``hdul[i].data``, scaled as it scales by default) is the reference reader.
"""

from __future__ import annotations

import base64
import warnings

import numpy as np
import pytest
import xarray as xr
import zarr
from astropy.io import fits
from test_docs import Page

import zarr_manifest_store as zms
from zarr_manifest_store.cli import main

RNG = np.random.default_rng(21)


def opened(g: zms.ManifestGroup) -> xr.Dataset:
    return xr.open_zarr(zms.ManifestStore(g), consolidated=False)


def assert_as_astropy(path, names=None, **scan_options):
    """Every array of the scan equals astropy's data, value for value and dtype for dtype."""
    ds = opened(zms.scan_fits(path, **scan_options))
    with fits.open(path) as hdul:
        for hdu_index, hdu in enumerate(hdul):
            name = (names or {}).get(hdu_index, hdu.name)
            if hdu.data is None or name not in ds:
                continue
            expected, got = hdu.data, ds[name].values
            assert got.dtype == expected.dtype.newbyteorder("="), name
            np.testing.assert_array_equal(got, expected, err_msg=name)
    return ds


def write(path, *hdus, primary=None):
    fits.HDUList([primary or fits.PrimaryHDU(), *hdus]).writeto(path, overwrite=True)
    return path


# ---------------------------------------------------------------------- uncompressed images


@pytest.mark.parametrize("dtype", [">u1", ">i2", ">i4", ">i8", ">f4", ">f8"])
def test_every_bitpix_reads_as_astropy(tmp_path, dtype):
    data = (RNG.normal(size=(4, 5, 6)) * 100).astype(dtype)
    path = write(tmp_path / "a.fits", fits.ImageHDU(data, name="SCI"))
    ds = assert_as_astropy(path)
    assert ds.SCI.dims == ("SCI_naxis3", "SCI_naxis2", "SCI_naxis1")


@pytest.mark.parametrize("dtype", ["uint16", "uint32", "int8"])
def test_the_unsigned_convention_reads_as_astropy_gives_it(tmp_path, dtype):
    info = np.iinfo(dtype)
    data = np.array([[info.min, info.max, 0, 1, info.max // 2 + 1]], dtype=dtype)
    path = write(tmp_path / "u.fits", fits.ImageHDU(data, name="U"))
    with fits.open(path) as hdul:
        assert hdul["U"].header["BZERO"] != 0  # astropy wrote the convention
    ds = assert_as_astropy(path)
    assert ds.U.dtype == np.dtype(dtype)
    assert "scale_factor" not in ds.U.encoding
    assert "add_offset" not in ds.U.encoding


def test_a_64_bit_unsigned_image_is_refused(tmp_path):
    data = np.array([0, 2**64 - 1], dtype=np.uint64)
    path = write(tmp_path / "u64.fits", fits.ImageHDU(data, name="BIG"))
    with pytest.raises(zms.UnsupportedDatasetError, match=r"'BIG'.*2\*\*63"):
        zms.scan_fits(path)


def test_bscale_bzero_are_cf_packing_and_blank_the_fill_value(tmp_path):
    raw = np.array([[-5, 0, 7], [100, -32768, 3]], dtype=">i2")
    hdu = fits.ImageHDU(raw, name="PACKED", do_not_scale_image_data=True)
    hdu.header["BSCALE"], hdu.header["BZERO"], hdu.header["BLANK"] = 0.25, 10.0, -32768
    path = write(tmp_path / "p.fits", hdu)
    g = zms.scan_fits(path)
    attributes = g["PACKED"].metadata.attributes
    assert attributes["scale_factor"] == 0.25
    assert attributes["add_offset"] == 10.0
    assert attributes["_FillValue"] == -32768
    got = opened(g).PACKED.values
    expected = fits.getdata(path, "PACKED")
    assert expected.dtype == np.float32  # astropy's; xarray's CF decoding gives float64
    assert got.dtype == np.float64
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    np.testing.assert_array_equal(got.astype(np.float32), expected)
    np.testing.assert_array_equal(got[0], raw[0] * 0.25 + 10.0)


def test_blank_alone_masks_an_integer_image_as_astropy_does(tmp_path):
    hdu = fits.ImageHDU(np.array([1, -99, 3], dtype=">i2"), name="B")
    hdu.header["BLANK"] = -99
    path = write(tmp_path / "b.fits", hdu)
    assert_as_astropy(path)  # float32 with NaN, both ways


def test_large_images_split_into_whole_row_chunks(tmp_path):
    data = RNG.normal(size=(100, 30)).astype(">f8")
    path = write(tmp_path / "big.fits", fits.ImageHDU(data, name="SCI"))
    g = zms.scan_fits(path, contiguous_chunk_bytes=30 * 8 * 10)
    assert g["SCI"].manifest.nchunks == 10
    assert g["SCI"].chunk_sizes == ((10,) * 10, (30,))
    assert_as_astropy(path, contiguous_chunk_bytes=30 * 8 * 10)


def test_names_extver_and_the_empty_primary(tmp_path):
    primary = fits.PrimaryHDU()
    primary.header["OBSERVER"] = "Hubble"
    primary.header["COMMENT"] = "first"
    primary.header["COMMENT"] = "second"
    primary.header["HISTORY"] = "made here"
    sci1 = fits.ImageHDU(np.ones((2, 2), ">f4"), name="SCI", ver=1)
    sci2 = fits.ImageHDU(np.zeros((3, 2), ">f4"), name="SCI", ver=2)
    unnamed = fits.ImageHDU(np.arange(3, dtype=">i4"))
    empty = fits.ImageHDU(name="EMPTY")
    path = write(tmp_path / "n.fits", sci1, sci2, unnamed, empty, primary=primary)
    g = zms.scan_fits(path)
    assert sorted(g.arrays) == ["HDU3", "SCI_1", "SCI_2"]
    assert g.attributes["OBSERVER"] == "Hubble"
    assert g.attributes["COMMENT"] == "first\nsecond"
    assert g.attributes["HISTORY"] == "made here"
    assert g["SCI_2"].metadata.attributes["EXTVER"] == 2
    ds = opened(g)
    np.testing.assert_array_equal(ds.SCI_2.values, np.zeros((3, 2)))
    np.testing.assert_array_equal(ds.HDU3.values, np.arange(3))


def test_a_primary_image_is_an_array_with_its_cards(tmp_path):
    primary = fits.PrimaryHDU(np.arange(12, dtype=">i2").reshape(3, 4))
    primary.header["TELESCOP"] = "JWST"
    path = write(tmp_path / "p.fits", primary=primary)
    g = zms.scan_fits(path)
    assert list(g.arrays) == ["PRIMARY"]
    assert g["PRIMARY"].metadata.attributes["TELESCOP"] == "JWST"
    assert_as_astropy(path)


def test_tables_are_refused_or_skipped_and_drop_variables(tmp_path):
    table = fits.BinTableHDU.from_columns([fits.Column("x", "E", array=np.arange(3.0))], name="T")
    ascii_table = fits.TableHDU.from_columns([fits.Column("y", "I5", array=np.arange(3))], name="A")
    image = fits.ImageHDU(np.ones(4, ">f4"), name="IMG")
    path = write(tmp_path / "t.fits", image, table, ascii_table)
    with pytest.raises(zms.UnsupportedDatasetError) as refused:
        zms.scan_fits(path)
    message = str(refused.value)
    assert "'T' is a binary table" in message
    assert "'A' is an ASCII table" in message
    assert str(path) in message
    with pytest.warns(UserWarning, match="left out dataset 'T'"):
        assert list(zms.scan_fits(path, on_unsupported="skip").arrays) == ["IMG"]
    assert list(zms.scan_fits(path, drop_variables=["T", "A"]).arrays) == ["IMG"]


def test_a_truncated_file_is_refused(tmp_path):
    path = write(tmp_path / "full.fits", fits.ImageHDU(np.ones((100, 100), ">f8"), name="SCI"))
    cut = tmp_path / "cut.fits"
    cut.write_bytes(path.read_bytes()[:-50000])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # astropy warns about the short file
        with pytest.raises((zms.UnsupportedDatasetError, OSError), match="trunc"):
            zms.scan_fits(cut)


# ---------------------------------------------------------------------- tile-compressed images


@pytest.mark.parametrize("algorithm", ["GZIP_1", "GZIP_2", "RICE_1", "NOCOMPRESS"])
@pytest.mark.parametrize("dtype", ["uint8", "int16", "int32", "uint16"])
def test_compressed_tiles_are_chunks(tmp_path, algorithm, dtype):
    info = np.iinfo(dtype)
    data = RNG.integers(info.min, info.max, size=(40, 64), endpoint=True).astype(dtype)
    hdu = fits.CompImageHDU(data, name="C", compression_type=algorithm, tile_shape=(8, 16))
    path = write(tmp_path / "c.fits", hdu)
    g = zms.scan_fits(path)
    assert g["C"].manifest.nchunks == 5 * 4
    assert_as_astropy(path)


@pytest.mark.parametrize("algorithm", ["GZIP_1", "GZIP_2"])
def test_lossless_float_tiles(tmp_path, algorithm):
    data = RNG.normal(size=(20, 30)).astype(">f4")
    data[3, 4] = np.nan
    hdu = fits.CompImageHDU(data, name="F", compression_type=algorithm, quantize_level=0.0)
    assert_as_astropy(write(tmp_path / "f.fits", hdu))


def test_edge_tiles_make_a_rectilinear_grid(tmp_path):
    data = RNG.integers(0, 5000, size=(3, 37, 50)).astype(">i4")
    hdu = fits.CompImageHDU(data, name="E", compression_type="RICE_1", tile_shape=(2, 10, 16))
    path = write(tmp_path / "e.fits", hdu)
    g = zms.scan_fits(path)
    assert g["E"].chunk_sizes == ((2, 1), (10, 10, 10, 7), (16, 16, 16, 2))
    assert_as_astropy(path)


def test_default_row_tiles(tmp_path):
    data = RNG.integers(0, 100, size=(25, 33)).astype(">i2")
    path = write(tmp_path / "rows.fits", fits.CompImageHDU(data, name="R"))
    g = zms.scan_fits(path)
    assert set(g["R"].chunk_sizes[0]) == {1}
    assert_as_astropy(path)


def test_scaled_compressed_image(tmp_path):
    hdu = fits.CompImageHDU(
        RNG.integers(-1000, 1000, size=(10, 12)).astype(">i2"), name="S", compression_type="RICE_1"
    )
    hdu.header["BSCALE"], hdu.header["BZERO"] = 2.0, -1.5
    path = write(tmp_path / "s.fits", hdu)
    got = opened(zms.scan_fits(path)).S.values
    np.testing.assert_array_equal(got.astype(np.float32), fits.getdata(path, "S"))


@pytest.mark.parametrize(
    ("options", "reason"),
    [
        ({"compression_type": "PLIO_1"}, "PLIO_1, for which no Zarr codec exists"),
        ({"compression_type": "HCOMPRESS_1"}, "HCOMPRESS_1, for which no Zarr codec exists"),
        ({"compression_type": "RICE_1", "float": True}, r"quantized floats .*ZSCALE / ZZERO"),
    ],
)
def test_compressions_without_an_exact_codec_are_refused(tmp_path, options, reason):
    as_float = options.pop("float", False)
    data = RNG.integers(0, 100, size=(16, 16)).astype(">f4" if as_float else ">i2")
    path = write(tmp_path / "x.fits", fits.CompImageHDU(data, name="X", **options))
    with pytest.raises(
        zms.UnsupportedDatasetError, match=f"'X' (is compressed with|holds) {reason}"
    ):
        zms.scan_fits(path)


def test_a_hostile_rice_tile_is_refused_not_crashed(tmp_path):
    data = RNG.integers(0, 1000, size=(8, 64)).astype(">i4")
    path = write(tmp_path / "r.fits", fits.CompImageHDU(data, name="R", tile_shape=(8, 64)))
    array = zms.scan_fits(path)["R"]
    short = array.manifest.replace(lengths=array.manifest.lengths // 4)  # the stream ends early
    lying = zms.ManifestArray(metadata=array.metadata, manifest=short)
    store = zms.ManifestStore(zms.ManifestGroup(arrays={"R": lying}))
    with pytest.raises(
        zms.ManifestError, match=r"array 'R', chunk 'c/0/0'.*compressed byte stream"
    ):
        zarr.open_group(store, mode="r")["R"][:]


def test_kerchunk_export_refuses_the_rice_codec_and_keeps_gzip(tmp_path):
    rice = fits.CompImageHDU(np.ones((4, 4), ">i2"), name="RICE", compression_type="RICE_1")
    gz = fits.CompImageHDU(np.ones((4, 4), ">i2"), name="GZ", compression_type="GZIP_1")
    g = zms.scan_fits(write(tmp_path / "k.fits", rice, gz))
    with pytest.raises(zms.UnsupportedDatasetError, match=r"RICE.*fits_rice_1"):
        zms.to_kerchunk(g, format="dict")
    refs = zms.to_kerchunk(zms.ManifestGroup(arrays={"GZ": g["GZ"]}), format="dict")
    assert "GZ/.zarray" in refs["refs"]


# ---------------------------------------------------------------------- the ways in


def test_scan_open_virtual_dataset_mfdataset_and_the_cli(tmp_path):
    days = []
    for day in range(3):
        data = np.full((4, 5), day, dtype=">f4")
        days.append(write(tmp_path / f"day{day}.fits", fits.ImageHDU(data, name="SCI")))
    assert zms.scan(days[0]).arrays.keys() == {"SCI"}
    virtual = zms.open_virtual_dataset(days[1])
    assert type(virtual.SCI.data).__name__ == "ManifestArray"
    combined = zms.open_virtual_mfdataset(
        [str(d) for d in days], combine="nested", concat_dim="SCI_naxis2"
    )
    assert combined.SCI.shape == (12, 5)
    values = xr.open_zarr(combined.virtualize.to_store(), consolidated=False).SCI.values
    np.testing.assert_array_equal(values[:, 0], np.repeat([0, 1, 2], 4))
    out = tmp_path / "one.zarr"
    assert main(["scan", str(days[2]), "-o", str(out)]) == 0
    stored = xr.open_dataset(out, engine="zarr_manifest", allow=[str(tmp_path)])
    np.testing.assert_array_equal(stored.SCI.values, np.full((4, 5), 2))


def test_a_remote_file_over_http(http_server):
    data = RNG.integers(0, 100, size=(30, 20)).astype(">i2")
    path = write(
        http_server.root / "r.fits",
        fits.ImageHDU(data, name="SCI"),
        fits.CompImageHDU(data, name="RICE", tile_shape=(10, 20)),
    )
    g = zms.scan_fits(f"{http_server.url}/r.fits")
    ds = opened(g)
    np.testing.assert_array_equal(ds.SCI.values, data)
    np.testing.assert_array_equal(ds.RICE.values, data)
    assert path.exists()


def test_fill_value_attribute_of_a_float_zblank_is_xarrays_encoding(tmp_path):
    data = np.array([[1.0, 2.0], [3.0, 4.0]], ">f4")
    hdu = fits.CompImageHDU(data, name="F", compression_type="GZIP_1", quantize_level=0.0)
    path = write(tmp_path / "z.fits", hdu)
    with fits.open(path, mode="update", disable_image_compression=True) as hdul:
        hdul[1].header["ZBLANK"] = 2
    g = zms.scan_fits(path)
    encoded = g["F"].metadata.attributes["_FillValue"]
    assert np.frombuffer(base64.b64decode(encoded), "<f8")[0] == 2.0
    expected = fits.getdata(path, "F")
    assert np.isnan(expected[0, 1])  # astropy masks it
    np.testing.assert_array_equal(opened(g).F.values, expected)


def test_page_docs_howto_fits(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert Page("docs/howto/fits.md").run() >= 2


def test_a_file_whose_primary_header_is_cut_short_is_refused(tmp_path):
    path = tmp_path / "short.fits"
    path.write_bytes(b"SIMPLE  =                    T" + b" " * 50)
    with pytest.raises(zms.UnsupportedDatasetError, match="primary header is unreadable"):
        zms.scan(path)
