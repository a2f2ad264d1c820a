"""Debian binary packages as pins: downloaded with apt, their files read with dpkg-deb.

``apt-get download name=version`` (Debian's own client, from the archive the machine's apt
sources name; after ``apt-get update`` where apt's lists lack it) fetches the package, whose
sha256 is checked against the pin as a PyPI archive's is; ``dpkg-deb --fsys-tarfile`` streams
the files it installs as one tar, whose members are sniffed as any archive's.
"""

from __future__ import annotations

import functools
import hashlib
import os
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Protocol


class Pin(Protocol):
    """What a Debian pin names (``fetch.Pin`` has it): the package, its version, its
    ``.deb`` file and that file's sha256."""

    name: str
    version: str
    file: str
    sha256: str


def download(pin: Pin, cache: Path) -> Path:
    """The pinned package in ``cache/archives/debian``, downloaded with apt if not there yet."""
    dest = cache / "archives" / "debian" / pin.file
    if dest.exists() and _sha256(dest) == pin.sha256:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        done = _apt_get_download(pin, tmp)
        if done.returncode and _apt_get_update():  # apt's lists are missing or stale
            done = _apt_get_download(pin, tmp)
        debs = list(Path(tmp).glob("*.deb"))
        if done.returncode or len(debs) != 1:
            raise LookupError(
                f"apt-get download {pin.name}={pin.version} failed (apt-get update, as root? has "
                f"the version left the archive?): {done.stderr.strip()[-300:]}"
            )
        if _sha256(debs[0]) != pin.sha256:
            raise ValueError(
                f"{pin.file}: sha256 {_sha256(debs[0])} is not the pinned {pin.sha256}"
            )
        debs[0].replace(dest)
    return dest


def _apt_get_download(pin: Pin, folder: str) -> subprocess.CompletedProcess[str]:
    command = ["apt-get", "download", f"{pin.name}={pin.version}"]
    return subprocess.run(command, cwd=folder, capture_output=True, text=True)


@functools.cache
def _apt_get_update() -> bool:
    """Whether ``apt-get update`` (run once a process, as root only) brought apt's lists."""
    if os.geteuid() != 0:
        return False
    return subprocess.run(["apt-get", "update", "-qq"], capture_output=True).returncode == 0


@contextmanager
def fsys_tarfile(deb: Path) -> Iterator[IO[bytes]]:
    """The tar stream of the files ``deb`` installs (its data archive, decompressed)."""
    with subprocess.Popen(
        ["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE
    ) as process:
        assert process.stdout is not None
        yield process.stdout
        process.stdout.read()  # what the reader left, so that dpkg-deb ends
    if process.returncode:
        raise ValueError(f"dpkg-deb --fsys-tarfile {deb} exited with {process.returncode}")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
