"""scan_hdf5 reads links and attributes with h5py's low-level API: the same names, order and
values as h5py's ``Group`` iteration and ``obj.attrs[name]``, for every kind of attribute."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from hdf5_corpus import CASES

import zarr_manifest_store as zms
from zarr_manifest_store.cf import TYPED_ATTRIBUTES
from zarr_manifest_store.scan.hdf5.attributes import Attributes
from zarr_manifest_store.scan.hdf5.objects import links, member


def _odd_attributes(obj: h5py.HLObject, ref: h5py.Reference) -> None:
    """Every attribute type and shape h5py reads, including those left to h5py itself."""
    a = obj.attrs
    a["int"] = np.int16(-3)
    a["ints"] = np.arange(4, dtype=">i4")
    a["matrix"] = np.arange(6.0).reshape(2, 3)
    a["nan"] = np.float32(np.nan)
    a["half"] = np.float16(1.5)
    a["long"] = np.uint64(2**63 + 1)
    a["fixed"] = np.bytes_(b"fixed\x00")
    a.create("fixed_utf8", data="grüße".encode(), dtype=h5py.string_dtype("utf-8", 6))
    a["vlen"] = "text"
    a["vlen_unicode"] = "température"
    a.create("vlen_ascii", data=b"bytes", dtype=h5py.string_dtype("ascii"))
    a["vlen_array"] = ["a", "bc", "déf"]
    a.create("vlen_bad", data=b"\xff\xfe", dtype=h5py.string_dtype("utf-8"))
    a["empty"] = h5py.Empty("f4")
    a["empty_text"] = h5py.Empty(h5py.string_dtype())
    a["blank"] = ""
    a["bool"] = True
    a["compound"] = np.array((1, 2.5), dtype=[("a", "i4"), ("b", "f8")])
    a["enum"] = np.array(1, dtype=h5py.enum_dtype({"no": 0, "yes": 1}, basetype="u1"))
    a["reference"] = ref
    a.create("array_type", data=np.arange(6).reshape(2, 3), dtype=np.dtype(("i4", (3,))))
    if "named_type" not in obj.file:
        obj.file["named_type"] = np.dtype(">f8")  # a committed data type
    a.create("committed_type", data=2.5, dtype=obj.file["named_type"])


def _same(a: object, b: object) -> bool:
    if isinstance(a, h5py.Empty) or isinstance(b, h5py.Empty):
        return type(a) is type(b) and a.dtype == b.dtype
    if isinstance(a, np.ndarray) and a.dtype.hasobject:  # strings, references in compounds
        return (
            a.dtype == b.dtype
            and a.shape == b.shape
            and [str(x) for x in a.flat] == [str(x) for x in b.flat]
        )
    if type(a) is not type(b) or np.asarray(a).dtype != np.asarray(b).dtype:
        return False
    if isinstance(a, h5py.Reference):
        return True
    return bool(np.array_equal(a, b, equal_nan=np.asarray(a).dtype.kind in "fc"))


def _check(group: h5py.Group) -> int:
    """Compare every link and attribute under ``group`` with h5py's view; the objects compared."""
    assert [name for name, *_ in links(group, group.id.get_create_plist())] == list(group)
    for name, link_type, _ in links(group, group.id.get_create_plist()):
        assert (
            type(group.get(name, getlink=True))
            is {
                h5py.h5l.TYPE_HARD: h5py.HardLink,
                h5py.h5l.TYPE_SOFT: h5py.SoftLink,
                h5py.h5l.TYPE_EXTERNAL: h5py.ExternalLink,
            }[link_type]
        )
    checked = 0
    for obj in [group, *(member(group, name) for name in group)]:
        if obj is None or not isinstance(obj, h5py.Group | h5py.Dataset):
            continue
        attributes = Attributes(obj)
        assert list(attributes) == list(obj.attrs), obj.name
        for name in obj.attrs:
            mine, theirs = attributes[name], obj.attrs[name]
            assert _same(mine, theirs), (obj.name, name, mine, theirs)
        checked += 1
        if isinstance(obj, h5py.Group) and obj.name != group.name:
            checked += _check(obj)
    return checked


@pytest.mark.parametrize("track_order", [False, True])
def test_links_and_attributes_read_as_h5py_reads_them(tmp_path: Path, track_order: bool) -> None:
    path = tmp_path / "odd.h5"
    with h5py.File(path, "w", track_order=track_order) as f:
        ds = f.create_dataset("zeta", data=np.arange(3), track_order=track_order)
        sub = f.create_group("Alpha", track_order=not track_order)
        sub.create_dataset("b", data=[1.0])
        sub.create_dataset("a", data=[2.0])
        sub["soft"] = h5py.SoftLink("/zeta")
        sub["dangling"] = h5py.SoftLink("/nowhere")
        sub["elsewhere"] = h5py.ExternalLink("other.h5", "/x")
        for obj in (f, ds, sub):
            _odd_attributes(obj, ds.ref)
    with h5py.File(path, "r") as f:
        root = f["/"]  # what scan_hdf5 walks: the same links and attributes as the File
        assert list(root) == list(f)
        assert list(root.attrs) == list(f.attrs)
        assert _check(root) == 7  # /, zeta, Alpha (twice: as a member and as a group), a, b, soft
        sub = root["Alpha"]
        assert member(sub, "dangling") is None
        assert member(sub, "soft").name == sub.get("soft").name
        assert member(sub, "soft")[()].tolist() == [0, 1, 2]
        assert isinstance(member(root, "Alpha"), h5py.Group)


def test_every_corpus_attribute_reads_as_h5py_reads_it(tmp_path: Path) -> None:
    for case in CASES:
        path = tmp_path / f"{case.name}.h5"
        case.build(path)
        with h5py.File(path, "r") as f:
            assert _check(f["/"]) >= 1


def test_attributes_without_a_json_form_are_left_out_naming_file_and_object(tmp_path: Path):
    """Compounds and object references have JSON forms (issue #18); region references do not."""
    path = tmp_path / "odd.h5"
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("x", data=np.arange(3.0))
        ds.attrs["pair"] = np.array((1, 2.5), dtype=[("a", "i4"), ("b", "f8")])
        ds.attrs["units"] = "m"
        ds.attrs["region"] = ds.regionref[1:2]
        f.attrs["ref"] = ds.ref
    with pytest.warns(UserWarning, match="has no JSON form") as caught:
        g = zms.scan_hdf5(path)
    assert [str(w.message) for w in caught] == [
        f"{path}:/x: attribute 'region' has no JSON form; left out"
    ]
    assert g.attributes == {"ref": "/x"}
    attrs = dict(g["x"].attributes)
    assert attrs.pop(TYPED_ATTRIBUTES)["pair"]["dtype"] == [["a", "<i4"], ["b", "<f8"]]
    assert attrs == {"pair": {"a": 1, "b": 2.5}, "units": "m"}


def test_type_memos_follow_h5pys_naming_options(tmp_path: Path):
    """What a type reads as is remembered per type, and per h5py's names for complex fields."""
    path = tmp_path / "pairs.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("z", data=np.zeros(3, dtype=[("re", "<f8"), ("im", "<f8")]))
    assert zms.scan_hdf5(path)["z"].dtype.names == ("re", "im")  # a compound
    config = h5py.get_config()
    names = config.complex_names
    config.complex_names = ("re", "im")  # h5py now reads such compounds as complex numbers
    try:
        assert zms.scan_hdf5(path)["z"].dtype == np.dtype("complex128")
    finally:
        config.complex_names = names
