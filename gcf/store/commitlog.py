"""An append-only, torn-write tolerant log of commit records (one JSON object per line, with a CRC).

Line format: `<crc32 of the JSON, 8 hex digits> <JSON>\\n`. A record is committed once its whole line is on disk:
a reader keeps the longest prefix of lines whose CRC matches and ignores everything after it (a line cut short
by a crash, or garbage left by a power loss), so a commit is atomic without locks or renames.
"""

from __future__ import annotations

import json
import os
import zlib


def encode(record: dict) -> bytes:
    """One log line for `record`."""
    payload = json.dumps(record, separators=(",", ":")).encode()
    return b"%08x %s\n" % (zlib.crc32(payload), payload)


def append(fd: int, record: dict) -> None:
    """Append one record with a single write and make it durable (the commit point)."""
    line = encode(record)
    if os.write(fd, line) != len(line):
        raise OSError("short write to commit log")
    os.fsync(fd)


def read(path: str | os.PathLike) -> tuple[list[dict], int, int]:
    """(committed records, bytes they span, file size); a missing file is an empty log."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return [], 0, 0
    records, good = [], 0
    while True:
        end = data.find(b"\n", good)
        if end < 0:
            break
        line = data[good:end]
        try:
            crc, payload = line[:8], line[9:]
            if line[8:9] != b" " or int(crc, 16) != zlib.crc32(payload):
                break
            records.append(json.loads(payload))
        except ValueError:
            break
        good = end + 1
    return records, good, len(data)
