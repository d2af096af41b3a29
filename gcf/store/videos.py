"""The per-video table every part commits: columns of equal length, one entry per video (ok or failed).

`row`/`n` locate a video's clips in its part's per-clip arrays; an ok video has n >= 1 and error "", a failed
one n = 0 and its error message. Writers build
tables of Python lists (empty/append); readers get numeric columns as numpy arrays and string columns as lists.
The binary form (encode/decode) keeps opening a store of a million videos to a fraction of a second.
"""

from __future__ import annotations

import json
from itertools import chain

import numpy as np

from gcf.store.meta import VideoInfo

# column -> numpy dtype ("str": Python strings in memory, UTF-8 on disk)
COLUMNS: dict[str, str] = {
    "id": "str", "source": "str", "label": "<i8", "split": "str", "n_frames": "<i8", "fps": "<f8",
    "duration": "<f8", "row": "<i8", "n": "<i8", "logits": "|b1", "error": "str",
}
STR_COLUMNS = tuple(k for k, v in COLUMNS.items() if v == "str")


def empty() -> dict[str, list]:
    """A table with no videos."""
    return {k: [] for k in COLUMNS}


def append(table: dict[str, list], info: VideoInfo, row: int, n: int, logits: bool, error: str) -> None:
    """Add one video to a table built of lists."""
    for k, v in (("id", info.video_id), ("source", info.source), ("label", int(info.label)),
                 ("split", info.split), ("n_frames", int(info.n_frames)), ("fps", float(info.fps)),
                 ("duration", float(info.duration)), ("row", int(row)), ("n", int(n)),
                 ("logits", bool(logits)), ("error", error)):
        table[k].append(v)


def encode(table: dict) -> bytes:
    """Binary form: uint32 header length, JSON header {"n": videos, "columns": [[name, dtype, bytes], ...]},
    then each column: numbers as little-endian arrays, strings as UTF-8 joined by NUL bytes."""
    blobs = [("\0".join(table[k]).encode() if kind == "str" else np.asarray(table[k], dtype=kind).tobytes())
             for k, kind in COLUMNS.items()]
    header = json.dumps({"n": len(table["id"]),
                         "columns": [[k, kind, len(b)] for (k, kind), b in zip(COLUMNS.items(), blobs)]}).encode()
    return len(header).to_bytes(4, "little") + header + b"".join(blobs)


def decode(blob: bytes) -> dict:
    """Inverse of encode: numeric columns as numpy arrays, string columns as lists."""
    size = int.from_bytes(blob[:4], "little")
    header = json.loads(blob[4:4 + size])
    table, at, n = {}, 4 + size, header["n"]
    for name, kind, nbytes in header["columns"]:
        if kind == "str":
            table[name] = blob[at:at + nbytes].decode().split("\0") if n else []
        else:
            table[name] = np.frombuffer(blob, dtype=kind, count=n, offset=at)
        at += nbytes
    return table


def concat(tables: list[dict]) -> dict:
    """One table of all entries of `tables`, in order."""
    return {k: (list(chain.from_iterable(t[k] for t in tables)) if kind == "str"
                else np.concatenate([np.asarray(t[k], dtype=kind) for t in tables]) if tables
                else np.zeros(0, dtype=kind))
            for k, kind in COLUMNS.items()}


def take(table: dict, keep: np.ndarray) -> dict:
    """The sub-table of entries `keep`, in that order."""
    return {k: [table[k][i] for i in keep] if kind == "str" else table[k][keep] for k, kind in COLUMNS.items()}


def video_info(table: dict, i: int) -> VideoInfo:
    """Entry i as a VideoInfo."""
    return VideoInfo(video_id=table["id"][i], source=table["source"][i], label=int(table["label"][i]),
                     split=table["split"][i], n_frames=int(table["n_frames"][i]), fps=float(table["fps"][i]),
                     duration=float(table["duration"][i]))


def resolve(ids: list[str], errors: list[str]) -> np.ndarray:
    """One entry per video id when several writers committed it: the first ok entry, else the first failure.

    Entries come in store order (parts by name, then commit order), so the choice is deterministic.
    """
    best: dict[str, int] = {}
    for j, (vid, err) in enumerate(zip(ids, errors)):
        k = best.get(vid)
        if k is None or (errors[k] and not err):
            best[vid] = j
    return np.array(sorted(best.values()), dtype=np.int64)
