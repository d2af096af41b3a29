"""Small file-system helpers for durable, lock-free writes and fast reads."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path


def fsync_path(path: str | os.PathLike) -> None:
    """Flush a file's or directory's contents (a directory: its entries) to stable storage."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def pread_into(fd: int, buf: memoryview, offset: int) -> int:
    """Read len(buf) bytes at `offset` straight into buf (no intermediate copy); returns bytes read."""
    done = 0
    while done < len(buf):
        got = os.preadv(fd, [buf[done:]], offset + done)
        if got == 0:
            break
        done += got
    return done


def hidden_tmp(path: Path, tag: str) -> Path:
    """A unique hidden sibling of `path` for write-then-rename; readers skip names starting with '.'."""
    return path.with_name(f".{path.name}.{tag}-{uuid.uuid4().hex[:8]}")


def remove_tree(path: Path) -> None:
    """Delete a directory so that no half-deleted state is ever visible under its name (rename, then delete)."""
    trash = hidden_tmp(path, "deleting")
    os.rename(path, trash)
    shutil.rmtree(trash)


def disk_size(path: Path) -> int:
    """Bytes used by a file or a directory tree."""
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
