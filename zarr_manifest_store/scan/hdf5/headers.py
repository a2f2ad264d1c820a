"""HDF5 object headers read from the file's bytes: the superblock, header messages, global heaps.

h5py costs tens of microseconds of Python and Cython per call, and a scan
makes a dozen calls per dataset, which a file of thousands of tiny datasets
(MATLAB v7.3, EEGLAB) pays thousands of times. This module reads what those
calls read straight from the file (HDF5 File Format Specification 3.0): the
superblock's sizes and base address, an object header's messages (version 1,
and version 2 with its checksum, with their continuation blocks), and the
global heap collections that variable-length strings live in. Anything it does
not recognise raises :class:`Unrecognised`, and the scan then reads that
object through h5py, which decides what is supported.
"""

from __future__ import annotations

import functools
import os
import struct
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, NamedTuple

from numcodecs.checksum32 import JenkinsLookup3

__all__ = [
    "BLOCK_BYTES",
    "NOT_RECOGNISED",
    "UNSIGNED",
    "FileBytes",
    "Message",
    "Unrecognised",
    "lookup3",
    "object_messages",
    "verify_checksum",
]

BLOCK_BYTES = 1 << 16
"""Object headers are read in blocks of this size: the metadata of a file usually clusters."""
CACHED_BLOCKS = 1024
"""Blocks kept per file (64 MiB, as many bytes as ``HEAP_CACHE_BYTES``): a file written variable
by variable interleaves their headers, dense attribute storage and chunks, and the walk takes
them in h5py's order, not the file's; with 16 MiB, a scan of 10,000 h5netcdf variables in 52 MB
read each block three times over (6% of its time)."""
UNSIGNED = {1: "B", 2: "H", 4: "I", 8: "Q"}
"""``struct`` codes of little-endian unsigned integers by size (offsets, lengths, ...)."""
MAX_HEADER_BYTES = 1 << 20
"""A header block or global heap collection larger than this is left to h5py (a damaged
size field must not make the scan read a whole file)."""
HEAP_CACHE_BYTES = 1 << 26
"""Bytes of parsed global heap collections kept per file (64 MiB). Collections are small
(4 KiB usually) and a file of thousands of datasets has hundreds, each read once per
variable-length string attribute: a cache of a fixed count of them thrashes when the scan
visits datasets in another order than they were written."""
MAX_MESSAGES = 1 << 16
"""Messages in one object header (version 1 counts them in 16 bits)."""
SIGNATURE = b"\x89HDF\r\n\x1a\n"
DEFAULT_CHUNK_BTREE_K = 32
"""HDF5's ``HDF5_BTREE_CHUNK_IK_DEF``."""
BTREE_K_MESSAGE = 0x13
"""The superblock extension's message of non-default B-tree 'K' values."""

# Message flags: shared (its body is elsewhere) and the "must understand" family.
SHARED = 0x02
MUST_UNDERSTAND = 0x08 | 0x10 | 0x20 | 0x80
CONTINUATION = 0x10


class Unrecognised(Exception):
    """Something this reader does not know exactly: the object is read through h5py instead."""


NOT_RECOGNISED = (Unrecognised, IndexError, KeyError, TypeError, ValueError, struct.error)
"""What reading bytes that the readers of headers do not know raises: Unrecognised, or the
error of a structure cut short or malformed."""


class Message(NamedTuple):
    """One object header message: its type, flags, body and creation order (v2 only)."""

    type: int
    flags: int
    body: bytes
    order: int | None


class FileBytes:
    """The bytes of one HDF5 file, read in cached blocks through ``read(start, stop)``.

    Knows the superblock's base address (addresses are relative to it) and the
    sizes of addresses and lengths. Raises :class:`Unrecognised` for a
    superblock version it does not know.
    """

    def __init__(self, read: Callable[[int, int], bytes], size: int) -> None:
        self.size = size
        self._block = functools.lru_cache(CACHED_BLOCKS)(functools.partial(_block, read, size))
        """Block ``index`` of the file, the ``CACHED_BLOCKS`` read last kept (by this reader
        alone, and without a reference to it: its blocks go with it)."""
        self.superblock = self._superblock_start()
        """Where the superblock starts (the base address may differ)."""
        head = self.read(self.superblock, self.superblock + 64)
        version = head[8]
        if version in (0, 1):
            self.offset_size, self.length_size = head[13], head[14]
            at = 24 if version == 0 else 28
        elif version in (2, 3):
            self.offset_size, self.length_size = head[9], head[10]
            at = 12
        else:
            raise Unrecognised(f"superblock version {version}")
        if self.offset_size not in (2, 4, 8) or self.length_size not in (2, 4, 8):
            raise Unrecognised("sizes of offsets and lengths")
        self.length_code = UNSIGNED[self.length_size]
        """The ``struct`` code of a length."""
        self._heap_id = struct.Struct(f"<I{UNSIGNED[self.offset_size]}I")
        """A variable-length element's global heap ID: its length, collection and index."""
        self._heap_object = struct.Struct(f"<H6x{self.length_code}")
        """The head of a global heap object: its index and size."""
        self.base = self.unsigned(head[at : at + self.offset_size])
        self.undefined = (1 << (8 * self.offset_size)) - 1
        self._heaps: OrderedDict[int, tuple[dict[int, bytes], int]] = OrderedDict()
        self._heap_bytes = 0
        self.memo: dict[Any, Any] = {}
        """Kept for the scan of this file by its readers: the objects of a file repeat the
        same messages (``HeaderAttributes`` keeps its attributes' JSON here, see
        ``attributes.json_attributes``, and what the heads of its variable-length text hold;
        ``header_scales`` its scales' link counts)."""

    @classmethod
    def local(cls, fd: int) -> FileBytes:
        """A local file, read with ``pread`` on an open descriptor ``fd``."""
        return cls(lambda start, stop: os.pread(fd, stop - start, start), os.fstat(fd).st_size)

    def _superblock_start(self) -> int:
        start = 0
        while start + 8 <= self.size:
            if self.read(start, start + 8) == SIGNATURE:
                return start
            start = 512 if start == 0 else start * 2
        raise Unrecognised("no superblock")

    @functools.cached_property
    def chunk_btree_k(self) -> int:
        """K of the version 1 B-trees that index chunks (a node holds at most 2K children):
        the superblock's (version 1), or the superblock extension's B-tree 'K' values
        message, which overrides it (as ``H5F__super_read`` reads them), or HDF5's default."""
        head = self.read(self.superblock, self.superblock + 64)
        version, size, k = head[8], self.offset_size, DEFAULT_CHUNK_BTREE_K
        if version == 1:
            k = int.from_bytes(head[24:26], "little")
        extension = self.address(head, (24 if version == 0 else 28 if version == 1 else 12) + size)
        if extension != self.undefined:
            for message in object_messages(self, extension):
                if message.type == BTREE_K_MESSAGE:
                    if message.body[0] != 0:
                        raise Unrecognised("B-tree 'K' values message version")
                    k = int.from_bytes(message.body[1:3], "little")
        if not k:
            raise Unrecognised("chunk B-tree K of 0")
        return k

    def read(self, start: int, stop: int) -> bytes:
        """Bytes ``start:stop`` (absolute), exactly that many (raises Unrecognised past the end)."""
        if start < 0 or stop > self.size or start > stop:
            raise Unrecognised(f"bytes {start}:{stop} lie outside the file")
        first = start // BLOCK_BYTES
        blocks = [self._block(i) for i in range(first, (stop - 1) // BLOCK_BYTES + 1)]
        skip = start - first * BLOCK_BYTES
        return b"".join(blocks)[skip : skip + stop - start]

    def at(self, address: int, size: int) -> bytes:
        """``size`` bytes at file address ``address`` (relative to the base address)."""
        start = self.base + address
        stop = start + size
        if size > MAX_HEADER_BYTES or not 0 <= start <= stop <= self.size:
            raise Unrecognised(f"{size} bytes at address {address}, outside the file or too many")
        offset = start % BLOCK_BYTES
        if offset + size <= BLOCK_BYTES:  # in one block: what most reads of a header are
            return self._block(start // BLOCK_BYTES)[offset : offset + size]
        return self.read(start, stop)  # across blocks

    @staticmethod
    def unsigned(raw: bytes) -> int:
        return int.from_bytes(raw, "little")

    def address(self, raw: bytes, at: int) -> int:
        return int.from_bytes(raw[at : at + self.offset_size], "little")

    def length(self, raw: bytes, at: int) -> int:
        return int.from_bytes(raw[at : at + self.length_size], "little")

    def _heap_collection(self, address: int) -> dict[int, bytes]:
        """The objects of the global heap collection at ``address``, by index, parsed and kept
        (the collections parsed last are kept, up to ``HEAP_CACHE_BYTES``)."""
        objects, size = self._parsed_heap(address)
        self._heaps[address] = (objects, size)
        self._heap_bytes += size
        while self._heap_bytes > HEAP_CACHE_BYTES and len(self._heaps) > 1:
            _, (_, dropped) = self._heaps.popitem(last=False)
            self._heap_bytes -= dropped
        return objects

    def heap_objects(self, data: bytes) -> list[tuple[int, bytes]]:
        """Each variable-length element's length and global heap object, from the heap IDs of
        ``data`` (see :meth:`heap_object`)."""
        size = self._heap_id.size
        if len(data) % size:
            raise Unrecognised("variable-length data cut short")
        return [self.heap_object(data, at) for at in range(0, len(data), size)]

    def heap_object(self, data: bytes, at: int) -> tuple[int, bytes]:
        """A variable-length element's length and global heap object, from its heap ID at
        ``at`` of ``data`` (an empty element's object is ``b""``: HDF5 stores none)."""
        length, address, index = self._heap_id.unpack_from(data, at)
        if not length:
            return 0, b""
        found = self._heaps.get(address)
        if found is None:
            return length, self._heap_collection(address)[index]
        self._heaps.move_to_end(address)
        return length, found[0][index]

    def _parsed_heap(self, address: int) -> tuple[dict[int, bytes], int]:
        head = self.at(address, 8 + self.length_size)
        if head[:4] != b"GCOL" or head[4] != 1:
            raise Unrecognised("global heap collection")
        total = self.length(head, 8)
        raw = self.at(address, total)
        objects: dict[int, bytes] = {}
        object_head = self._heap_object
        at = 8 + self.length_size
        while at + object_head.size <= total:
            index, size = object_head.unpack_from(raw, at)
            if index == 0:  # free space: the rest of the collection
                break
            start = at + object_head.size
            if start + size > total:
                raise Unrecognised("global heap object")
            objects[index] = raw[start : start + size]
            at = start + (size + 7) // 8 * 8
        return objects, total


def _block(read: Callable[[int, int], bytes], size: int, index: int) -> bytes:
    """Block ``index`` of a file of ``size`` bytes that ``read(start, stop)`` reads."""
    start = index * BLOCK_BYTES
    return read(start, min(start + BLOCK_BYTES, size))


V2_PREFIX = 6 + 16 + 4 + 8
"""Bytes of a version 2 object header up to its first block's size, at most: signature,
version, flags, times, attribute phase change values, and the size."""


def object_messages(file: FileBytes, address: int) -> list[Message]:
    """The messages of the object header at ``address``, continuation blocks followed, null
    messages (padding) left out."""
    prefix = file.at(address, min(V2_PREFIX, file.size - file.base - address))
    if prefix[:4] == b"OHDR":
        return _messages_v2(file, address, prefix)
    if prefix[0] != 1:
        raise Unrecognised(f"object header version {prefix[0]}")
    count, size = struct.unpack_from("<H4xI", prefix, 2)
    messages: list[Message] = []
    blocks = [(address + 16, size)]
    seen: set[int] = set()
    while blocks:
        start, size = blocks.pop(0)
        if start in seen:
            raise Unrecognised("continuation blocks in a loop")
        seen.add(start)
        raw = file.at(start, size)
        at = 0
        while at + 8 <= size:
            kind, length, flags = struct.unpack_from("<HHB", raw, at)
            body = raw[at + 8 : at + 8 + length]
            if len(body) != length or flags & MUST_UNDERSTAND:
                raise Unrecognised(f"message {kind} (flags {flags:#x}, {length} bytes)")
            messages.append(Message(kind, flags, body, None))
            if len(messages) > count:
                raise Unrecognised("message count")
            if kind == CONTINUATION:
                blocks.append(_continuation(file, body))
            at += 8 + length
    if len(messages) != count:
        raise Unrecognised("message count")
    return [message for message in messages if message.type]


def _messages_v2(file: FileBytes, address: int, head: bytes) -> list[Message]:
    """The messages of the version 2 header at ``address`` that starts with ``head``."""
    if head[4] != 2:
        raise Unrecognised(f"object header version {head[4]}")
    flags = head[5]
    at = 6 + (16 if flags & 0x20 else 0) + (4 if flags & 0x10 else 0)
    width = 1 << (flags & 3)
    start = at + width
    if len(head) < start:
        raise Unrecognised("object header past the end of the file")
    size = int.from_bytes(head[at:start], "little")
    raw = file.at(address, start + size + 4)
    verify_checksum(raw)
    order = bool(flags & 0x04)
    messages = _block_v2(raw[start : start + size], order)
    pending = [m for m in messages if m.type == CONTINUATION]
    seen: set[int] = set()
    while pending:
        where, length = _continuation(file, pending.pop(0).body)
        if where in seen:
            raise Unrecognised("continuation blocks in a loop")
        seen.add(where)
        block = file.at(where, length)
        if block[:4] != b"OCHK":
            raise Unrecognised("continuation block signature")
        verify_checksum(block)
        more = _block_v2(block[4:-4], order)
        messages += more
        if len(messages) > MAX_MESSAGES:
            raise Unrecognised("message count")
        pending += [m for m in more if m.type == CONTINUATION]
    return messages


def _block_v2(raw: bytes, order: bool) -> list[Message]:
    """The messages of one version 2 header block (without its signature and checksum)."""
    unpack = (_MESSAGE_ORDERED if order else _MESSAGE).unpack_from
    header = 6 if order else 4
    messages = []
    at, end = 0, len(raw)
    while at + header <= end:
        fields = unpack(raw, at)
        kind, length, flags = fields[0], fields[1], fields[2]
        start = at + header
        at = start + length
        if at > end or flags & MUST_UNDERSTAND:
            raise Unrecognised(f"message {kind} (flags {flags:#x}, {length} bytes)")
        if kind:  # not a null message (padding)
            body = raw[start:at]
            message = (kind, flags, body, fields[3] if order else None)
            messages.append(_new_message(Message, message))
    return messages


_new_message = tuple.__new__
"""``Message(...)`` without the Python-level ``__new__`` of a NamedTuple (a header holds a dozen)."""


_MESSAGE, _MESSAGE_ORDERED = struct.Struct("<BHB"), struct.Struct("<BHBH")
"""A version 2 message's type, size and flags (and creation order, where tracked)."""


def _continuation(file: FileBytes, body: bytes) -> tuple[int, int]:
    return file.address(body, 0), file.length(body, file.offset_size)


def verify_checksum(raw: bytes, end: int | None = None) -> None:
    """Checks the Jenkins lookup3 checksum in the last four bytes of a metadata block (the
    block ``raw[:end + 4]``, where ``end`` is given)."""
    end = len(raw) - 4 if end is None else end
    if lookup3(raw, end) != int.from_bytes(raw[end : end + 4], "little"):
        raise Unrecognised("checksum mismatch")


def lookup3(data: bytes, size: int | None = None) -> int:
    """Bob Jenkins' ``hashlittle`` with initial value 0 of ``data`` (its first ``size`` bytes,
    where given): HDF5's metadata checksum.

    numcodecs' C port of HDF5's own (``H5_checksum_lookup3``): a Python loop over the
    12-byte blocks cost a third of the scan of a file of a thousand netCDF-4 variables. It
    takes any buffer; a slice of the bytes costs it less than a memoryview or a NumPy array
    (metadata blocks are small).
    """
    return JenkinsLookup3.checksum(data if size is None else data[:size], 0)
