"""A generated corpus of HDF5 / netCDF-4 files, one case per item of the scanner's issue.

Each :class:`Case` writes its file with h5py, h5netcdf or hdf5plugin's filters and
says what the scan must do: which datasets are refused (and why), whether the
xarray view can be compared with h5netcdf, and scan options.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5netcdf
import h5py
import hdf5plugin
import numpy as np
from h5py import h5d, h5p, h5s, h5t


@dataclass(frozen=True)
class Case:
    """One corpus file: how to write it and what scanning it must give."""

    name: str
    build: Callable[[Path], None]
    refused: dict[str, str] = field(default_factory=dict)  # dataset -> words of the reason
    inline: tuple[str, ...] = ()  # datasets that must be materialised (fully or partly)
    xarray: bool = True  # compare xr.open_zarr with xr.open_dataset(engine="h5netcdf")
    options: dict[str, Any] = field(default_factory=dict)


RNG = np.random.default_rng(42)


def _chunked(path: Path) -> None:
    with h5py.File(path, "w") as f:
        data = RNG.normal(size=(7, 9, 11)).astype("f4")
        f.create_dataset(
            "gzip_shuffle", data=data, chunks=(3, 4, 5), compression="gzip", shuffle=True
        )
        f.create_dataset("plain", data=data.astype("f8"), chunks=(2, 9, 11))
        f.create_dataset("fletcher", data=data, chunks=(4, 4, 4), fletcher32=True, compression=1)
        f.create_dataset("one_chunk", data=np.arange(10, dtype="i8"), chunks=(10,))


def _contiguous(path: Path) -> None:
    with h5py.File(path, "w") as f:
        f["small"] = np.arange(12, dtype="i2").reshape(3, 4)
        # 101 rows (a prime) of 80 bytes: split with a padded last chunk while bytes follow it
        f["padded"] = np.arange(101 * 10, dtype="f8").reshape(101, 10)
        f.create_dataset("unwritten", shape=(6, 5), dtype="f4", fillvalue=-1.5)
        # written last, so nothing follows it: the split must divide its 96 rows
        f["at_end"] = np.arange(96 * 4, dtype="u4").reshape(96, 4)


def _compact(path: Path) -> None:
    with h5py.File(path, "w") as f:
        data = np.arange(20, dtype="<i4").reshape(4, 5)
        dcpl = h5p.create(h5p.DATASET_CREATE)
        dcpl.set_layout(h5d.COMPACT)
        space = h5s.create_simple(data.shape)
        dsid = h5d.create(f.id, b"compact", h5t.STD_I32LE, space, dcpl=dcpl)
        dsid.write(h5s.ALL, h5s.ALL, data)
        f["compact"].attrs["units"] = "m"


def _unwritten(path: Path) -> None:
    with h5py.File(path, "w") as f:
        f.create_dataset("never", shape=(10, 10), chunks=(5, 5), dtype="i2", fillvalue=-99)
        part = f.create_dataset(
            "partial", shape=(10, 10), chunks=(3, 3), dtype="f4", fillvalue=np.nan
        )
        part[0:3, 3:6] = 1.5
        part[9, 9] = 2.5
        f.create_dataset("no_fill", shape=(4,), chunks=(2,), dtype="u1")


def _empty_scalar(path: Path) -> None:
    with h5py.File(path, "w") as f:
        f.create_dataset("empty", shape=(0, 3), dtype="f4", chunks=(4, 3), maxshape=(None, 3))
        f.create_dataset("empty_contiguous", shape=(0,), dtype="i4")
        f["scalar"] = np.float64(3.25)
        f.create_dataset("scalar_string", data=np.bytes_(b"hello"))


def _resized(path: Path) -> None:
    with h5py.File(path, "w") as f:
        ds = f.create_dataset(
            "grow", shape=(2, 3), maxshape=(None, None), chunks=(2, 2), dtype="i4"
        )
        ds[...] = 1
        ds.resize((7, 5))
        ds[5:7, 3:5] = 9
        shrink = f.create_dataset(
            "shrink", data=np.arange(40.0).reshape(8, 5), maxshape=(None, 5), chunks=(3, 5)
        )
        shrink.resize((4, 5))


def _external(path: Path) -> None:
    data = np.arange(12 * 6, dtype="<i4").reshape(12, 6)
    raw = data.tobytes()
    one, two = path.with_suffix(".ext0.bin"), path.with_suffix(".ext1.bin")
    one.write_bytes(b"H" * 16 + raw[:96])  # 4 rows after a 16-byte header
    two.write_bytes(raw[96:] + b"T" * 8)  # the other 8 rows
    with h5py.File(path, "w") as f:
        ds = f.create_dataset(
            "external",
            shape=data.shape,
            dtype="<i4",
            external=[(str(one), 16, 96), (str(two), 0, h5f_unlimited())],
        )
        ds.attrs["units"] = "counts"


def h5f_unlimited() -> int:
    return h5py.h5f.UNLIMITED


def _virtual(path: Path) -> None:
    names = []
    for i in range(2):
        src = path.with_name(f"{path.stem}.src{i}.h5")
        with h5py.File(src, "w") as f:
            f.create_dataset(
                "a",
                data=np.arange(10, dtype="f4") + 10 * i,
                chunks=(5,),
                compression="gzip",
                fillvalue=-1,
            )
        names.append(src.name)  # relative: HDF5 looks beside the virtual file
    stack = h5py.VirtualLayout(shape=(3, 10), dtype="f4")  # row 2 maps nothing: fill value
    for i, name in enumerate(names):
        stack[i] = h5py.VirtualSource(name, "a", shape=(10,))
    part = h5py.VirtualLayout(shape=(5,), dtype="f4")
    part[:] = h5py.VirtualSource(names[0], "a", shape=(10,))[:5]
    with h5py.File(path, "w") as f:
        f.create_virtual_dataset("stack", stack, fillvalue=-1)
        f.create_virtual_dataset("part", part, fillvalue=-1)
        f["ok"] = np.arange(3)


def _codecs(path: Path) -> None:
    data = RNG.integers(0, 1000, size=(40, 30)).astype("i4")
    with h5py.File(path, "w") as f:
        f.create_dataset(
            "blosc_lz4",
            data=data,
            chunks=(16, 16),
            **hdf5plugin.Blosc(cname="lz4", clevel=5, shuffle=hdf5plugin.Blosc.SHUFFLE),
        )
        f.create_dataset(
            "blosc_zstd_bit",
            data=data,
            chunks=(16, 16),
            **hdf5plugin.Blosc(cname="zstd", clevel=3, shuffle=hdf5plugin.Blosc.BITSHUFFLE),
        )
        f.create_dataset("zstd", data=data, chunks=(16, 16), **hdf5plugin.Zstd(clevel=4))
        f.create_dataset("bzip2", data=data, chunks=(16, 16), **hdf5plugin.BZip2(blocksize=5))
        f.create_dataset("shuffle_only", data=data.astype(">f8"), chunks=(8, 30), shuffle=True)


def _no_codec(path: Path) -> None:
    data = RNG.integers(0, 100, size=(20, 12)).astype("i2")
    with h5py.File(path, "w") as f:
        f.create_dataset("scaleoffset", data=data, chunks=(5, 12), scaleoffset=0)
        f.create_dataset(
            "big_scaleoffset", data=np.arange(4000, dtype="i8"), chunks=(500,), scaleoffset=0
        )


def _plugin_codecs(path: Path) -> None:
    data = (np.arange(240) // 8).reshape(20, 12).astype("i2")  # runs LZF can shrink
    with h5py.File(path, "w") as f:
        f.create_dataset("lzf", data=data, chunks=(5, 12), compression="lzf")
        f.create_dataset("lz4", data=data, chunks=(5, 12), **hdf5plugin.LZ4())
        f.create_dataset("bitshuffle", data=data, chunks=(5, 12), **hdf5plugin.Bitshuffle())


def _filter_mask(path: Path) -> None:
    data = np.arange(24, dtype="<i4").reshape(6, 4)
    with h5py.File(path, "w") as f:
        dcpl = h5p.create(h5p.DATASET_CREATE)
        dcpl.set_chunk((3, 4))
        dcpl.set_filter(h5py.h5z.FILTER_DEFLATE, h5py.h5z.FLAG_OPTIONAL, (4,))
        dsid = h5d.create(f.id, b"masked", h5t.STD_I32LE, h5s.create_simple(data.shape), dcpl=dcpl)
        ds = h5py.Dataset(dsid)
        ds[0:3] = data[0:3]  # compressed normally
        dsid.write_direct_chunk((3, 0), data[3:6].tobytes(), filter_mask=1)  # deflate skipped


def _types(path: Path) -> None:
    with h5py.File(path, "w") as f:
        for dt in ("i1", "u1", "<i2", "<u2", "<i4", "<u4", "<i8", "<u8", "<f2", "<f4", "<f8"):
            info = np.iinfo(dt) if "i" in dt or "u" in dt else None
            values = (
                np.array([info.min, info.min // 3, 0, 1, info.max // 2, info.max], dtype=dt)
                if info
                else np.array(
                    [0, -1.5, np.inf, -np.inf, np.nan, 6e4 if dt == "<f2" else 1e30], dtype=dt
                )
            )
            f.create_dataset(f"t_{np.dtype(dt).name}", data=values, chunks=(4,))
            f.create_dataset(
                f"big_{np.dtype(dt).name}", data=values.astype(np.dtype(dt).newbyteorder(">"))
            )
        f.create_dataset(
            "complex64", data=np.array([1 + 2j, -3.5j, np.nan], dtype="c8"), chunks=(2,)
        )
        f.create_dataset("complex128", data=np.array([1e300 + 2j, 0], dtype="c16"))
        f.create_dataset(
            "bool", data=np.array([True, False, True]), chunks=(2,), compression="gzip"
        )


def _strings(path: Path) -> None:
    with h5py.File(path, "w") as f:
        f.create_dataset(
            "fixed_bytes", data=np.array([b"abc", b"", b"xy\x00z"], dtype="S4"), chunks=(2,)
        )
        utf8 = f.create_dataset("fixed_utf8", shape=(2,), dtype=h5py.string_dtype("utf-8", 6))
        utf8[0] = "héllo".encode()
        utf8[1] = "ü".encode()
        f.create_dataset("vlen_utf8", data=np.array(["x", "yyé", ""], dtype=h5py.string_dtype()))
        f.create_dataset(
            "vlen_ascii",
            data=np.array([b"ab", b"c"], dtype=h5py.string_dtype("ascii")),
            chunks=(1,),
            compression="gzip",
        )
        # netCDF-C writes char arrays as null-terminated fixed strings of length 1
        tid = h5t.C_S1.copy()
        tid.set_size(1)
        tid.set_strpad(h5t.STR_NULLTERM)
        dsid = h5d.create(f.id, b"nc_char", tid, h5s.create_simple((2, 3)))
        dsid.write(
            h5s.ALL,
            h5s.ALL,
            np.array([[b"a", b"b", b"c"], [b"d", b"", b"f"]], dtype="S1"),
            mtype=tid,
        )


def _compound(path: Path) -> None:
    packed = np.dtype([("x", "<i4"), ("y", "<f8"), ("tag", "S3")])
    padded = np.dtype(
        {"names": ["a", "b"], "formats": ["u1", "<f8"], "offsets": [0, 8], "itemsize": 16}
    )
    with h5py.File(path, "w") as f:
        data = np.array([(1, 1.5, b"a"), (2, -2.5, b"bcd")], dtype=packed)
        f.create_dataset("packed", data=data, chunks=(1,), compression="gzip")
        f.create_dataset("padded", data=np.array([(1, 2.5), (255, -1.0), (0, 0.0)], dtype=padded))
        f["big_endian"] = np.array([(1, 2.5), (-3, 4.0)], dtype=[("a", ">i4"), ("b", ">f8")])
        f["mixed_endian"] = np.array([(7, 1e300), (-1, 0.5)], dtype=[("a", "<i4"), ("b", ">f8")])


def _enum_opaque_refs(path: Path) -> None:
    with h5py.File(path, "w") as f:
        dt = h5py.enum_dtype({"CLEAR": 0, "CLOUDY": 1, "PARTLY CLOUDY": 2}, basetype="u1")
        f.create_dataset("cloud", data=np.array([0, 2, 1, 1], dtype="u1"), dtype=dt, chunks=(2,))
        f.create_dataset("opaque", data=np.array([b"\x01\x02\x03", b"\xff\x00\x01"], dtype="V3"))
        f["target"] = np.arange(3)
        f.create_dataset("refs", data=np.array([f["target"].ref], dtype=h5py.ref_dtype))
        f.create_dataset("vlen_ints", shape=(2,), dtype=h5py.vlen_dtype("i4"))


def _cf(path: Path) -> None:
    with h5netcdf.File(path, "w") as f:
        f.dimensions = {"time": None, "y": 3, "x": 4}
        t = f.create_variable("time", ("time",), "f8")
        t.attrs.update({"units": "days since 2000-01-01", "calendar": "proleptic_gregorian"})
        f.resize_dimension("time", 5)
        t[:] = np.arange(5)
        f.create_variable("y", ("y",), "f4", data=np.array([10.0, 20.0, 30.0]))
        temp = f.create_variable(
            "temp",
            ("time", "y", "x"),
            "f4",
            chunks=(2, 3, 4),
            compression="gzip",
            fillvalue=np.float32(-999.0),
        )
        values = RNG.normal(280, 5, size=(5, 3, 4)).astype("f4")
        values[1, 1, 1] = -999.0
        temp[...] = values
        temp.attrs.update(
            {"units": "K", "long_name": "temperature", "missing_value": np.float32(-999.0)}
        )
        packed = f.create_variable("packed", ("y", "x"), "i2", fillvalue=np.int16(-32767))
        packed[...] = np.array([[1, 2, -32767, 4], [5, 6, 7, 8], [9, 10, 11, 12]], dtype="i2")
        packed.attrs.update({"scale_factor": 0.5, "add_offset": 100.0})
        f.create_variable(
            "nan_fill", ("x",), "f8", fillvalue=np.nan, data=np.array([1.0, np.nan, 3.0, 4.0])
        )
        f.attrs.update(
            {
                "title": "cf case",
                "history": b"made by a test",
                "nan_attr": np.nan,
                "inf_attr": np.array([np.inf, -np.inf]),
                "ints": np.array([1, 2, 3], dtype="i2"),
            }
        )


def _groups(path: Path) -> None:
    with h5netcdf.File(path, "w") as f:
        f.dimensions = {"x": 3}
        f.create_variable("x", ("x",), "i4", data=np.arange(3))
        f.create_variable("root_var", ("x",), "f4", data=np.ones(3))
        sub = f.create_group("forecast")
        sub.dimensions = {"step": 2}
        sub.create_variable("step", ("step",), "i8", data=np.array([0, 6]))
        sub.create_variable("t2m", ("step", "x"), "f4", data=np.arange(6.0).reshape(2, 3))
        sub.attrs["model"] = "test"
        deeper = sub.create_group("surface")
        deeper.create_variable("sst", ("x",), "f8", data=np.array([1.0, 2.0, 3.0]))


def _scales(path: Path) -> None:
    with h5py.File(path, "w") as f:
        f["lat"] = np.linspace(-10, 10, 5)
        f["lat_bnds_scale"] = np.linspace(-11, 11, 5)
        f["lon"] = np.arange(4.0)
        f["lat"].make_scale("lat")
        f["lat_bnds_scale"].make_scale("lat2")
        f["lon"].make_scale("lon")
        data = f.create_dataset("field", data=RNG.normal(size=(5, 4)), chunks=(5, 2))
        data.dims[0].attach_scale(f["lat"])
        data.dims[0].attach_scale(f["lat_bnds_scale"])  # two scales on one axis: the last names it
        data.dims[1].attach_scale(f["lon"])


def _phony(path: Path) -> None:
    with h5py.File(path, "w") as f:
        f["a"] = np.zeros((3, 4))
        f["b"] = np.ones((4, 4, 3))
        f["c"] = np.arange(7)
        g = f.create_group("inner")
        g["d"] = np.zeros((4, 2))
        g["e"] = np.zeros((9,))


def _dimension_only(path: Path) -> None:
    with h5netcdf.File(path, "w") as f:
        f.dimensions = {"x": 4, "nv": 2}
        f.create_variable("data", ("x", "nv"), "f4", data=np.arange(8.0).reshape(4, 2))
        f.attrs["Conventions"] = "CF-1.8"


CASES = [
    Case("chunked", _chunked),
    Case("contiguous", _contiguous, options={"contiguous_chunk_bytes": 1000}),
    Case("compact", _compact, inline=("compact",)),
    Case("unwritten", _unwritten),
    Case("empty_scalar", _empty_scalar),
    Case("resized", _resized),
    Case("external", _external, options={"contiguous_chunk_bytes": 48}),
    Case("virtual", _virtual, inline=("part",)),  # part of a source: read through HDF5
    Case("codecs", _codecs),
    Case(
        "no_codec",
        _no_codec,
        inline=("scaleoffset",),
        refused={"big_scaleoffset": "max_inline_bytes"},
        options={"max_inline_bytes": 10_000},
    ),
    Case("plugin_codecs", _plugin_codecs),  # LZF, LZ4, bitshuffle: imagecodecs decodes them
    Case("filter_mask", _filter_mask, inline=("masked",)),
    Case("types", _types),
    Case("strings", _strings, inline=("vlen_utf8", "vlen_ascii")),
    Case(
        "compound",
        _compound,
        inline=("padded", "mixed_endian"),  # packed and little-endian as Zarr's structs are
        xarray=False,
    ),
    Case(
        "enum_opaque_refs",
        _enum_opaque_refs,
        refused={"refs": "references", "vlen_ints": "variable-length sequences"},
        xarray=False,
    ),
    Case("cf", _cf),
    Case("groups", _groups),
    Case("scales", _scales),
    Case("phony", _phony),
    Case("dimension_only", _dimension_only),
]
