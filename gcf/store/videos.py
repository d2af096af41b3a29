"""The per-video table every part commits: columns of equal length, one entry per video (ok or failed).

`row`/`n` locate a video's clips in its part's per-clip arrays; an ok video has n >= 1 and error "", a failed
one n = 0 and its error message; `split` is an index into SPLITS. Writers build tables of Python lists
(empty/append). Decoded tables hold numbers as numpy arrays, ids as a list of strings, and the rarely read
`text` columns (source, error) as one NUL-joined UTF-8 blob, split by text() only when needed: opening a store
of a million videos then takes a fraction of a second.
"""

from __future__ import annotations

import json
from itertools import chain

import numpy as np

from gcf.store.meta import SPLITS, VideoInfo

# column -> kind: a numpy dtype, "str" (list of strings) or "text" (strings kept as one blob until needed)
COLUMNS: dict[str, str] = {
    "id": "str", "source": "text", "label": "<i8", "split": "|u1", "n_frames": "<i8", "fps": "<f8",
    "duration": "<f8", "row": "<i8", "n": "<i8", "logits": "|b1", "error": "text",
}


def empty() -> dict[str, list]:
    """A table with no videos."""
    return {k: [] for k in COLUMNS}


def append(table: dict[str, list], info: VideoInfo, row: int, n: int, logits: bool, error: str) -> None:
    """Add one video to a table built of lists."""
    for k, v in (("id", info.video_id), ("source", info.source), ("label", int(info.label)),
                 ("split", SPLITS.index(info.split)), ("n_frames", int(info.n_frames)), ("fps", float(info.fps)),
                 ("duration", float(info.duration)), ("row", int(row)), ("n", int(n)),
                 ("logits", bool(logits)), ("error", error)):
        table[k].append(v)


def encode(table: dict) -> bytes:
    """Binary form: uint32 header length, JSON header {"n": videos, "columns": [[name, dtype, bytes], ...]},
    then each column: numbers as little-endian arrays, strings as UTF-8 joined by NUL bytes."""
    blobs = [_joined(table[k]) if kind in ("str", "text") else np.asarray(table[k], dtype=kind).tobytes()
             for k, kind in COLUMNS.items()]
    header = json.dumps({"n": len(table["id"]),
                         "columns": [[k, kind, len(b)] for (k, kind), b in zip(COLUMNS.items(), blobs)]}).encode()
    return len(header).to_bytes(4, "little") + header + b"".join(blobs)


def decode(blob: bytes) -> dict:
    """Inverse of encode: a decoded table."""
    size = int.from_bytes(blob[:4], "little")
    header = json.loads(blob[4:4 + size])
    table, at, n = {}, 4 + size, header["n"]
    for name, kind, nbytes in header["columns"]:
        raw = blob[at:at + nbytes]
        table[name] = (text(raw, n) if kind == "str" else raw if kind == "text"
                       else np.frombuffer(blob, dtype=kind, count=n, offset=at))
        at += nbytes
    return table


def text(column, n: int) -> list[str]:
    """A string column as a list (`column`: a blob of n NUL-joined strings, or already a list)."""
    if not isinstance(column, bytes):
        return list(column)
    return column.decode().split("\0") if n else []


def concat(tables: list[dict]) -> dict:
    """One decoded table of all entries of `tables`, in order."""
    tables = [t for t in tables if len(t["id"])]
    return {k: (list(chain.from_iterable(t[k] for t in tables)) if kind == "str"
                else b"\0".join(_joined(t[k]) for t in tables) if kind == "text"
                else np.concatenate([np.asarray(t[k], dtype=kind) for t in tables]) if tables
                else np.zeros(0, dtype=kind))
            for k, kind in COLUMNS.items()}


def take(table: dict, keep: np.ndarray) -> dict:
    """The sub-table of entries `keep` of a decoded table, in that order."""
    out = {}
    for k, kind in COLUMNS.items():
        if kind == "str":
            out[k] = [table[k][i] for i in keep]
        elif kind == "text":
            values = text(table[k], len(table["id"]))
            out[k] = _joined([values[i] for i in keep])
        else:
            out[k] = table[k][keep]
    return out


def _joined(column) -> bytes:
    return column if isinstance(column, bytes) else "\0".join(column).encode()


def resolve(ids: list[str], failed: np.ndarray) -> np.ndarray:
    """One entry per video id when several writers committed it: the first ok entry, else the first failure.

    Entries come in store order (parts by name, then commit order), so the choice is deterministic.
    """
    best: dict[str, int] = {}
    failed = failed.tolist()
    for j, vid in enumerate(ids):
        k = best.get(vid)
        if k is None or (failed[k] and not failed[j]):
            best[vid] = j
    return np.array(sorted(best.values()), dtype=np.int64)
