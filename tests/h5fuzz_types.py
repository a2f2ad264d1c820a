"""The HDF5 data types of the HDF5 fuzzer (tests/h5fuzz_files.py), with values to write.

Each :class:`TypeSpec` is one data type as real producers write it: NumPy
types through h5py's high-level API, and types only the low-level API makes
(bitfields, tagged opaque types, string padding, reduced precision, quad
precision), written in their file type with no conversion.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import h5py
import numpy as np
from h5py import h5t


@dataclass(frozen=True)
class TypeSpec:
    """A data type: its label, the NumPy type of the values written, the HDF5 file type
    (None: h5py's own for ``dtype``), and whether h5py writes values of ``dtype`` into
    it (else raw bytes are written in the file type)."""

    label: str
    dtype: np.dtype
    tid: h5t.TypeID | None = None
    raw: bool = False
    fixed: bool = True  # fixed-size elements (external storage and direct chunks need them)

    def file_type(self) -> h5t.TypeID:
        return self.tid if self.tid is not None else h5t.py_create(self.dtype, logical=True)


def _ints(rng: np.random.Generator, dtype: np.dtype, n: int) -> np.ndarray:
    info = np.iinfo(dtype)
    edges = np.array([info.min, info.max, 0, 1], dtype=dtype)
    values = rng.integers(info.min, info.max, size=n, dtype=dtype.newbyteorder("="), endpoint=True)
    values = values.astype(dtype)
    values[: min(n, 4)] = edges[: min(n, 4)]
    return values


def _floats(rng: np.random.Generator, dtype: np.dtype, n: int) -> np.ndarray:
    values = (rng.normal(size=n) * 10.0 ** rng.integers(-3, 4, size=n)).astype(dtype)
    special = np.array([np.nan, np.inf, -np.inf, -0.0], dtype=dtype)
    where = rng.random(n) < 0.1
    values[where] = rng.choice(special, size=int(where.sum()))
    return values


def _text(rng: np.random.Generator, n: int, unicode: bool, width: int = 8) -> list[str]:
    alphabet = list("abcXYZ 019_-") + (["é", "ü", "€", "日"] if unicode else [])
    out = []
    for _ in range(n):
        k = int(rng.integers(0, width + 1))
        out.append("".join(rng.choice(alphabet, size=k)))
    return out


def values(spec: TypeSpec, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Random values of ``spec`` shaped ``shape`` (plus an array type's own shape)."""
    n = int(np.prod(shape))
    return _values_of(spec.dtype, rng, n, spec.label).reshape(shape + spec.dtype.shape)


def _values_of(dtype: np.dtype, rng: np.random.Generator, n: int, label: str) -> np.ndarray:
    if dtype.subdtype is not None:
        base, sub = dtype.subdtype
        return _values_of(base, rng, n * int(np.prod(sub)), label)
    if dtype.names:
        out = np.zeros(n, dtype=dtype)
        for name in dtype.names:
            field = dtype.fields[name][0]
            out[name] = _values_of(field, rng, n, label).reshape((n, *field.shape))
        return out
    vlen = h5py.check_vlen_dtype(dtype)
    string = h5py.check_string_dtype(dtype)
    if string is not None and dtype.kind == "O":
        texts = _text(rng, n, string.encoding == "utf-8")
        out = np.empty(n, dtype=object)
        out[:] = [t.encode() for t in texts] if string.encoding == "ascii" else texts
        return out
    if vlen is not None:
        items = [_values_of(np.dtype(vlen), rng, int(rng.integers(0, 5)), label) for _ in range(n)]
        # a sentinel keeps NumPy from stacking sequences of one length into a 2-D array, or
        # from storing a one-element sequence as its element
        return np.array([*items, None], dtype=object)[:-1]
    if dtype.kind == "b":
        return rng.random(n) < 0.5
    if dtype.kind in "iu":
        return _ints(rng, dtype, n)
    if dtype.kind == "f":
        return _floats(rng, dtype, n)
    if dtype.kind == "c":
        real = np.dtype(f"{dtype.byteorder}f{dtype.itemsize // 2}")
        with np.errstate(invalid="ignore"):  # inf * 1j
            return (_floats(rng, real, n) + 1j * _floats(rng, real, n)).astype(dtype)
    if dtype.kind == "S":
        texts = _text(rng, n, label.endswith("utf8"), dtype.itemsize)
        return np.array([t.encode()[: dtype.itemsize] for t in texts], dtype=dtype)
    if dtype.kind == "V":
        return np.frombuffer(rng.bytes(n * dtype.itemsize), dtype=dtype).copy()
    raise TypeError(f"no values for {dtype}")


def _low(label: str, dtype: str, make: Callable[[], h5t.TypeID], **kw: bool) -> TypeSpec:
    return TypeSpec(label, np.dtype(dtype), make(), raw=True, **kw)


def _string(size: int, pad: int, cset: int) -> h5t.TypeID:
    tid = h5t.C_S1.copy()
    tid.set_size(size)
    tid.set_strpad(pad)
    tid.set_cset(cset)
    return tid


def _bitfield(base: h5t.TypeID) -> h5t.TypeID:
    return base.copy()


def _reduced(base: h5t.TypeID, precision: int, offset: int) -> h5t.TypeID:
    tid = base.copy()
    tid.set_precision(precision)
    tid.set_offset(offset)
    return tid


def _opaque(size: int, tag: bytes) -> h5t.TypeID:
    tid = h5t.create(h5t.OPAQUE, size)
    tid.set_tag(tag)
    return tid


def quad() -> h5t.TypeID:
    """IEEE binary128, which NumPy cannot hold (h5py refuses to read it)."""
    tid = h5t.IEEE_F64LE.copy()
    tid.set_size(16)
    tid.set_precision(128)
    tid.set_fields(127, 112, 15, 0, 112)
    tid.set_ebias(16383)
    return tid


def _array(base: h5t.TypeID, dims: tuple[int, ...]) -> h5t.TypeID:
    return h5t.array_create(base, dims)


def _compound(dtype: np.dtype) -> TypeSpec:
    return TypeSpec(f"compound:{dtype.descr}", dtype)


NUMBERS = [
    *(f"{e}{k}{w}" for k in "iu" for w in (1, 2, 4, 8) for e in "<>" if w > 1 or e == "<"),
    *(f"{e}f{w}" for w in (2, 4, 8) for e in "<>"),
    "<c8",
    ">c16",
    "<c16",
    "?",
]


def _complex_types() -> list[TypeSpec]:
    out = [TypeSpec(f"number:{n}", np.dtype(n)) for n in NUMBERS]
    out.append(TypeSpec("longdouble", np.dtype(np.longdouble)))
    out.append(TypeSpec("clongdouble", np.dtype(np.clongdouble)))
    return out


def _enum(base: str) -> TypeSpec:
    mapping = {
        "ZERO": 0,
        "ONE": 1,
        "SEVEN": 7,
        "MAX": min(int(np.iinfo(np.dtype(base)).max), 2**62),
    }
    return TypeSpec(f"enum:{base}", h5py.enum_dtype(mapping, basetype=np.dtype(base)))


def _compounds() -> list[TypeSpec]:
    padded = np.dtype(
        {"names": ["a", "b"], "formats": ["u1", "<f8"], "offsets": [0, 8], "itemsize": 16}
    )
    tail = np.dtype(
        {"names": ["x", "y"], "formats": ["<i4", "<i2"], "offsets": [0, 4], "itemsize": 8}
    )
    inner = np.dtype([("lo", "<i2"), ("hi", "<i2")])
    return [
        _compound(np.dtype([("x", "<i4"), ("y", "<f8"), ("tag", "S3")])),
        _compound(padded),
        _compound(tail),
        _compound(np.dtype([("a", ">i4"), ("b", ">f8")])),
        _compound(np.dtype([("a", "<i4"), ("b", ">f8")])),
        _compound(np.dtype([("pair", inner), ("v", "<f4")])),
        _compound(np.dtype([("v", "<f4", (3,)), ("n", "<u2")])),
        _compound(np.dtype([("re", "<f4"), ("im", "<f4")])),
        _compound(np.dtype([("r", "<f8"), ("i", "<f8")])),
        TypeSpec(
            "compound:vlen-str", np.dtype([("n", "<i4"), ("s", h5py.string_dtype())]), fixed=False
        ),
        _compound(
            np.dtype([("e", h5py.enum_dtype({"A": 0, "B": 1}, basetype="u1")), ("x", "<u4")])
        ),
    ]


def _low_level() -> list[TypeSpec]:
    nt, npd, sp = h5t.STR_NULLTERM, h5t.STR_NULLPAD, h5t.STR_SPACEPAD
    ascii_, utf8 = h5t.CSET_ASCII, h5t.CSET_UTF8
    return [
        _low("string:nullterm:1", "S1", lambda: _string(1, nt, ascii_)),
        _low("string:nullterm:6", "S6", lambda: _string(6, nt, ascii_)),
        _low("string:nullpad:5", "S5", lambda: _string(5, npd, ascii_)),
        _low("string:spacepad:4", "S4", lambda: _string(4, sp, ascii_)),
        _low("string:nullpad:7:utf8", "S7", lambda: _string(7, npd, utf8)),
        _low("string:nullterm:5:utf8", "S5", lambda: _string(5, nt, utf8)),
        _low("bitfield:B8", "u1", lambda: _bitfield(h5t.STD_B8LE)),
        _low("bitfield:B16BE", ">u2", lambda: _bitfield(h5t.STD_B16BE)),
        _low("bitfield:B32LE", "<u4", lambda: _bitfield(h5t.STD_B32LE)),
        _low("bitfield:B64LE", "<u8", lambda: _bitfield(h5t.STD_B64LE)),
        _low("opaque:tag", "V5", lambda: _opaque(5, b"some tag")),
        _low("reduced:i16p12", "<i2", lambda: _reduced(h5t.STD_I16LE, 12, 2)),
        _low("reduced:u32p20", "<u4", lambda: _reduced(h5t.STD_U32LE, 20, 0)),
        _low("quad", "V16", quad),
        _low("array:f4x3", "<f4", lambda: _array(h5t.IEEE_F32LE, (3,))),
        _low("array:i2x2x2BE", ">i2", lambda: _array(h5t.STD_I16BE, (2, 2))),
    ]


def _others() -> list[TypeSpec]:
    return [
        *(_enum(b) for b in ("i1", "u1", "<i2", ">u2", "<i4", "<u8")),
        TypeSpec("opaque:V3", np.dtype("V3")),
        TypeSpec("fixed:S4", np.dtype("S4")),
        TypeSpec("vlen-str:utf8", h5py.string_dtype("utf-8"), fixed=False),
        TypeSpec("vlen-str:ascii", h5py.string_dtype("ascii"), fixed=False),
        TypeSpec("fixed-str:utf8", h5py.string_dtype("utf-8", 6)),
        TypeSpec("vlen:i4", h5py.vlen_dtype(np.dtype("<i4")), fixed=False),
        TypeSpec("vlen:f8", h5py.vlen_dtype(np.dtype("<f8")), fixed=False),
        TypeSpec("array-dtype:f8x2", np.dtype(("<f8", (2,)))),
        TypeSpec("ref:object", h5py.ref_dtype, fixed=False),
        TypeSpec("ref:region", h5py.regionref_dtype, fixed=False),
    ]


def all_types() -> list[TypeSpec]:
    """Every type the fuzzer draws from."""
    return [*_complex_types(), *_compounds(), *_low_level(), *_others()]


TYPES = all_types()
COMMON = [t for t in TYPES if t.label.startswith("number:")]
"""Plain numbers: drawn more often than the rest, as real files hold them."""


def draw(rng: np.random.Generator) -> TypeSpec:
    """A random type: a plain number half of the time."""
    pool = COMMON if rng.random() < 0.5 else TYPES
    return pool[int(rng.integers(len(pool)))]
