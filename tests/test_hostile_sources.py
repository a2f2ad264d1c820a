"""Hostile local sources: symlinks swapped after a check, files that are not regular files,
files rewritten in place, files cut short. Each is refused, promptly, naming the source."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xarray as xr
import zarr
from read_fixtures import local_store, manifest_for, store_over, write_source

import zarr_manifest_store as zms
from zarr_manifest_store.io import local as local_module
from zarr_manifest_store.io.sources import Sources
from zarr_manifest_store.manifest import Fingerprint

VERIFY_MODES = ("first-use", "always", "never")
SECRET = b"SECRET-BYTES-OUTSIDE-THE-ALLOW-LIST"


def promptly(call: Callable[[], Any], seconds: float = 20.0) -> Any:
    """``call()``'s result or exception, which must come within ``seconds`` (not hang)."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(("ok", call()))
        except BaseException as e:
            outcome.append(("error", e))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert outcome, f"still running after {seconds} s: it hangs"
    kind, value = outcome[0]
    if kind == "error":
        raise value
    return value


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """``data/`` (allowed) with a.bin and b.bin, ``secret/`` (not allowed) beside it."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.bin").write_bytes(b"A" * len(SECRET))
    (tmp_path / "data" / "b.bin").write_bytes(b"B" * len(SECRET))
    (tmp_path / "secret").mkdir()
    (tmp_path / "secret" / "key.bin").write_bytes(SECRET)
    return tmp_path


def reads(sources: Sources, path: Path) -> list[Any]:
    """What a blocking and an asynchronous read of ``path`` return (bytes or the error)."""
    out: list[Any] = []
    for read in (
        lambda: bytes(sources.read_sync(str(path), 0, len(SECRET))),
        lambda: bytes(asyncio.run(sources.read(str(path), 0, len(SECRET)))),
    ):
        try:
            out.append(read())
        except OSError as e:
            out.append(e)
    return out


def assert_refused(outcomes: list[Any], path: Path) -> None:
    for got in outcomes:
        assert isinstance(got, PermissionError), got
        assert str(path) in str(got)


# ---------------------------------------------------------------- symlinks swapped after a check


@pytest.mark.parametrize("verify", VERIFY_MODES)
def test_a_symlink_planted_after_a_failed_read_is_refused(tree, verify):
    sources = Sources(allow=[str(tree / "data")], verify=verify)
    planted = tree / "data" / "later.bin"
    with pytest.raises(FileNotFoundError, match=r"later\.bin"):
        sources.read_sync(str(planted), 0, 1)  # allowed by name, but not there yet
    os.symlink(tree / "secret" / "key.bin", planted)
    assert_refused(reads(sources, planted), planted)
    report = sources.verify({str(planted): 1})
    assert report.sources[0].status != "ok"
    assert "allowed" in report.sources[0].detail


@pytest.mark.parametrize("verify", VERIFY_MODES)
def test_a_symlink_swapped_in_after_the_descriptor_was_evicted_is_refused(
    tree, monkeypatch, verify
):
    monkeypatch.setattr(local_module, "MAX_OPEN_FILES", 1)
    sources = Sources(allow=[str(tree / "data")], verify=verify)
    a, b = tree / "data" / "a.bin", tree / "data" / "b.bin"
    assert sources.read_sync(str(a), 0, 1) == b"A"
    assert sources.read_sync(str(b), 0, 1) == b"B"  # a's descriptor is closed
    a.unlink()
    os.symlink(tree / "secret" / "key.bin", a)
    assert_refused(reads(sources, a), a)


@pytest.mark.parametrize("verify", VERIFY_MODES)
def test_a_folder_swapped_for_a_symlink_is_refused(tree, monkeypatch, verify):
    monkeypatch.setattr(local_module, "MAX_OPEN_FILES", 1)
    sub = tree / "data" / "sub"
    sub.mkdir()
    (sub / "key.bin").write_bytes(b"S" * len(SECRET))
    sources = Sources(allow=[str(tree / "data")], verify=verify)
    assert sources.read_sync(str(sub / "key.bin"), 0, 1) == b"S"
    assert sources.read_sync(str(tree / "data" / "b.bin"), 0, 1) == b"B"  # evicts sub/key.bin
    shutil.rmtree(sub)
    os.symlink(tree / "secret", sub)  # a folder component now leads outside
    assert_refused(reads(sources, sub / "key.bin"), sub / "key.bin")


@pytest.mark.parametrize("verify", VERIFY_MODES)
def test_a_swap_between_the_check_and_the_open_is_caught_on_the_descriptor(
    tree, monkeypatch, verify
):
    """The name is checked, then swapped for a symlink just before ``open`` follows it: what
    was opened is compared with what the name leads to inside the allowed folder."""
    target = tree / "data" / "a.bin"
    original = local_module._open_readonly

    def swap_then_open(lpath: str) -> int:
        if lpath == str(target) and not target.is_symlink():
            target.unlink()
            os.symlink(tree / "secret" / "key.bin", target)
        return original(lpath)

    monkeypatch.setattr(local_module, "_open_readonly", swap_then_open)
    sources = Sources(allow=[str(tree / "data")], verify=verify)
    with pytest.raises(PermissionError, match=r"a\.bin"):
        sources.read_sync(str(target), 0, len(SECRET))


def test_a_store_never_serves_bytes_through_a_swapped_symlink(tmp_path, monkeypatch):
    monkeypatch.setattr(local_module, "MAX_OPEN_FILES", 1)
    data = tmp_path / "data"
    data.mkdir()
    values = write_source(data / "a.h5")
    write_source(tmp_path / "outside.h5", seed=7)
    other = data / "b.bin"
    other.write_bytes(b"0123")
    store = store_over(manifest_for(data / "a.h5"), allow=[str(data)], verify="never")
    np.testing.assert_array_equal(zarr.open_group(store, mode="r")["v"][:], values)
    store.sources.read_sync(str(other), 0, 1)  # evicts a.h5's descriptor
    (data / "a.h5").unlink()
    os.symlink(tmp_path / "outside.h5", data / "a.h5")
    with pytest.raises(PermissionError, match=r"a\.h5"):
        zarr.open_group(store, mode="r")["v"][:]


# ---------------------------------------------------------------- files that are not regular


@pytest.fixture(params=["fifo", "socket", "char-device", "directory"])
def irregular(request, tmp_path) -> tuple[Path, str]:
    """A path that is not a regular file, and how the error names what it is."""
    path = tmp_path / "data.h5"
    if request.param == "fifo":
        os.mkfifo(path)
        yield path, "FIFO"
        release_fifo(path)
    elif request.param == "socket":
        server = socket.socket(socket.AF_UNIX)
        server.bind(str(path))
        yield path, "socket"
        server.close()
    elif request.param == "char-device":
        os.symlink("/dev/zero", path)
        yield path, "character device"
    else:
        path.mkdir()
        yield path, "directory"


def test_reading_a_source_that_is_not_a_regular_file_is_refused_at_once(irregular):
    path, kind = irregular
    for verify in VERIFY_MODES:
        check_irregular(Sources(allow=[str(path.parent), "/dev"], verify=verify), path, kind)


def check_irregular(sources: Sources, path: Path, kind: str) -> None:
    """Every way of reading ``path`` fails at once, naming it and what it is."""
    for outcome in promptly(lambda: reads(sources, path)):
        assert isinstance(outcome, OSError), outcome
        assert str(path) in str(outcome)
        assert kind in str(outcome)
    with pytest.raises(OSError, match=kind):
        promptly(lambda: sources.fingerprint(str(path)))
    (status,) = promptly(lambda: sources.verify({str(path): 10})).sources
    assert status.status == "unreadable"
    assert kind in status.detail


def a_document_whose_source_becomes(tmp_path: Path, make: Callable[[Path], None]) -> Path:
    """A document over ``src/a.h5``, which ``make`` then replaces."""
    (tmp_path / "src").mkdir()
    source = tmp_path / "src" / "a.h5"
    write_source(source)
    doc = tmp_path / "doc.zarr"
    zms.write_manifest(zms.scan(str(source)), doc)
    source.unlink()
    make(source)
    return doc


def release_fifo(path: Path) -> None:
    """Open the FIFO for writing and close it: a reader blocked on it (a failure) returns."""
    if path.exists():
        os.close(os.open(path, os.O_RDWR | os.O_NONBLOCK))


def test_a_fifo_as_source_never_hangs_a_store_xarray_or_the_command_line(tmp_path, request):
    doc = a_document_whose_source_becomes(tmp_path, os.mkfifo)
    request.addfinalizer(lambda: release_fifo(tmp_path / "src" / "a.h5"))
    allow = [str(tmp_path / "src")]
    store = zms.ManifestStore.open(doc, allow=allow)
    with pytest.raises(OSError, match="FIFO"):
        promptly(lambda: zarr.open_group(store, mode="r")["v"][:])
    report = promptly(store.verify)
    assert not report.ok
    assert "FIFO" in report.sources[0].detail
    with pytest.raises(OSError, match="FIFO"):
        promptly(lambda: xr.open_dataset(doc, engine="zarr_manifest", allow=allow).load())
    cli = [sys.executable, "-m", "zarr_manifest_store.cli", "verify", str(doc), "--allow", allow[0]]
    done = subprocess.run(cli, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "FIFO" in done.stdout + done.stderr


# ---------------------------------------------------------------- rewritten in place, cut short


def rewrite_in_place(path: Path) -> None:
    """New bytes, the same size, a later modification time."""
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.write(np.random.default_rng(9).bytes(size))
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))


@pytest.mark.parametrize("recorded", ["size-and-mtime", "size-only", "none"])
async def test_a_file_rewritten_in_place_after_its_first_read_is_caught(tmp_path, recorded):
    path = tmp_path / "src.h5"
    values = write_source(path)
    st = path.stat()
    fingerprint = {
        "size-and-mtime": Fingerprint(size=st.st_size, mtime_ns=st.st_mtime_ns),
        "size-only": Fingerprint(size=st.st_size),
        "none": None,
    }[recorded]
    store = store_over(manifest_for(path, fingerprint=fingerprint))
    arr = zarr.open_group(store, mode="r")["v"]
    np.testing.assert_array_equal(arr[:], values)  # the file is open, its bytes cached
    rewrite_in_place(path)
    with pytest.raises(zms.SourceChangedError, match=r"src\.h5.*changed"):
        arr[:]
    with pytest.raises(zms.SourceChangedError, match=r"src\.h5"):
        await store.sources.read(str(path), 0, 8)  # the read served from the page cache
    with pytest.raises(zms.SourceChangedError, match=r"src\.h5"):
        store.sources.read_sync(str(path), 0, 8)
    store.close()  # every descriptor closed: reopening it still refuses
    with pytest.raises(zms.SourceChangedError, match=r"src\.h5"):
        arr[:]


def test_verify_never_is_the_documented_opt_out(tmp_path):
    path = tmp_path / "src.h5"
    write_source(path)
    store = store_over(manifest_for(path), verify="never")
    zarr.open_group(store, mode="r")["v"][:]
    rewrite_in_place(path)
    assert bytes(store.sources.read_sync(str(path), 0, 4)) == path.read_bytes()[:4]


def test_a_source_shorter_than_a_reference_has_changed(tmp_path):
    store, _, path = local_store(tmp_path, record=False)
    os.truncate(path, path.stat().st_size - 10)
    with pytest.raises(zms.SourceChangedError, match=r"src\.h5' is too short"):
        zarr.open_group(store, mode="r")["v"][:]
    sources = Sources()
    with pytest.raises(zms.SourceChangedError, match="too short"):
        sources.read_sync(str(path), path.stat().st_size - 2, 4)


def test_a_nul_in_a_source_path_is_refused_naming_it(tmp_path):
    with pytest.raises(PermissionError, match="NUL"):
        Sources().read_sync(str(tmp_path / "a\0b.bin"), 0, 1)


@pytest.mark.parametrize("verify", VERIFY_MODES)
def test_a_file_swapped_for_a_fifo_after_it_was_read_never_hangs(tmp_path, monkeypatch, verify):
    monkeypatch.setattr(local_module, "MAX_OPEN_FILES", 1)
    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    a.write_bytes(b"0123")
    b.write_bytes(b"4567")
    sources = Sources(allow=[str(tmp_path)], verify=verify)
    assert sources.read_sync(str(a), 0, 4) == b"0123"
    assert sources.read_sync(str(b), 0, 4) == b"4567"  # a's descriptor is closed
    a.unlink()
    os.mkfifo(a)
    try:
        with pytest.raises(OSError, match=r"a\.bin"):
            promptly(lambda: sources.read_sync(str(a), 0, 4))
    finally:
        release_fifo(a)


@pytest.mark.parametrize("verify", VERIFY_MODES)
@pytest.mark.parametrize("length", [2**40, 2**62])
def test_a_huge_length_is_refused_without_allocating_it(tmp_path, verify, length):
    # no fingerprint says how long the file is: the read must not allocate the length asked
    path = tmp_path / "small.bin"
    path.write_bytes(b"0123456789")
    sources = Sources(allow=[str(tmp_path)], verify=verify)
    with pytest.raises(zms.SourceChangedError, match=r"small\.bin' is too short"):
        sources.read_sync(str(path), 4, length)
    with pytest.raises(zms.SourceChangedError, match="too short"):
        sources.read_sync(str(path), 20, 100)
