"""The format registry: how ``zms.scan`` recognises what it is given, and which scanner reads it.

A format is a :class:`Format`: its name, its scanner, and how to recognise
what it reads: signatures its files start with (or carry at other offsets),
a test of a file's first bytes and name (:class:`Head`), of a folder
(:class:`Folder`), or of a mapping. :class:`Registry` holds the built-in
formats and those other packages declare in the entry-point group
``zarr_manifest_store.formats`` (each entry point names a ``Format``), and
identifies a source in three passes, so that no format pays for another's
deeper look: signatures within the first bytes, then each format's ``sniff``,
then signatures further in (which cost a read each). A format may name its
scanner (:class:`Deferred`) instead of holding it, so that recognising a file
imports none of the libraries that scanning it needs.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import os
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import fsspec

from zarr_manifest_store.errors import UnsupportedDatasetError
from zarr_manifest_store.group import ManifestGroup
from zarr_manifest_store.io.clients import store_key
from zarr_manifest_store.io.paths import is_local, local_path
from zarr_manifest_store.io.remote_file import shared_remote_file
from zarr_manifest_store.io.sources import Sources

__all__ = ["ENTRY_POINT_GROUP", "HEAD_BYTES", "Deferred", "Folder", "Format", "Head", "Registry"]

ENTRY_POINT_GROUP = "zarr_manifest_store.formats"
"""The entry-point group through which other packages add formats."""
HEAD_BYTES = 4096
"""How many first bytes of a file every format's recognition sees without reading more."""


@dataclass(frozen=True)
class Head:
    """A file as formats see it to recognise it: its name, size and first bytes.

    ``read(start, end)`` reads further bytes (a request each, for a remote file).
    """

    path: str
    size: int
    head: bytes
    read: Callable[[int, int], bytes]


@dataclass(frozen=True)
class Folder:
    """A folder (or prefix of objects) as formats see it to recognise it."""

    path: str
    fs: fsspec.AbstractFileSystem
    root: str

    def read(self, name: str) -> bytes | None:
        """The bytes of the file ``name`` in the folder, None if there is none."""
        try:
            return self.fs.cat_file(f"{self.root}/{name}")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None

    def exists(self, name: str) -> bool:
        """Whether the folder holds ``name``."""
        return self.fs.exists(f"{self.root}/{name}")


@dataclass(frozen=True)
class Deferred:
    """A scanner named by ``"module:function"``, imported when it is first called or its
    signature is asked for: a format's libraries load when a file of it is scanned.

    >>> scan_tiff = Deferred("zarr_manifest_store.scan.tiff.scanner:scan_tiff")
    >>> scan_tiff.__name__, "storage_options" in inspect.signature(scan_tiff).parameters
    ('scan_tiff', True)
    """

    target: str

    @cached_property
    def function(self) -> Callable[..., Any]:
        """The scanner itself (its module imported)."""
        module, _, name = self.target.partition(":")
        return getattr(importlib.import_module(module), name)

    @property
    def __name__(self) -> str:  # what error messages call the scanner
        return self.target.rpartition(":")[2]

    @property
    def __signature__(self) -> inspect.Signature:  # what ``inspect.signature`` reads
        return inspect.signature(self.function)

    def __call__(self, *args: Any, **options: Any) -> Any:
        return self.function(*args, **options)


@dataclass(frozen=True)
class Format:
    """A format ``zms.scan`` reads: its scanner and how to recognise what it reads.

    ``scan(url, **options)`` returns a ManifestGroup (a mapping for the
    formats that read mappings); a :class:`Deferred` scanner is imported when
    first used. ``description`` says what it reads, for the
    message that refuses an unknown file. A file is recognised by one of its
    ``signatures`` at one of ``signature_offsets``, or by ``sniff(head)``;
    a folder by ``sniff_folder(folder)`` (``folder_description`` says what
    it looks for); a mapping passed to ``zms.scan`` by ``sniff_mapping``.

    >>> from zarr_manifest_store.scan import REGISTRY
    >>> REGISTRY["netcdf3"].signatures
    (b'CDF\\x01', b'CDF\\x02', b'CDF\\x05')
    """

    name: str
    scan: Callable[..., ManifestGroup] | Deferred
    description: str
    signatures: tuple[bytes, ...] = ()
    signature_offsets: tuple[int, ...] = (0,)
    sniff: Callable[[Head], bool] | None = None
    sniff_folder: Callable[[Folder], bool] | None = None
    folder_description: str = ""
    sniff_mapping: Callable[[Mapping[str, Any]], bool] | None = None

    @cached_property
    def options(self) -> frozenset[str] | None:
        """The keyword options its scanner takes (None: any, through ``**options``)."""
        parameters = inspect.signature(self.scan).parameters.values()
        if any(p.kind is p.VAR_KEYWORD for p in parameters):
            return None
        return frozenset(p.name for p in parameters if p.kind is p.KEYWORD_ONLY)

    def signed(self, head: bytes, offsets: Iterable[int]) -> bool:
        """Whether one of its signatures is in ``head`` at one of ``offsets``."""
        return any(
            head.startswith(signature, offset)
            for offset in offsets
            for signature in self.signatures
        )


@dataclass
class Registry:
    """The formats ``zms.scan`` reads: built-in ones first, then those of entry points.

    Entry points are read when a source is first identified (or after
    :meth:`reload`); one that fails to load, or names anything but a
    :class:`Format`, is skipped with a warning, as is one that takes a
    built-in format's name.
    """

    builtin: dict[str, Format]
    """The built-in formats, by name, in the order they are tried."""
    _plugins: dict[str, Format] | None = field(default=None, repr=False)

    @property
    def formats(self) -> tuple[Format, ...]:
        """Every format, in the order they are tried."""
        if self._plugins is None:
            self._plugins = self.load(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))
        return (*self.builtin.values(), *self._plugins.values())

    def __getitem__(self, name: str) -> Format:
        for fmt in self.formats:
            if fmt.name == name:
                return fmt
        raise KeyError(name)

    def reload(self) -> None:
        """Read the entry points again (after installing a format package in a running session)."""
        self._plugins = None

    def load(self, entry_points: Iterable[importlib.metadata.EntryPoint]) -> dict[str, Format]:
        """The formats the ``entry_points`` name, by name, in the order of the entry points' names."""
        loaded: dict[str, Format] = {}
        for entry_point in sorted(entry_points, key=lambda e: e.name):
            where = f"entry point {entry_point.name!r} ({entry_point.value})"
            try:
                fmt = entry_point.load()
            except Exception as e:  # a broken plugin must not stop scans of other formats
                warnings.warn(f"{where} of {ENTRY_POINT_GROUP} fails to load: {e!r}", stacklevel=2)
                continue
            if not isinstance(fmt, Format):
                warnings.warn(
                    f"{where} of {ENTRY_POINT_GROUP} names a {type(fmt).__name__}, "
                    f"not a zarr_manifest_store.scan.Format; ignored",
                    stacklevel=2,
                )
            elif fmt.name in self.builtin or fmt.name in loaded:
                warnings.warn(
                    f"{where} of {ENTRY_POINT_GROUP}: a format named {fmt.name!r} is already "
                    f"registered; ignored",
                    stacklevel=2,
                )
            else:
                loaded[fmt.name] = fmt
        return loaded

    # ------------------------------------------------------------------ identifying

    def identify(
        self, url: str | os.PathLike[str], storage_options: Mapping[str, Any] | None = None
    ) -> Format:
        """The format of the file or folder at ``url``, from its first bytes or its layout."""
        path = os.fspath(url)
        if is_local(path) and not os.path.isdir(local_path(path)):
            # Read directly: going through fsspec costs several times more than the reading.
            with open(local_path(path), "rb") as f:
                size = os.fstat(f.fileno()).st_size
                head = f.read(HEAD_BYTES)
                fd = f.fileno()
                return self.identify_file(
                    Head(path, size, head, lambda start, end: os.pread(fd, end - start, start))
                )
        if store_key(path)[0]:  # S3, GCS, Azure, HTTP: one ranged GET (obstore), no HEAD
            try:  # its first block: within a `sharing`, the scanner reads on from it
                remote = shared_remote_file(Sources(storage_options), path)
            except (FileNotFoundError, ValueError):
                pass  # a folder, or options only fsspec takes: the file system says below
            else:
                size = remote.size
                return self.identify_file(
                    Head(
                        path,
                        size,
                        remote.read_range(0, min(size, HEAD_BYTES)) if size else b"",
                        lambda start, end: remote.read_range(start, min(end, size)),
                    )
                )
        fs, fs_path = fsspec.core.url_to_fs(path, **dict(storage_options or {}))
        info = fs.info(fs_path)
        if info.get("type") == "directory":
            return self.identify_folder(Folder(path, fs, fs_path.rstrip("/")))
        size = int(info.get("size") or 0)
        head = fs.cat_file(fs_path, start=0, end=min(size, HEAD_BYTES)) if size else b""
        return self.identify_file(
            Head(path, size, head, lambda start, end: fs.cat_file(fs_path, start=start, end=end))
        )

    def identify_file(self, file: Head) -> Format:
        """The format of a file: a signature in its first bytes, a sniff, a signature further in.

        A built-in format's signature settles it before the entry points are
        read (their formats come after the built-in ones in every pass).
        """
        for fmt in self.builtin.values():
            if fmt.signed(file.head, fmt.signature_offsets):
                return fmt
        formats = self.formats
        for fmt in formats:
            if fmt.signed(file.head, fmt.signature_offsets):
                return fmt
        for fmt in formats:
            if fmt.sniff is not None and fmt.sniff(file):
                return fmt
        for fmt in formats:
            for offset in fmt.signature_offsets:
                end = offset + max(map(len, fmt.signatures), default=0)
                if len(file.head) < end <= file.size and fmt.signed(file.read(offset, end), [0]):
                    return fmt
        raise UnsupportedDatasetError(
            f"cannot identify the format of {file.path!r}: it starts with {file.head[:16]!r}"
            f"{' (an empty file)' if not file.size else ''}. zms.scan reads "
            f"{_listing([fmt.description for fmt in formats], 'and')}"
        )

    def identify_folder(self, folder: Folder) -> Format:
        """The format of a folder, from the files it holds."""
        readers = [fmt for fmt in self.formats if fmt.sniff_folder is not None]
        for fmt in readers:
            if fmt.sniff_folder(folder):  # type: ignore[misc]
                return fmt
        hint = (
            "; its zarr.json is a chunk-manifest document's (open documents with "
            "zms.ManifestStore.open) or not Zarr v3 metadata"
            if folder.exists("zarr.json")
            else ""
        )
        raise UnsupportedDatasetError(
            f"cannot identify the format of folder {folder.path!r}: it is not "
            f"{_listing([fmt.folder_description for fmt in readers], 'or')}{hint}"
        )

    def identify_mapping(self, mapping: Mapping[str, Any]) -> Format:
        """The format of a mapping (references held in memory)."""
        for fmt in self.formats:
            if fmt.sniff_mapping is not None and fmt.sniff_mapping(mapping):
                return fmt
        raise UnsupportedDatasetError(
            "cannot identify the format of a mapping: no format reads one like it"
        )


def _listing(items: Sequence[str], conjunction: str) -> str:
    """``a, b and c``."""
    if len(items) < 2:
        return "".join(items)
    return f"{', '.join(items[:-1])} {conjunction} {items[-1]}"
