"""Local sources that change, vanish or break: errors that name the file, never fill values."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
import zarr
from read_fixtures import count_calls, local_store, manifest_for, store_over, write_source
from zarr.core.buffer import default_buffer_prototype

import zarr_manifest_store as zms
from zarr_manifest_store.io import local as local_module
from zarr_manifest_store.io.fingerprints import FingerprintRegistry
from zarr_manifest_store.io.sources import Sources
from zarr_manifest_store.manifest import Fingerprint

PROTO = default_buffer_prototype()


def read_all(store: zms.ManifestStore) -> np.ndarray:
    return zarr.open_group(store, mode="r")["v"][:]


def bump_mtime(path, seconds: int = 10) -> None:
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + seconds * 10**9))


def test_deleted_truncated_and_unreadable_sources_raise(tmp_path):
    store, _, path = local_store(tmp_path, record=False)
    path.unlink()
    with pytest.raises(FileNotFoundError, match=r"src\.h5.*chunk 'v/c/0/0'"):
        read_all(store)

    store, _, path = local_store(tmp_path, name="short.h5", record=False)
    os.truncate(path, path.stat().st_size - 500)  # the last chunk loses its tail
    with pytest.raises(OSError, match=r"short\.h5' is too short.*chunk 'v/c/"):
        read_all(store)
    with pytest.raises(OSError, match="too short"):
        store.get_sync("v/c/23/0")

    store, _, path = local_store(tmp_path, name="dir.h5", record=False)
    path.unlink()
    path.mkdir()  # something unreadable where the file was
    with pytest.raises(IsADirectoryError, match=r"dir\.h5.*is a directory.*chunk 'v/c/"):
        read_all(store)


def test_changed_source_is_refused_on_first_use(tmp_path):
    store, data, path = local_store(tmp_path)  # size and mtime recorded
    bump_mtime(path)
    with pytest.raises(zms.SourceChangedError, match=r"src\.h5' changed since it was scanned") as e:
        read_all(store)
    assert isinstance(e.value, OSError)
    assert "modified" in str(e.value)
    assert "chunk 'v/c/" in str(e.value)
    # verify="never" reads it all the same: the user vouches for the change
    np.testing.assert_array_equal(
        read_all(store_over(store.root["v"].manifest, verify="never")), data
    )

    write_source(path, seed=7)  # same layout, other values: decodes fine, but wrong
    with pytest.raises(zms.SourceChangedError, match="changed since it was scanned"):
        read_all(store_over(store.root["v"].manifest))


def test_first_use_checks_once_and_always_checks_every_read(tmp_path, monkeypatch):
    calls = count_calls(monkeypatch, FingerprintRegistry, "check")

    def checks(path) -> int:  # of this test's source: other tests' stragglers may still run
        return sum(1 for _, checked, _ in calls if checked == str(path))

    store, data, path = local_store(tmp_path, name="once.h5")
    for _ in range(3):
        np.testing.assert_array_equal(read_all(store), data)
    assert checks(path) == 1  # checked when opened, on the very descriptor then read

    calls.clear()
    never = store_over(store.root["v"].manifest, verify="never")
    read_all(never)
    assert checks(path) == 0

    store, data, path = local_store(tmp_path, name="always.h5", verify="always")
    np.testing.assert_array_equal(read_all(store), data)
    assert checks(path) == 1 + 24  # on opening, then before each chunk read
    bump_mtime(path)  # changed after the store started reading it
    with pytest.raises(zms.SourceChangedError, match=r"always\.h5"):
        read_all(store)
    with pytest.raises(zms.SourceChangedError):
        store.get_sync("v/c/0/0")


def test_replaced_file_is_caught_when_its_descriptor_is_reopened(tmp_path, monkeypatch):
    monkeypatch.setattr(local_module, "MAX_OPEN_FILES", 1)  # every switch of file reopens
    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    data = write_source(a)
    write_source(b)  # the same layout and values
    m = manifest_for(a)
    fps = {str(p): Sources().fingerprint(str(p)) for p in (a, b)}
    alternating = zms.ChunkManifest(
        paths=[str(a), str(b)],
        path_index=(np.arange(24, dtype=np.uint32) % 2).reshape(24, 1),
        offsets=m.offsets,
        lengths=m.lengths,
        fingerprints=fps,
    )
    # One reader thread: with several, a descriptor busy in one can outlive the swap of
    # files (still reading the replaced file's own bytes, which is right but not this test).
    with zarr.config.set({"codec_pipeline.max_workers": 1}):
        store = store_over(alternating)
        np.testing.assert_array_equal(read_all(store), data)
        replacement = tmp_path / "new.h5"
        write_source(replacement, seed=3)
        bump_mtime(replacement)  # written later than a.h5 (not within one tick of the file clock)
        os.replace(replacement, a)
        with pytest.raises(zms.SourceChangedError, match=r"a\.h5"):
            read_all(store)


def test_unrecorded_source_changing_mid_session_is_caught(tmp_path):
    store, data, path = local_store(tmp_path, record=False, verify="always")
    np.testing.assert_array_equal(read_all(store), data)  # what it looked like is remembered
    with open(path, "r+b") as f:
        f.seek(-1, os.SEEK_END)
        f.write(b"\0")
    bump_mtime(path)
    with pytest.raises(zms.SourceChangedError, match="changed while it was being read"):
        read_all(store)


def test_verify_reports_every_source(tmp_path):
    paths = {name: tmp_path / f"{name}.h5" for name in ("ok", "changed", "short", "gone", "bare")}
    for p in paths.values():
        write_source(p)
    fps = {name: Sources().fingerprint(str(p)) for name, p in paths.items()}
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.copy(paths["ok"], outside / "ok.h5")
    forbidden_path = outside / "ok.h5"

    arrays = {}
    for name, p in paths.items():
        arrays[name] = manifest_for(p, fingerprint=None if name == "bare" else fps[name])
    arrays["forbidden"] = manifest_for(forbidden_path)
    meta = store_over(arrays["ok"]).root["v"].metadata
    group = zms.ManifestGroup(
        arrays={n: zms.ManifestArray(metadata=meta, manifest=m) for n, m in arrays.items()}
    )
    store = zms.ManifestStore(group, allow=[str(tmp_path / "ok.h5"), *map(str, paths.values())])

    bump_mtime(paths["changed"])
    os.truncate(paths["short"], fps["short"].size - 100)
    os.truncate(paths["bare"], paths["bare"].stat().st_size - 100)  # no fingerprint: size vs chunks
    paths["gone"].unlink()

    report = store.verify()
    by_path = {s.path: s for s in report.sources}
    assert {p: s.status for p, s in by_path.items()} == {
        str(paths["ok"]): "ok",
        str(paths["changed"]): "changed",
        str(paths["short"]): "changed",  # its recorded size differs
        str(paths["gone"]): "missing",
        str(paths["bare"]): "truncated",  # no fingerprint: shorter than its chunks
        str(forbidden_path): "forbidden",
    }
    assert "size" in by_path[str(paths["short"])].detail
    assert by_path[str(paths["changed"])].recorded == fps["changed"]
    assert by_path[str(paths["changed"])].current.mtime_ns == fps["changed"].mtime_ns + 10**10
    assert not report.ok
    assert {s.status for s in report.problems} == {
        "changed",
        "missing",
        "truncated",
        "forbidden",
    }
    text = str(report)
    assert "6 source(s) checked, 5 problem(s)" in text
    assert "gone.h5" in text

    clean = zms.ManifestStore(zms.ManifestGroup(arrays={"ok": group.arrays["ok"]}))
    assert clean.verify().ok


def test_conflicting_recorded_fingerprints_refuse(tmp_path):
    store, _, path = local_store(tmp_path)
    real = store.root["v"].manifest
    stale = manifest_for(path, fingerprint=Fingerprint(size=real.fingerprints[str(path)].size + 1))
    meta = store.root["v"].metadata
    group = zms.ManifestGroup(
        arrays={
            "v": zms.ManifestArray(metadata=meta, manifest=real),
            "w": zms.ManifestArray(metadata=meta, manifest=stale),
        }
    )
    # fingerprints are learnt array by array, when an array is first read (opening loads no
    # manifest): "v" matches its file; "w", recorded from another state of it, refuses
    opened = zarr.open_group(zms.ManifestStore(group), mode="r")
    np.testing.assert_array_equal(opened["v"][:], opened["v"][:])
    with pytest.raises(
        zms.SourceChangedError, match=r"two different fingerprints \(size \d+ -> \d+ bytes\)"
    ):
        opened["w"][:]
