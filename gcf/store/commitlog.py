"""An append-only, torn-write tolerant log of commit records.

Record: b"GCFC", payload length (uint32 little endian), CRC-32 of the payload (uint32 little endian), payload.
A record is committed once all of it is on disk: a reader keeps the longest prefix of whole records whose CRC
matches and ignores everything after it (a record cut short by a crash, or garbage left by a power loss), so a
commit is atomic without locks or renames. Only one process ever appends to a given log.
"""

from __future__ import annotations

import os
import struct
import zlib

MAGIC = b"GCFC"
_HEAD = struct.Struct("<4sII")


def encode(payload: bytes) -> bytes:
    """One framed record."""
    return _HEAD.pack(MAGIC, len(payload), zlib.crc32(payload)) + payload


def append(fd: int, payload: bytes) -> None:
    """Append one record with a single write and make it durable (the commit point)."""
    record = encode(payload)
    if os.write(fd, record) != len(record):
        raise OSError("short write to commit log")
    os.fsync(fd)


def read(path: str | os.PathLike) -> tuple[list[bytes], int, int]:
    """(payloads of the committed records, bytes they span, file size); a missing file is an empty log."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return [], 0, 0
    payloads, good = [], 0
    while good + _HEAD.size <= len(data):
        magic, size, crc = _HEAD.unpack_from(data, good)
        end = good + _HEAD.size + size
        if magic != MAGIC or end > len(data):
            break
        payload = data[good + _HEAD.size:end]
        if zlib.crc32(payload) != crc:
            break
        payloads.append(payload)
        good = end
    return payloads, good, len(data)
