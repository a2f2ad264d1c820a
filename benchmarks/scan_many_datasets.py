"""Scanning a file of many small datasets against h5py's own walk of it (issue #18).

MATLAB v7.3 / EEGLAB files keep every cell of a struct as its own tiny
dataset (15,038 in pymatreader's ``test_epochs_onefile_h5.set``), most of
them compact (stored in the object header) with two or three string
attributes. This generates such a file and times:

- h5py: visiting every object and reading each dataset's storage info
  (creation properties, layout, chunk index or contiguous offset), then
  the same with every attribute read too (a scan reads them all), then with the
  values of compact datasets too (all that a scan must read);
- all that a scan reads, through h5py's low-level calls alone (the least a scan through
  h5py can cost);
- ``zms.scan`` of the file (target: at most 2x h5py's visit), and the same scan reading
  every dataset through h5py (``read_headers=False``: what it took before small datasets
  were described from their object headers);
- ``zarr.open_group`` on a ManifestStore of the scan, and reading one array.

``--layout chunked`` times a file of small chunked gzip datasets instead (40 floats in
chunks of 16, two string attributes each, in 100 groups), as netCDF-4 and h5py write
variables by default; ``--layout netcdf4`` the same variables written by h5netcdf as
netCDF-4 (a dimension ``x`` in each group, so each variable has a ``DIMENSION_LIST`` of
object references, and a ``units`` attribute); ``--layout netcdf-c`` the same variables
written by netCDF-C (netCDF4-python), which also gives them ``_Netcdf4Coordinates``;
``--layout netcdf-cf`` those with 6 more CF attributes each (kept in dense storage);
``--layout h5netcdf-cf`` the ``netcdf4`` variables with those 7 CF attributes written by
h5netcdf (text as variable-length strings in the global heap, in dense storage).

``--cpu`` times CPU seconds of this process instead of wall seconds (steadier on a
shared machine; the work is single-threaded).

    .venv/bin/python benchmarks/scan_many_datasets.py [--datasets 15000] [--repeat 3] [--cpu]
        [--layout compact|chunked|netcdf4|netcdf-c|netcdf-cf|h5netcdf-cf]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import h5py
import numpy as np
import zarr
from h5py import h5a, h5d, h5g, h5o, h5p, h5s, h5t

import zarr_manifest_store as zms
from zarr_manifest_store.scan.hdf5 import scan_file


def make_file(path: Path, n: int) -> None:
    """``n`` small datasets: compact doubles and MATLAB char arrays, a few contiguous."""
    with h5py.File(path, "w") as f:
        refs = f.create_group("#refs#")
        for i in range(n):
            name = f"d{i:05d}"
            kind = i % 3
            if kind == 2:  # a few contiguous ones, as MATLAB writes its larger arrays
                ds = refs.create_dataset(name, data=np.arange(i % 7 + 1, dtype="f8"))
                ds.attrs["MATLAB_class"] = np.bytes_("double")
                continue
            dtype = h5t.IEEE_F64LE if kind == 0 else h5t.STD_U16LE
            dcpl = h5p.create(h5p.DATASET_CREATE)
            dcpl.set_layout(h5d.COMPACT)
            dsid = h5d.create(refs.id, name.encode(), dtype, h5s.create_simple((1, 4)), dcpl=dcpl)
            dsid.close()
            ds = refs[name]
            ds[...] = np.arange(4).reshape(1, 4) + i
            ds.attrs["MATLAB_class"] = np.bytes_("double" if kind == 0 else "char")
            ds.attrs["H5PATH"] = np.bytes_(f"/EEG/field{i % 50}")
            if kind == 1:
                ds.attrs["MATLAB_int_decode"] = np.int32(2)
        f.create_dataset("EEG/data", data=np.zeros((32, 1000), "f4"), chunks=(32, 100))


def make_chunked_file(path: Path, n: int) -> None:
    """``n`` small chunked gzip datasets of 40 floats, with two string attributes each."""
    with h5py.File(path, "w") as f:
        for i in range(n):
            group = f.require_group(f"g{i % 100}")
            ds = group.create_dataset(
                f"v{i}", data=np.arange(40, dtype="f4") + i, chunks=(16,), compression="gzip"
            )
            ds.attrs["units"] = "K"
            ds.attrs["long_name"] = f"variable {i}"


def make_netcdf4_file(path: Path, n: int, cf: bool = False) -> None:
    """``n`` netCDF-4 variables of 40 floats on a dimension of their group, zlib-compressed in
    chunks of 16, written by h5netcdf (``cf``: with 7 CF attributes, not only ``units``)."""
    import h5netcdf

    with h5netcdf.File(path, "w") as f:
        for i in range(n):
            name = f"g{i % 100}"
            group = f.groups[name] if name in f.groups else f.create_group(name)
            if "x" not in group.dimensions:
                group.dimensions["x"] = 40
            v = group.create_variable(
                f"v{i}",
                ("x",),
                "f4",
                data=np.arange(40, dtype="f4") + i,
                compression="gzip",
                chunks=(16,),
            )
            v.attrs["units"] = "K"
            if cf:
                v.attrs["long_name"] = f"variable {i}"
                v.attrs["standard_name"] = "air_temperature"
                v.attrs["valid_min"] = np.float32(0)
                v.attrs["valid_max"] = np.float32(400)
                v.attrs["comment"] = "written to time a scan of CF attributes"
                v.attrs["source"] = "benchmarks/scan_many_datasets.py"


def make_h5netcdf_cf_file(path: Path, n: int) -> None:
    """The variables of ``make_netcdf4_file`` with 7 CF attributes each, text among them as
    h5netcdf writes it (variable-length strings, each in the global heap)."""
    make_netcdf4_file(path, n, cf=True)


NETCDF_C = """
import sys
import netCDF4
import numpy as np

with netCDF4.Dataset(sys.argv[1], "w", format="NETCDF4") as f:
    for i in range(int(sys.argv[2])):
        name = f"g{i % 100}"
        group = f.groups[name] if name in f.groups else f.createGroup(name)
        if "x" not in group.dimensions:
            group.createDimension("x", 40)
        v = group.createVariable(f"v{i}", "f4", ("x",), zlib=True, chunksizes=(16,))
        v[:] = np.arange(40, dtype="f4") + i
        v.units = "K"
        if sys.argv[3] == "cf":  # past 8 attributes netCDF-C stores them densely
            v.long_name = f"variable {i}"
            v.standard_name = "air_temperature"
            v.valid_min = np.float32(0)
            v.valid_max = np.float32(400)
            v.comment = "written to time a scan of CF attributes"
            v.source = "benchmarks/scan_many_datasets.py"
"""


def make_netcdf_c_file(path: Path, n: int, attributes: str = "units") -> None:
    """The variables of ``make_netcdf4_file`` written by netCDF-C (netCDF4-python, in a
    subprocess: importing netCDF4 points HDF5's plugin path at its own folder)."""
    command = [sys.executable, "-c", NETCDF_C, str(path), str(n), attributes]
    subprocess.run(command, check=True)


def make_netcdf_cf_file(path: Path, n: int) -> None:
    """The variables of ``make_netcdf_c_file`` with 6 more CF attributes each (9 with
    ``_Netcdf4Coordinates`` and ``DIMENSION_LIST``), which netCDF-C stores densely."""
    make_netcdf_c_file(path, n, attributes="cf")


MAKERS = {
    "compact": make_file,
    "chunked": make_chunked_file,
    "netcdf4": make_netcdf4_file,
    "netcdf-c": make_netcdf_c_file,
    "netcdf-cf": make_netcdf_cf_file,
    "h5netcdf-cf": make_h5netcdf_cf_file,
}


def h5py_walk(path: Path, attributes: bool = True, compact: bool = False) -> int:
    """Every object visited, each dataset's storage info (and attributes, and the values of
    compact datasets, which live in the object header: all a scan must read) read."""
    count = 0

    def visit(_name: str, obj: object) -> None:
        nonlocal count
        if isinstance(obj, h5py.Dataset):
            count += 1
            dcpl = obj.id.get_create_plist()
            layout = dcpl.get_layout()
            if layout == h5d.CHUNKED:
                obj.id.chunk_iter(lambda _info: None)
            elif layout == h5d.COMPACT and compact:
                obj.id.read(h5s.ALL, h5s.ALL, np.empty(obj.shape, obj.dtype))
            else:
                obj.id.get_offset()
            for key in obj.attrs if attributes else ():
                obj.attrs[key]

    with h5py.File(path, "r") as f:
        f.visititems(visit)
    return count


def h5py_lowlevel(path: Path) -> int:
    """What a scan must read, through h5py's low-level calls alone and nothing else: every
    link, and per dataset its creation properties (layout, fill value, attribute order), type,
    dataspace, each attribute (type, dataspace, value), and its data (compact) or storage.
    NumPy dtypes are worked out once per HDF5 type, as the scan works them out."""
    count = 0
    dtypes: dict[bytes, np.dtype] = {}

    def dtype_of(tid: h5t.TypeID) -> np.dtype:
        key = tid.encode()
        if key not in dtypes:
            dtypes[key] = tid.dtype
        return dtypes[key]

    def group(gid: h5g.GroupID) -> None:
        nonlocal count
        names: list[bytes] = []
        gid.links.iterate(names.append)
        for name in names:
            oid = h5o.open(gid, name)
            if isinstance(oid, h5g.GroupID):
                group(oid)
                continue
            count += 1
            dcpl = oid.get_create_plist()
            layout = dcpl.get_layout()
            dtype = dtype_of(oid.get_type())
            space = oid.get_space()
            shape = space.get_simple_extent_dims()
            space.get_simple_extent_dims(True)
            if dcpl.fill_value_defined() != h5d.FILL_VALUE_UNDEFINED:
                dcpl.get_fill_value(np.zeros((1,), dtype))
            dcpl.get_attr_creation_order()
            attributes: list[bytes] = []
            h5a.iterate(oid, attributes.append)
            for attribute in attributes:
                aid = h5a.open(oid, attribute)
                extent = aid.get_space().get_simple_extent_dims()
                values = np.zeros(extent, dtype_of(aid.get_type()))
                aid.read(values)
            if layout == h5d.CHUNKED:
                oid.chunk_iter(lambda _info: None)
            elif layout == h5d.COMPACT:
                oid.read(h5s.ALL, h5s.ALL, np.empty(shape, dtype))
            else:
                dcpl.get_nfilters()
                oid.get_offset()

    with h5py.File(path, "r") as f:
        group(f.id)
    return count


CLOCK = time.perf_counter


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = CLOCK()
        fn()
        times.append(CLOCK() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", type=int, default=15_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--cpu", action="store_true", help="time CPU seconds, not wall seconds")
    parser.add_argument("--layout", choices=sorted(MAKERS), default="compact")
    args = parser.parse_args()
    global CLOCK
    CLOCK = time.process_time if args.cpu else time.perf_counter
    warnings.simplefilter("ignore")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "many.h5"
        chunked = args.layout != "compact"
        MAKERS[args.layout](path, args.datasets)
        visited = best(lambda: h5py_walk(path, attributes=False), args.repeat)
        walked = best(lambda: h5py_walk(path), args.repeat)
        everything = best(lambda: h5py_walk(path, compact=True), args.repeat)
        lowlevel = best(lambda: h5py_lowlevel(path), args.repeat)
        scanned = best(lambda: zms.scan(str(path)), args.repeat)
        through_h5py = best(lambda: scan_file(str(path), read_headers=False), args.repeat)
        group = zms.scan(str(path))
        store = zms.ManifestStore(group)
        opened = best(lambda: zarr.open_group(store, mode="r"), args.repeat)
        root = zarr.open_group(store, mode="r")
        if chunked:
            assert root["g1/v1"][...].tolist() == list(range(1, 41))
        else:
            assert root["#refs#/d00001"][...].tolist() == [[1, 2, 3, 4]]
        count = args.datasets + (not chunked)
        print(f"{count} {args.layout} datasets, {path.stat().st_size / 1e6:.1f} MB")
        print(f"h5py visit + storage info:              {visited:.2f} s")
        print(f"h5py visit + storage info + attributes: {walked:.2f} s")
        print(f"... + compact datasets' values:          {everything:.2f} s")
        print(
            f"the same read with low-level calls only:  {lowlevel:.2f} s "
            f"({lowlevel / visited:.2f}x the visit: no scan through h5py can take less)"
        )
        print(
            f"zms.scan:                               {scanned:.2f} s "
            f"({scanned / visited:.2f}x the visit, {scanned / walked:.2f}x with attributes, "
            f"{scanned / everything:.2f}x with values too; target <= 2x the visit: "
            f"{'met' if scanned <= 2 * visited else 'NOT met'})"
        )
        print(
            f"the same scan, every dataset through h5py: {through_h5py:.2f} s "
            f"({through_h5py / visited:.2f}x the visit)"
        )
        print(f"zarr.open_group(ManifestStore):         {opened:.2f} s")


if __name__ == "__main__":
    main()
