"""The per-video table every part commits: columns of equal length, one entry per video (ok or failed).

`row`/`n` locate a video's clips in its part's per-clip arrays; `error` is "" for an ok video.
"""

from __future__ import annotations

import numpy as np

from gcf.store.meta import VideoInfo

# column -> numpy dtype used in memory and in HDF5 ("str" columns are Python strings)
COLUMNS: dict[str, str] = {
    "id": "str", "source": "str", "label": "int64", "split": "str", "n_frames": "int64", "fps": "float64",
    "duration": "float64", "row": "int64", "n": "int64", "logits": "bool", "error": "str",
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


def extend(table: dict[str, list], other: dict) -> None:
    """Append every video of `other` (lists or arrays) to `table`."""
    for k in COLUMNS:
        table[k].extend(other[k].tolist() if isinstance(other[k], np.ndarray) else other[k])


def take(table: dict[str, list], keep: list[int]) -> dict[str, list]:
    """The sub-table of entries `keep`, in that order."""
    return {k: [table[k][i] for i in keep] for k in COLUMNS}


def video_info(table: dict, i: int) -> VideoInfo:
    """Entry i as a VideoInfo."""
    return VideoInfo(video_id=table["id"][i], source=table["source"][i], label=int(table["label"][i]),
                     split=table["split"][i], n_frames=int(table["n_frames"][i]), fps=float(table["fps"][i]),
                     duration=float(table["duration"][i]))


def resolve(ids: list[str], errors: list[str]) -> list[int]:
    """One entry per video id when several writers committed it: the first ok entry, else the first failure.

    Entries come in store order (parts by name, then commit order), so the choice is deterministic.
    """
    best: dict[str, int] = {}
    for j, (vid, err) in enumerate(zip(ids, errors)):
        k = best.get(vid)
        if k is None or (errors[k] and not err):
            best[vid] = j
    return sorted(best.values())
