"""Reading a store: open_store(path) joins every writer's committed videos; load() brings a store into memory."""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gcf.errors import GcfError
from gcf.store import videos
from gcf.store.backend import backend_for
from gcf.store.meta import SPLITS, StoreMeta, VideoInfo, meta_from_header

_SPLIT_NAMES = np.array(SPLITS, dtype=object)


@dataclass
class FeatureTable:
    """Many videos in memory: the clips of video i are features[offsets[i]:offsets[i + 1]]."""

    features: np.ndarray   # [N, d], the store's dtype
    offsets: np.ndarray    # [V + 1] int64
    video_ids: list[str]   # [V]
    labels: np.ndarray     # [V] int64, -1 unknown
    splits: list[str]      # [V]

    def __len__(self) -> int:
        return len(self.video_ids)

    @property
    def n_clips(self) -> np.ndarray:
        """Clips per video, [V]."""
        return np.diff(self.offsets)


class StoreReader:
    """A snapshot of a store's committed videos; one entry per video id even if several writers added it."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        backend = backend_for(path)
        if not self.path.exists():
            raise GcfError(f"{path}: no such feature store; check the path or create it with `gcf extract`")
        self.meta: StoreMeta = meta_from_header(backend.read_header(self.path), str(path))
        self.parts = backend.list_parts(self.path)
        table = videos.concat([t for p in self.parts for t in p.tables])
        part_of = np.repeat(np.arange(len(self.parts)), [sum(len(t["id"]) for t in p.tables) for p in self.parts])
        if len(set(table["id"])) != len(table["id"]):  # several writers committed a video: keep one
            keep = videos.resolve(table["id"], table["n"] == 0)
            table, part_of = videos.take(table, keep), part_of[keep]
        self._table, self._part, self._texts = table, part_of, {}
        self._row, self._n, self._labels, self._splits = table["row"], table["n"], table["label"], table["split"]
        ids = table["id"]
        failed = self._n == 0  # the writer gives every ok video at least one clip, a failure none
        self._ok = np.flatnonzero(~failed)
        self.videos: list[str] = [ids[i] for i in self._ok] if failed.any() else list(ids)
        self.failed: dict[str, str] = {ids[i]: self._text("error")[i] for i in np.flatnonzero(failed)}

    @functools.cached_property
    def _pos(self) -> dict[str, int]:
        return {vid: i for i, vid in enumerate(self._table["id"])}

    def _text(self, column: str) -> list[str]:
        """A text column (source, error) as strings, split on first use."""
        if column not in self._texts:
            self._texts[column] = videos.text(self._table[column], len(self._table["id"]))
        return self._texts[column]

    def info(self, video_id: str) -> VideoInfo:
        """Identity and timing of a video (ok or failed)."""
        i, t = self._index(video_id), self._table
        return VideoInfo(video_id=video_id, source=self._text("source")[i], label=int(t["label"][i]),
                         split=SPLITS[t["split"][i]], n_frames=int(t["n_frames"][i]), fps=float(t["fps"][i]),
                         duration=float(t["duration"][i]))

    def label(self, video_id: str) -> int:
        return int(self._labels[self._index(video_id)])

    def split(self, video_id: str) -> str:
        return SPLITS[self._splits[self._index(video_id)]]

    def n_clips(self, video_id: str) -> int:
        """Number of stored clips of an ok video."""
        return int(self._n[self._index(video_id, ok=True)])

    def features(self, video_id: str) -> np.ndarray:
        """Clip descriptors [n_clips, d] in the store's dtype."""
        i = self._index(video_id, ok=True)
        return self._read("features", i, (self.meta.feature_dim,), self.meta.dtype)

    def clips(self, video_id: str) -> dict[str, np.ndarray]:
        """Where each clip is: start_frame [n], start_s [n], end_s [n]."""
        i = self._index(video_id, ok=True)
        times = self._read("times", i, (2,), np.float64)
        return {"start_frame": self._read("start_frame", i, (), np.int64),
                "start_s": times[:, 0].copy(), "end_s": times[:, 1].copy()}

    def logits(self, video_id: str) -> np.ndarray | None:
        """The backbone's own clip logits [n, K], or None if the writer stored none."""
        i = self._index(video_id, ok=True)
        if not self._table["logits"][i]:
            return None
        row_shape = self.parts[self._part[i]].row_shape("logits")
        return self._read("logits", i, row_shape, self.meta.dtype)

    def load(self, split: str | None = None) -> FeatureTable:
        """Every ok video (of one split) in memory, in store order, read straight from disk into one array."""
        if split is not None and split not in SPLITS:
            raise GcfError(f"{self.path}: unknown split {split!r}; use train, val, test, '' or no split filter")
        idx = self._ok if split is None else self._ok[self._splits[self._ok] == SPLITS.index(split)]
        features, offsets = self.gather("features", idx, (self.meta.feature_dim,), self.meta.dtype)
        ids = self._table["id"]
        return FeatureTable(features=features, offsets=offsets,
                            video_ids=list(ids) if len(idx) == len(ids) else [ids[i] for i in idx],
                            labels=self._labels[idx], splits=_SPLIT_NAMES[self._splits[idx]].tolist())

    def gather(self, array: str, idx: np.ndarray, row_shape: tuple, dtype) -> tuple[np.ndarray, np.ndarray]:
        """Rows of `array` for entries idx concatenated, and their offsets [len(idx) + 1]. Neighbouring videos
        stored back to back are read as one run, so a whole store costs one read per chunk."""
        n = self._n[idx]
        offsets = np.zeros(len(idx) + 1, dtype=np.int64)
        np.cumsum(n, out=offsets[1:])
        out = np.empty((int(offsets[-1]), *row_shape), dtype=dtype)
        if len(idx) == 0:
            return out, offsets
        part, row = self._part[idx], self._row[idx]
        breaks = np.ones(len(idx), dtype=bool)
        breaks[1:] = (part[1:] != part[:-1]) | (row[1:] != row[:-1] + n[:-1])
        starts = np.flatnonzero(breaks)
        for s, e in zip(starts, np.append(starts[1:], len(idx))):
            a, b = offsets[s], offsets[e]
            self.parts[part[s]].read(array, int(row[s]), int(b - a), out[a:b])
        return out, offsets

    def check_values(self, batch: int = 4096) -> list[str]:
        """Problems in the stored values: feature rows of the wrong width, NaN/Inf in features or logits.
        Reads `batch` videos at a time, so memory stays bounded."""
        d = self.meta.feature_dim
        problems = [f"{p.path}: feature rows have shape {p.row_shape('features')}, the store says ({d},)"
                    for p in {self.parts[i] for i in self._part[self._ok]} if p.row_shape("features") != (d,)]
        if problems:
            return problems
        bad = []
        try:
            for s in range(0, len(self._ok), batch):
                idx = self._ok[s:s + batch]
                x, offsets = self.gather("features", idx, (d,), self.meta.dtype)
                finite = np.logical_and.reduceat(np.isfinite(x).all(axis=1), offsets[:-1])
                bad += [self._table["id"][i] for i in idx[~finite]]
            bad += [v for v in self.videos if (x := self.logits(v)) is not None and not np.isfinite(x).all()]
        except GcfError as e:
            return [str(e)]
        return [f"video {v}: NaN/Inf values in its features or logits; re-extract it" for v in bad]

    def entries(self, video_ids: list[str]) -> np.ndarray:
        """Internal entry numbers of ok videos, for gather()."""
        return np.asarray([self._index(v, ok=True) for v in video_ids], dtype=np.int64)

    def _read(self, array: str, i: int, row_shape: tuple, dtype) -> np.ndarray:
        out = np.empty((int(self._n[i]), *row_shape), dtype=dtype)
        self.parts[self._part[i]].read(array, int(self._row[i]), len(out), out)
        return out

    def _index(self, video_id: str, ok: bool = False) -> int:
        i = self._pos.get(video_id)
        if i is None:
            raise KeyError(f"video {video_id!r} is not in store {self.path}")
        if ok and self._n[i] == 0:
            raise KeyError(f"video {video_id!r} failed in store {self.path}: {self._text('error')[i]}")
        return i


def open_store(path: str | os.PathLike) -> StoreReader:
    """Open a store for reading (`.zarr` directory or `.h5` file, by suffix)."""
    return StoreReader(path)
