"""Files of many nodes: what a store and the ``zarr_manifest`` engine do per node, once."""

from __future__ import annotations

import importlib
import json
import re
import sys
import warnings
from collections import Counter

import h5py
import numpy as np
import pytest
import xarray as xr
import zarr
from scipy.io import netcdf_file

import zarr_manifest_store as zms
from zarr_manifest_store import served_metadata
from zarr_manifest_store._zarr import ArrayV3Metadata
from zarr_manifest_store.store import ManifestStore

QUOTED = re.compile(r"'([^']*)'|\"([^\"]*)\"")


def many_nodes(path, groups: int = 3, arrays: int = 4) -> str:
    """An HDF5 file of nested groups, each with a few small datasets (two codec chains)."""
    with h5py.File(path, "w") as f:
        for g in range(groups):
            group = (
                f.create_group(f"g{g}").create_group("inner") if g == 1 else f.create_group(f"g{g}")
            )
            for a in range(arrays):
                data = np.arange(6, dtype="f8" if a % 2 else "i4") + g * 10 + a
                group.create_dataset(
                    f"v{a}", data=data, chunks=(3,), compression="gzip" if a > 1 else None
                )
        f.create_dataset("top", data=np.arange(5, dtype="u2"))
    return str(path)


class CountingStore(ManifestStore):
    """A ManifestStore counting the ``zarr.json`` documents asked for."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.documents: Counter[str] = Counter()

    async def get(self, key, prototype=None, byte_range=None):
        if key.endswith("zarr.json"):
            self.documents[key] += 1
        return await super().get(key, prototype, byte_range)


def test_the_engine_opens_a_tree_without_reading_array_documents(tmp_path, monkeypatch):
    """Each array's zarr node is built from the tree (it read each array's document once,
    and zarr parsed it: a quarter of a millisecond an array)."""
    monkeypatch.setattr(served_metadata, "MAX_CONSOLIDATED_MEMBERS", 2)  # as a large file's
    store = CountingStore(zms.scan(many_nodes(tmp_path / "many.h5")))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tree = xr.open_datatree(store, engine="zarr_manifest")
        read = {k: n for k, n in store.documents.items() if k.count("/") and "/v" in k}
        expected = xr.open_datatree(ManifestStore(store.root), engine="zarr")
        groups = xr.open_groups(store, engine="zarr_manifest", group="g1")
    assert read == {}
    assert tree.identical(expected)
    assert all(tree[p].encoding == expected[p].encoding for p in ("g0/v2", "g1/inner/v1", "top"))
    assert list(groups) == [".", "inner"]
    assert groups["inner"].identical(expected["g1/inner"].to_dataset())


def test_arrays_of_one_codec_chain_share_a_pipeline(tmp_path):
    path = tmp_path / "fills.h5"
    with h5py.File(path, "w") as f:
        for name, fill in (("a", 0.0), ("b", 0.0), ("c", -0.0)):
            f.create_dataset(name, shape=(4,), chunks=(2,), dtype="f8", fillvalue=fill)
        f["a"][:2] = [1.0, 2.0]
    root = zarr.open_group(ManifestStore(zms.scan(str(path))), mode="r")
    a, b, c = (root[n] for n in "abc")
    assert a.async_array.codec_pipeline is b.async_array.codec_pipeline
    assert c.async_array.codec_pipeline is not a.async_array.codec_pipeline
    assert np.array_equal(a[:], [1.0, 2.0, 0.0, 0.0])
    assert np.signbit(c[:]).all()
    assert not np.signbit(b[:]).any()


def test_a_group_is_listed_from_the_tree(tmp_path, monkeypatch):
    store = ManifestStore(zms.scan(many_nodes(tmp_path / "many.h5")))

    async def listed(prefix):
        return [k async for k in store.list_dir(prefix)]

    expected = {p: zarr.core.sync.sync(listed(p)) for p in ("", "g1", "g1/inner", "g0/v2")}
    assert sorted(expected[""]) == ["g0", "g1", "g2", "top", "zarr.json"]
    assert sorted(expected["g1/inner"]) == ["v0", "v1", "v2", "v3", "zarr.json"]
    assert sorted(expected["g0/v2"]) == ["c", "zarr.json"]

    def every_key(prefix=""):
        raise AssertionError(f"a group's listing walked every key (prefix {prefix!r})")

    monkeypatch.setattr(store, "_keys", every_key)
    for prefix in ("", "g1", "g1/inner", "g1/"):
        assert zarr.core.sync.sync(listed(prefix)) == expected[prefix.rstrip("/")]
    with pytest.raises(AssertionError, match="walked every key"):
        zarr.core.sync.sync(listed("g0/v2"))


def test_an_array_document_is_encoded_once(tmp_path):
    store = ManifestStore(zms.scan(many_nodes(tmp_path / "many.h5")))
    documents = store._documents
    assert documents.document("g0/v1/zarr.json") is documents.document("g0/v1/zarr.json")
    assert zarr.open_array(store, path="g0/v1", mode="r")[:].tolist() == [1.0 + i for i in range(6)]


def test_the_checker_reads_each_warning_once_for_a_file_of_many_refusals(monkeypatch):
    """Thousands of refused datasets, each named by its own warning: the names are found
    once per file (they were searched once per dataset, in every message: quadratic)."""
    datasets = importlib.import_module("benchmarks.real_files.datasets")
    searched = Counter()

    class Counting:
        def findall(self, text):
            searched["messages"] += 1
            return QUOTED.findall(text)

    monkeypatch.setattr(datasets, "QUOTED", Counting())
    root = zarr.open_group(zarr.storage.MemoryStore(), mode="w")
    warned = [f"<file>: left out dataset 'g/d{i}': no Zarr type" for i in range(300)]
    classes = [datasets.classify(f"g/d{i}", np.zeros(1), root, warned) for i in range(300)]
    assert [c["class"] for c in classes] == ["refused"] * 300
    assert classes[7]["reason"] == "<file>: left out dataset 'g/d7': no Zarr type"
    assert datasets.classify("g/other", np.zeros(1), root, warned)["class"] == "missing"
    assert searched["messages"] <= 2 * len(warned)


def test_the_engine_reads_the_document_of_an_array_the_tree_cannot_give_exactly(tmp_path):
    """A NaN attribute (JSON gives back a NaN that equals nothing) and a float32 attribute
    (a typed record, left out of the document): the first array's document is read and
    parsed by zarr, the second built from the tree; both views are the zarr engine's."""
    path = tmp_path / "odd.nc"
    with h5py.File(path, "w") as f:
        f.create_dataset("odd", data=np.arange(4.0)).attrs["valid_max"] = np.nan
        f.create_dataset("typed", data=np.arange(3, dtype="i2")).attrs["scale_factor"] = np.float32(
            0.5
        )
        f.create_dataset("plain", data=np.arange(2, dtype="u1")).attrs["units"] = "m"
    store = CountingStore(zms.scan(str(path)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = xr.open_dataset(store, engine="zarr_manifest")
        theirs = xr.open_dataset(path, engine="h5netcdf")
    assert set(store.documents) == {"zarr.json", "odd/zarr.json"}
    assert ours.identical(theirs)
    assert ours.typed.encoding["scale_factor"].dtype == np.float32


def test_the_engine_arrays_have_attributes_of_their_own(tmp_path):
    """zarr updates an array's attributes in place before it tries to write them: the
    engine's zarr arrays must not share the tree's dict."""
    store = ManifestStore(zms.scan(many_nodes(tmp_path / "many.h5")))
    metadata = store.parsed_metadata("g0/v1")
    metadata.attributes["added"] = 1
    assert "added" not in store.root["g0/v1"].attributes
    assert "added" not in store.parsed_metadata("g0/v1").attributes
    assert metadata.shape == (6,)
    assert metadata.dimension_names == store.root["g0/v1"].metadata.dimension_names


def test_user_paths_prints_zarrs_floor_beside_ours(tmp_path, monkeypatch, capsys):
    """``--floor`` times the same path on MemoryStore copies of what the store serves."""
    user_paths = importlib.import_module("benchmarks.real_files.user_paths")
    file = many_nodes(tmp_path / "many.h5")
    monkeypatch.setattr(sys, "argv", ["user_paths", file, "--floor", "--paths", "open_group"])
    user_paths.main()
    header, line = capsys.readouterr().out.splitlines()[1:3]
    assert header.split()[1::3] == ["now", "floor", "consolidated", "ratios"]
    assert re.search(r"\dx floor +\d+\.\d+x consolidated \(cpu\)$", line), line


def test_parsed_metadata_is_what_zarr_parses_from_the_document_served(tmp_path):
    """Wherever the store gives an array's metadata without its document, zarr's parse of
    the document gives the same, record variables served in chunks of many records (their
    chunk grid and byte order) too; NaN attributes are left to the document."""
    records = tmp_path / "records.nc"
    with netcdf_file(records, "w", version=2) as f:
        f.createDimension("time", None)
        f.createVariable("time", "f8", ("time",))[:] = np.arange(100.0)
        f.variables["time"].units = "seconds since 2026-01-01"
        f.createVariable("label", "c", ("time",))[:] = np.array([b"a"] * 100)
        f.createVariable("z", "i2", ("time",))[:] = np.arange(100, dtype="i2")
        f.variables["z"].scale_factor = np.float32(0.5)
        f.createVariable("t2", "f4", ())[...] = np.float32(1.5)
        f.variables["t2"].valid_max = np.nan  # not a record variable
    odd = tmp_path / "odd.h5"
    with h5py.File(odd, "w") as f:
        f.create_dataset("v", data=np.arange(3.0)).attrs["flags"] = np.array([1, 2], "i2")
    parsed, left = [], []
    for file in (many_nodes(tmp_path / "many.h5"), str(records), str(odd)):
        store = ManifestStore(zms.scan(file))
        for path, node in store.root.walk():
            if isinstance(node, zms.ManifestArray):
                ours = store.parsed_metadata(path)
                document = json.loads(store.get_sync(f"{path}/zarr.json").to_bytes())
                if ours is None:
                    left.append(path)
                else:
                    parsed.append(path)
                    assert ours.to_dict() == ArrayV3Metadata.from_dict(document).to_dict(), path
    assert left == ["t2"]
    assert len(parsed) == 17
