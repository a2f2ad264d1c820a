"""A seeded random generator of HDF5 files: the storage and type variants real producers write.

``build(seed, path)`` writes one file (and any files beside it that its
external storage, external links and virtual datasets name) and returns the
list of features it combined, so that a failure can be reproduced from its
seed and understood from its features. Each file combines file-level
variants (library version bounds, user block, file-space strategy, SWMR
appends, reopened files, creation-ordered and dense groups), a few datasets
each with a random type (``h5fuzz_types``), layout (contiguous, compact,
chunked with every chunk index, external, virtual), filter pipeline, fill
value and allocation settings, and writes (whole, partial, none, direct
chunks that skip a filter, resized), and links (hard, soft, dangling,
external). The check is ``benchmarks/fuzz_hdf5.py``.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import glob
import itertools
import os
import zlib
from pathlib import Path

import h5py
import hdf5plugin
import numpy as np
from h5fuzz_types import TypeSpec, draw, values
from h5py import h5d, h5f, h5p, h5s, h5t, h5z

LIBVERS = ["earliest", "v108", "v110", "v112", "latest"]
FILTER_OPTIONAL = h5z.FLAG_OPTIONAL
FILL_TIMES = {
    "never": h5d.FILL_TIME_NEVER,
    "alloc": h5d.FILL_TIME_ALLOC,
    "ifset": h5d.FILL_TIME_IFSET,
}
ALLOC_TIMES = {
    "early": h5d.ALLOC_TIME_EARLY,
    "incr": h5d.ALLOC_TIME_INCR,
    "late": h5d.ALLOC_TIME_LATE,
}
BUILT_IN = frozenset({"deflate", "shuffle", "fletcher32", "scaleoffset", "nbit", "szip"})


class Build:
    """One file being built: its random source, path, open file and features so far."""

    def __init__(self, seed: int, path: Path) -> None:
        self.rng = np.random.default_rng(seed)
        self.path = path
        self.features: list[str] = []
        self.count = 0
        self.appendable: list[str] = []  # chunked datasets with an unlimited first axis
        self.target: h5py.Dataset | None = None  # what reference datasets point at
        self.odd_names: set[str] = set()

    def chance(self, p: float) -> bool:
        return bool(self.rng.random() < p)

    def pick(self, options: list):
        return options[int(self.rng.integers(len(options)))]

    def name(self, prefix: str) -> str:
        """A new link name: ``prefix`` and a count, now and then after a name Zarr reserves or
        escapes (``__``, ``%``, ``\\``, ``zarr.json``) or one of spaces and non-ASCII letters."""
        self.count += 1
        if self.chance(0.08):
            odd = self.pick(["__cat", "%", "a b", "é", "日本", "back\\slash", "zarr.json"])
            if odd not in self.odd_names:
                self.odd_names.add(odd)
                return odd
            return f"{odd}{self.count}"
        return f"{prefix}{self.count}"

    def note(self, feature: str) -> None:
        self.features.append(feature)


def build(seed: int, path: Path | str) -> list[str]:
    """Write the file of ``seed`` at ``path``; returns its features."""
    b = Build(seed, Path(path))
    kwargs = _file_options(b)
    with h5py.File(b.path, "w", **kwargs) as f:
        groups = [f, *_groups(b, f)]
        b.target = f.create_dataset("target", data=np.arange(6, dtype="<i4"))
        for _ in range(int(b.rng.integers(2, 7))):
            parent = b.pick(groups)
            name = b.name("d")
            try:
                _dataset(b, f, parent, name)
            except (ValueError, TypeError, OSError, RuntimeError, KeyError) as e:
                b.note(f"unbuildable:{type(e).__name__}:{str(e)[:60]}")
        if b.chance(0.05):
            f.create_dataset(b.name("null"), data=h5py.Empty("<f4"))
            b.note("null_dataspace")
        _scales(b, f)
        _links(b, f, groups)
        _attributes(b, groups)
        if kwargs.get("libver") in (("v110", "latest"), ("latest", "latest"), ("v112", "latest")):
            _swmr(b, f)
    if b.appendable and b.chance(0.3):
        _reopen(b)
    return b.features


def _file_options(b: Build) -> dict:
    low = b.pick(LIBVERS)
    kwargs: dict = {"libver": (low, "latest")}
    b.note(f"libver:{low}")
    if b.chance(0.2):
        kwargs["userblock_size"] = b.pick([512, 1024, 4096])
        b.note(f"userblock:{kwargs['userblock_size']}")
    if b.chance(0.3):
        strategy = b.pick(["page", "fsm", "aggregate", "none"])
        kwargs["fs_strategy"] = strategy
        kwargs["fs_persist"] = b.chance(0.5)
        if strategy == "page":  # pages align objects: a user block must span whole pages
            sizes = [512, 4096, 16384]
            limit = kwargs.get("userblock_size")
            kwargs["fs_page_size"] = b.pick([p for p in sizes if not limit or p <= limit])
        b.note(f"fs_strategy:{strategy}:{kwargs.get('fs_page_size', '')}")
    if b.chance(0.3):
        kwargs["track_order"] = True
        b.note("track_order:file")
    if b.chance(0.15):
        kwargs["meta_block_size"] = b.pick([512, 8192])
        b.note("meta_block_size")
    return kwargs


def _groups(b: Build, f: h5py.File) -> list[h5py.Group]:
    out = []
    for _ in range(int(b.rng.integers(0, 3))):
        parent = b.pick([f, *out])
        gcpl = h5p.create(h5p.GROUP_CREATE)
        features = []
        if b.chance(0.4):
            gcpl.set_link_creation_order(h5p.CRT_ORDER_TRACKED | h5p.CRT_ORDER_INDEXED)
            features.append("crt_order")
        if b.chance(0.4):
            _hdf5().H5Pset_link_phase_change(gcpl.id, 0, 0)  # dense link storage from the start
            features.append("dense_links")
        name = b.name("g")
        gid = h5py.h5g.create(parent.id, name.encode(), gcpl=gcpl)
        out.append(h5py.Group(gid))
        b.note(f"group:{name}:{','.join(features)}")
    return out


def _dataset(b: Build, f: h5py.File, parent: h5py.Group, name: str) -> None:
    spec = draw(b.rng)
    layout = b.pick(["chunked"] * 5 + ["contiguous"] * 2 + ["compact", "external", "virtual"])
    if layout == "external" and (not spec.fixed or spec.raw):
        layout = "contiguous"
    if layout == "virtual" and (not spec.fixed or spec.raw or spec.dtype.names):
        layout = "chunked"
    b.note(f"{name}:type:{spec.label}")
    b.note(f"{name}:layout:{layout}")
    if layout == "virtual":
        _virtual(b, parent, name, spec)
        return
    ndim = int(b.rng.integers(0 if layout in ("contiguous", "compact") else 1, 4))
    shape = tuple(
        int(b.rng.integers(0, 13)) if b.chance(0.1) else int(b.rng.integers(1, 13))
        for _ in range(ndim)
    )
    dcpl = h5p.create(h5p.DATASET_CREATE)
    maxshape = shape
    if layout == "chunked":
        maxshape = _chunking(b, name, dcpl, shape, spec)
    elif layout == "compact":
        dcpl.set_layout(h5d.COMPACT)
    elif layout == "external":
        _external(b, name, dcpl, shape, spec)
    _fill(b, name, dcpl, spec, layout)
    tid = _type_for(b, f, name, spec)
    space = (
        h5s.create_simple(shape, tuple(h5s.UNLIMITED if m is None else m for m in maxshape))
        if ndim
        else h5s.create(h5s.SCALAR)
    )
    dsid = h5d.create(parent.id, name.encode(), tid, space, dcpl=dcpl)
    ds = h5py.Dataset(dsid)
    if layout == "chunked" and maxshape and maxshape[0] is None and not spec.raw:
        b.appendable.append(ds.name)
    _write(b, name, ds, spec, layout)
    if layout == "chunked" and any(
        m is None or m > s for m, s in zip(maxshape, shape, strict=True)
    ):
        _resize(b, name, ds, spec, maxshape)


def _type_for(b: Build, f: h5py.File, name: str, spec: TypeSpec) -> h5t.TypeID:
    tid = spec.file_type()
    if b.chance(0.1):  # a committed (named) type, shared as netCDF-4 shares its enum types
        tid = tid.copy()
        tid.commit(f.id, f"type_{name}".encode())
        b.note(f"{name}:committed_type")
    return tid


def _chunking(
    b: Build, name: str, dcpl: h5p.PropDCID, shape: tuple[int, ...], spec: TypeSpec
) -> tuple:
    maxshape = []
    for n in shape:
        maxshape.append(b.pick([n, n, None, n + int(b.rng.integers(1, 20))]))
    chunks = []
    for n, m in zip(shape, maxshape, strict=True):
        limit = max(n, 1) if m is None else max(m, 1)
        chunks.append(int(b.rng.integers(1, min(limit, 16) + 1)))
    if b.chance(0.2):  # one chunk covering the whole dataset (the single-chunk index)
        chunks = [max(n, 1) for n in shape]
    dcpl.set_chunk(tuple(chunks))
    b.note(f"{name}:chunks:{tuple(chunks)}:maxshape:{tuple(maxshape)}")
    _filters(b, name, dcpl, spec)
    if b.chance(0.1):
        # h5py does not wrap H5Pset_chunk_opts; 0x0002: H5D_CHUNK_DONT_FILTER_PARTIAL_CHUNKS
        assert _hdf5().H5Pset_chunk_opts(dcpl.id, 0x0002) >= 0
        b.note(f"{name}:dont_filter_partial_chunks")
    return tuple(maxshape)


def _filters(b: Build, name: str, dcpl: h5p.PropDCID, spec: TypeSpec) -> None:
    """A pipeline as producers write them: a pre-filter, a compressor, a checksum (each maybe)."""
    numeric = spec.fixed and not spec.dtype.names and spec.dtype.kind in "iuf" and not spec.raw
    pre = ["shuffle"] + (["scaleoffset", "nbit", "bitshuffle"] if numeric else [])
    compressors = ["deflate", "deflate", "lzf", "zstd", "bzip2"]
    if spec.fixed:  # blosc on variable-length heap ids crashes the writer (SIGFPE)
        compressors += ["blosc", "blosc2", "lz4"]
    compressors += ["szip"] if numeric else []
    if numeric and spec.dtype.itemsize <= 8:  # SZ on long doubles corrupts the writer's heap
        compressors += ["zfp", "sz"]
    stages = []
    if b.chance(0.3):
        stages.append(b.pick(pre))
    if b.chance(0.6):
        stages.append(b.pick(compressors))
    if b.chance(0.2):
        stages.insert(int(b.rng.integers(len(stages) + 1)), "fletcher32")
    chosen = []
    for which in stages:
        # h5py sets every filter but its built-in ones optional: a chunk a compressor cannot
        # shrink is stored unfiltered, its filter mask saying so
        optional = which not in BUILT_IN or b.chance(0.15)
        try:
            _add_filter(b, dcpl, which, spec, optional)
        except (ValueError, KeyError):
            continue
        chosen.append(which + ("?" if optional else ""))
    if chosen:
        b.note(f"{name}:filters:{'+'.join(chosen)}")


def _add_filter(b: Build, dcpl: h5p.PropDCID, which: str, spec: TypeSpec, optional: bool) -> None:
    flags = FILTER_OPTIONAL if optional else 0
    itemsize = spec.dtype.itemsize
    if which == "shuffle":
        dcpl.set_shuffle() if not optional else dcpl.set_filter(
            h5z.FILTER_SHUFFLE, flags, (itemsize,)
        )
    elif which == "deflate":
        dcpl.set_filter(h5z.FILTER_DEFLATE, flags, (int(b.rng.integers(0, 10)),))
    elif which == "fletcher32":
        dcpl.set_fletcher32()
    elif which == "lzf":
        dcpl.set_filter(h5py.h5z.FILTER_LZF, flags, ())
    elif which == "scaleoffset":
        if spec.dtype.kind == "f":
            dcpl.set_scaleoffset(h5z.SO_FLOAT_DSCALE, int(b.rng.integers(0, 4)))
        else:
            dcpl.set_scaleoffset(h5z.SO_INT, h5z.SO_INT_MINBITS_DEFAULT)
    elif which == "nbit":
        dcpl.set_filter(h5z.FILTER_NBIT, flags, ())
    elif which == "szip":
        if not h5z.filter_avail(h5z.FILTER_SZIP):
            raise ValueError("no szip")
        dcpl.set_szip(h5z.SZIP_NN_OPTION_MASK, 8)
    else:
        plugin = _plugin(b, which, spec)
        dcpl.set_filter(plugin.filter_id, flags, plugin.filter_options)


def _plugin(b: Build, which: str, spec: TypeSpec):
    if which == "blosc":
        return hdf5plugin.Blosc(
            cname=b.pick(["lz4", "zstd", "blosclz", "zlib", "lz4hc"]),
            clevel=int(b.rng.integers(0, 10)),
            shuffle=b.pick([0, 1, 2]),
        )
    if which == "blosc2":
        return hdf5plugin.Blosc2(
            cname=b.pick(["lz4", "zstd", "blosclz"]),
            clevel=int(b.rng.integers(0, 10)),
            filters=b.pick([0, 1, 2]),
        )
    if which == "zstd":
        return hdf5plugin.Zstd(clevel=int(b.rng.integers(1, 20)))
    if which == "bzip2":
        return hdf5plugin.BZip2(blocksize=int(b.rng.integers(1, 10)))
    if which == "lz4":
        return hdf5plugin.LZ4()
    if which == "bitshuffle":
        return hdf5plugin.Bitshuffle(cname=b.pick(["none", "lz4", "zstd"]))
    if which == "zfp":
        if spec.dtype.kind != "f" or spec.dtype.itemsize < 4:
            raise ValueError("zfp: floats")
        return hdf5plugin.Zfp(reversible=True) if b.chance(0.5) else hdf5plugin.Zfp(rate=8.0)
    if which == "sz":
        if spec.dtype.kind != "f" or spec.dtype.itemsize < 4:
            raise ValueError("sz: floats")
        return hdf5plugin.SZ(absolute=0.01)
    raise KeyError(which)


def _fill(b: Build, name: str, dcpl: h5p.PropDCID, spec: TypeSpec, layout: str) -> None:
    choice = b.pick(["default", "value", "value", "undefined"])
    if choice == "value" and spec.fixed and not spec.raw:
        fill = values(spec, b.rng, (1,))
        dcpl.set_fill_value(np.ascontiguousarray(fill))
        b.note(f"{name}:fill:value")
    elif choice == "undefined" and spec.fixed and not spec.raw:
        _set_undefined_fill_value(dcpl, spec.file_type())
        b.note(f"{name}:fill:undefined")
    if b.chance(0.3):
        time = b.pick(list(FILL_TIMES))
        dcpl.set_fill_time(FILL_TIMES[time])
        b.note(f"{name}:fill_time:{time}")
    if b.chance(0.3) and layout != "compact":
        alloc = b.pick(list(ALLOC_TIMES))
        dcpl.set_alloc_time(ALLOC_TIMES[alloc])
        b.note(f"{name}:alloc_time:{alloc}")


@functools.cache
def _hdf5() -> ctypes.CDLL:
    """The HDF5 library h5py uses, for the calls h5py does not wrap."""
    libs = os.path.join(os.path.dirname(h5py.__file__), os.pardir, "h5py.libs")
    found = [p for p in glob.glob(os.path.join(libs, "libhdf5-*")) if "_hl" not in p]
    lib = ctypes.CDLL(found[0] if found else h5py.h5.__file__)
    lib.H5Pset_link_phase_change.argtypes = [ctypes.c_int64, ctypes.c_uint, ctypes.c_uint]
    lib.H5Pset_chunk_opts.argtypes = [ctypes.c_int64, ctypes.c_uint]
    return lib


def _set_undefined_fill_value(dcpl: h5p.PropDCID, tid: h5t.TypeID) -> None:
    """``H5Pset_fill_value`` with a NULL value (h5py has no call for it; PyTables makes these)."""
    set_fill_value = _hdf5().H5Pset_fill_value
    set_fill_value.argtypes = [ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p]
    if set_fill_value(dcpl.id, tid.id, None) < 0:
        raise ValueError("H5Pset_fill_value(NULL) failed")


def _external(
    b: Build, name: str, dcpl: h5p.PropDCID, shape: tuple[int, ...], spec: TypeSpec
) -> None:
    total = int(np.prod(shape)) * spec.dtype.itemsize
    cuts = sorted(int(c) for c in b.rng.integers(0, total + 1, size=int(b.rng.integers(0, 3))))
    bounds = [0, *cuts, total]
    for i, (start, stop) in enumerate(itertools.pairwise(bounds)):
        ext = b.path.with_name(f"{b.path.stem}.{name}.ext{i}.bin")
        header = int(b.rng.integers(0, 40))
        ext.write_bytes(b"\xaa" * header)
        last = i == len(bounds) - 2
        size = h5f.UNLIMITED if last and b.chance(0.5) else stop - start
        dcpl.set_external(ext.name.encode() if b.chance(0.5) else str(ext).encode(), header, size)
    b.note(f"{name}:external:{len(bounds) - 1}")


def _write(b: Build, name: str, ds: h5py.Dataset, spec: TypeSpec, layout: str) -> None:
    how = b.pick(["full", "full", "partial", "none"] + (["direct"] if layout == "chunked" else []))
    b.note(f"{name}:write:{how}")
    if how == "none" or ds.size == 0:
        return
    if how == "direct":
        _direct(b, name, ds, spec)
        return
    if how == "full":
        _write_region(b, ds, spec, tuple(slice(0, n) for n in ds.shape))
        return
    for _ in range(int(b.rng.integers(1, 4))):
        region = []
        for n in ds.shape:
            start = int(b.rng.integers(0, n))
            region.append(slice(start, int(b.rng.integers(start + 1, n + 1))))
        _write_region(b, ds, spec, tuple(region))


def _write_region(b: Build, ds: h5py.Dataset, spec: TypeSpec, region: tuple) -> None:
    shape = tuple(s.stop - s.start for s in region)
    if spec.label.startswith("ref:"):
        data = np.empty(shape, dtype=spec.dtype)
        t = b.target
        refs = (
            [t.ref, t.parent.ref]
            if spec.label == "ref:object"
            else [t.regionref[1:3], t.regionref[:]]
        )
        for i in np.ndindex(shape):
            data[i] = refs[int(b.rng.integers(2))]
    else:
        data = values(spec, b.rng, shape)
    if not spec.raw:
        ds[region if region else ()] = data
        return
    fspace = ds.id.get_space()
    if region:
        fspace.select_hyperslab(tuple(s.start for s in region), shape)
    mspace = h5s.create_simple(shape) if shape else h5s.create(h5s.SCALAR)
    ds.id.write(mspace, fspace, np.ascontiguousarray(data), mtype=spec.tid)


def _direct(b: Build, name: str, ds: h5py.Dataset, spec: TypeSpec) -> None:
    """Chunks written as their stored bytes: deflated, or raw with the deflate filter skipped."""
    dcpl = ds.id.get_create_plist()
    ids = [dcpl.get_filter(i)[0] for i in range(dcpl.get_nfilters())]
    if (
        ids not in ([], [h5z.FILTER_DEFLATE])
        or not spec.fixed
        or spec.raw
        or spec.label.startswith("ref:")
    ):
        _write_region(b, ds, spec, tuple(slice(0, n) for n in ds.shape))
        b.note(f"{name}:direct-as-full")
        return
    chunks = dcpl.get_chunk()
    grid = [-(-n // c) for n, c in zip(ds.shape, chunks, strict=True)]
    skipped = 0
    for cell in np.ndindex(*grid):
        if b.chance(0.2):
            continue
        data = values(spec, b.rng, tuple(chunks))
        raw = np.ascontiguousarray(data.astype(spec.dtype)).tobytes()
        offset = tuple(c * s for c, s in zip(cell, chunks, strict=True))
        if ids and b.chance(0.5):
            ds.id.write_direct_chunk(offset, raw, filter_mask=1)
            skipped += 1
        else:
            ds.id.write_direct_chunk(offset, zlib.compress(raw) if ids else raw, filter_mask=0)
    b.note(f"{name}:direct:skipped={skipped}")


def _resize(b: Build, name: str, ds: h5py.Dataset, spec: TypeSpec, maxshape: tuple) -> None:
    if not b.chance(0.4):
        return
    new = []
    for n, m in zip(ds.shape, maxshape, strict=True):
        top = n + 15 if m is None else m
        new.append(int(b.rng.integers(0, top + 1)))
    ds.resize(tuple(new))
    b.note(f"{name}:resized:{tuple(new)}")
    if ds.size and b.chance(0.5):
        region = tuple(slice(n - 1 if n else 0, n) for n in ds.shape)
        if all(s.stop > s.start for s in region):
            _write_region(b, ds, spec, region)
            b.note(f"{name}:written_after_resize")


def _virtual(b: Build, parent: h5py.Group, name: str, spec: TypeSpec) -> None:
    """A virtual dataset stacking 1-3 sources (files beside it, some absent, or this file)."""
    n = int(b.rng.integers(1, 4))
    length = int(b.rng.integers(1, 12))
    rows = n + int(b.rng.integers(0, 2))
    layout = h5py.VirtualLayout(shape=(rows, length), dtype=spec.dtype)
    kinds = []
    for i in range(n):
        kind = b.pick(["file", "file", "absent", "sliced", "strided", "same-file"])
        src = b.path.with_name(f"{b.path.stem}.{name}.src{i}.h5")
        src_len = {"sliced": length + int(b.rng.integers(1, 5)), "strided": 2 * length}.get(
            kind, length
        )
        if kind == "same-file":  # a source in the virtual dataset's own file
            d = parent.create_dataset(f"{name}_src{i}", data=values(spec, b.rng, (length,)))
            layout[i] = h5py.VirtualSource(".", d.name, shape=(length,))
            kinds.append(kind)
            continue
        if kind != "absent":
            with h5py.File(src, "w") as g:
                chunks = (int(b.rng.integers(1, src_len + 1)),) if b.chance(0.6) else None
                d = g.create_dataset(
                    "a",
                    shape=(src_len,),
                    dtype=spec.dtype,
                    chunks=chunks,
                    compression="gzip" if chunks and b.chance(0.5) else None,
                )
                if b.chance(0.8):
                    d[...] = values(spec, b.rng, (src_len,))
        source = h5py.VirtualSource(src.name, "a", shape=(src_len,))
        layout[i] = {"sliced": source[:length], "strided": source[::2]}.get(kind, source)
        kinds.append(kind)
    fill = values(spec, b.rng, (1,))[0] if b.chance(0.5) else None
    parent.create_virtual_dataset(name, layout, fillvalue=fill)
    b.note(f"{name}:virtual:{'+'.join(kinds)}:rows={rows}:fill={fill is not None}")


def _links(b: Build, f: h5py.File, groups: list[h5py.Group]) -> None:
    datasets = []
    f.visititems(lambda n, o: datasets.append(n) if isinstance(o, h5py.Dataset) else None)
    if datasets and b.chance(0.3):
        parent = b.pick(groups)
        parent[b.name("hard")] = f[b.pick(datasets)]
        b.note("link:hard")
    if datasets and b.chance(0.3):
        parent = b.pick(groups)
        parent[b.name("soft")] = h5py.SoftLink("/" + b.pick(datasets))
        b.note("link:soft")
    if b.chance(0.2):
        b.pick(groups)[b.name("dangling")] = h5py.SoftLink("/nowhere/at/all")
        b.note("link:dangling")
    if b.chance(0.2):
        other = b.path.with_name(f"{b.path.stem}.linked.h5")
        with h5py.File(other, "w") as g:
            g["x"] = np.arange(3)
        b.pick(groups)[b.name("ext")] = h5py.ExternalLink(other.name, "/x")
        b.note("link:external")
    if b.chance(0.1):
        b.pick(groups)[b.name("extmissing")] = h5py.ExternalLink("absent.h5", "/x")
        b.note("link:external-absent")


def _scales(b: Build, f: h5py.File) -> None:
    """A 1-D dataset made a dimension scale and attached to an axis of another (its length
    may differ: HDF5 does not check)."""
    found: list[tuple[h5py.Dataset, str]] = []

    def visit(_name: str, obj: object) -> None:
        if isinstance(obj, h5py.Dataset):
            with contextlib.suppress(ValueError, TypeError):  # quad precision has no dtype
                found.append((obj, obj.dtype.kind))

    f.visititems(visit)
    scales = [d for d, k in found if d.ndim == 1 and k in "iuf" and not d.is_virtual]
    users = [d for d, k in found if d.ndim and k != "V"]
    if not scales or not users or not b.chance(0.3):
        return
    scale, user = b.pick(scales), b.pick(users)
    if scale == user:
        return
    axis = int(b.rng.integers(user.ndim))
    try:
        scale.make_scale(b.pick(["", "x", "This is a netCDF dimension but not a netCDF variable"]))
        user.dims[axis].attach_scale(scale)
    except (ValueError, RuntimeError, KeyError):
        return
    same = scale.shape[0] == user.shape[axis]
    b.note(f"scale:{scale.name}->{user.name}[{axis}]:{'same' if same else 'other'} length")


def _attributes(b: Build, groups: list[h5py.Group]) -> None:
    objects: list = list(groups)
    groups[0].visititems(lambda n, o: objects.append(o) if isinstance(o, h5py.Dataset) else None)
    for obj in objects:
        if not b.chance(0.3):
            continue
        count = int(b.rng.integers(1, 3)) if b.chance(0.7) else 20  # 20: dense storage
        for i in range(count):
            obj.attrs[f"a{i}"] = b.pick(
                [
                    "text",
                    np.float32(1.5),
                    np.arange(3, dtype=">i2"),
                    np.array(["x", "yé"], dtype=h5py.string_dtype()),
                    np.bytes_(b"bytes"),
                    np.zeros(20000, dtype="u1"),  # 20 kB: dense attribute storage
                    np.array([(1, 2.0)], dtype=[("a", "<i4"), ("b", "<f8")]),
                    h5py.Empty("f4"),
                ]
            )
        b.note(f"attrs:{count}")


def _swmr(b: Build, f: h5py.File) -> None:
    """Appends in SWMR mode to the datasets with an unlimited first axis."""
    if not b.appendable or not b.chance(0.4):
        return
    f.swmr_mode = True
    for name in b.appendable:
        _append(b, f[name])
        f.flush()
    b.note("swmr")


def _reopen(b: Build) -> None:
    """Reopens the file and appends to a dataset, as a second writing session would."""
    with h5py.File(b.path, "r+") as f:
        _append(b, f[b.pick(b.appendable)])
    b.note("reopened")


def _append(b: Build, ds: h5py.Dataset) -> None:
    grow = int(b.rng.integers(1, 6))
    ds.resize(ds.shape[0] + grow, axis=0)
    if ds.dtype.kind in "biuf" and not ds.dtype.names and b.chance(0.7):
        ds[-grow:] = values(TypeSpec("append", ds.dtype), b.rng, (grow, *ds.shape[1:]))
