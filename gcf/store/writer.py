"""StoreWriter: the one way videos get into a store (stage one and `gcf store import` both use it).

Each writer owns a new part (files no other process touches), buffers whole videos and commits them in
batches; a committed video survives any crash, an uncommitted one is simply absent and a rerun adds it.
"""

from __future__ import annotations

import os
import re
import socket
import time
import uuid
from pathlib import Path

import numpy as np

from gcf.errors import GcfError
from gcf.store.backend import backend_for, remove_store
from gcf.store.meta import SPLITS, StoreMeta, VideoInfo, check_meta, make_header, meta_from_header, meta_mismatch


class StoreWriter:
    """Adds whole videos to a store, creating it if absent; `meta` must match an existing store's.

    Videos are committed when a chunk of rows fills, when the oldest uncommitted one is `flush_seconds` old,
    on flush() and on close; `chunk_rows` overrides the rows per chunk (Zarr) or per batch file (HDF5).
    """

    def __init__(self, path: str | os.PathLike, meta: StoreMeta, writer_id: str | None = None, *,
                 overwrite: bool = False, flush_seconds: float = 300.0, chunk_rows: int | None = None):
        self.path, self.meta, self.flush_seconds = Path(path), meta, flush_seconds
        self._backend = backend = backend_for(path)
        check_meta(meta, str(path))
        if overwrite:
            remove_store(path)
        if not self.path.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            backend.create(self.path, make_header(meta))
        stored = meta_from_header(backend.read_header(self.path), str(path))
        mismatch = meta_mismatch(stored, meta, str(path))
        if mismatch:
            raise mismatch
        writer_id = re.sub(r"[^A-Za-z0-9_.-]", "_", writer_id or f"{socket.gethostname()}-{os.getpid()}")
        writer_id = writer_id.lstrip(".") or "writer"  # names starting with "." are temporary files
        name = f"{writer_id}-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"
        self._part = backend.PartWriter(self.path, name, meta, chunk_rows)
        self._added: set[str] = set()
        self._oldest: float | None = None
        self._closed = False

    def done(self) -> set[str]:
        """Ids of every video already in the store (ok or failed), from all writers, plus those added here."""
        ids = {vid for part in self._backend.list_parts(self.path) for t in part.tables for vid in t["id"]}
        return ids | self._added

    def add(self, info: VideoInfo, features, start_frames, times, logits=None) -> None:
        """Add one whole video: features [n, d], start_frames [n], times [n, 2] (start, end s), logits [n, K]."""
        self._check_info(info)
        arrays = self._check_arrays(info, features, start_frames, times, logits)
        self._part.add(info, arrays)
        self._added.add(info.video_id)
        self._tick()

    def add_failure(self, info: VideoInfo, error: str) -> None:
        """Record a video that could not be processed, so reruns skip it and `store info` reports it."""
        self._check_info(info)
        self._part.add(info, None, str(error).replace("\0", " ") or "unknown error")
        self._added.add(info.video_id)
        self._tick()

    def flush(self) -> None:
        """Commit every video added so far (costs up to one partly filled chunk of disk space)."""
        self._part.flush(final=True)
        self._oldest = None

    def close(self) -> None:
        """Commit everything and finish this writer's part."""
        if not self._closed:
            self._closed = True
            self._part.close()

    def __enter__(self) -> "StoreWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()  # videos added before an error are complete and valid: keep them

    def _tick(self) -> None:
        now = time.monotonic()
        self._oldest = self._oldest or now
        if self._part.pending_rows >= self._part.flush_rows:
            self._part.flush(final=False)
            self._oldest = now if self._part.pending else None
        elif now - self._oldest >= self.flush_seconds:
            self.flush()

    def _check_info(self, info: VideoInfo) -> None:
        where = f"{info.source or info.video_id} (store {self.path})"
        if not isinstance(info.video_id, str) or not info.video_id or "\0" in info.video_id + info.source:
            raise GcfError(f"{where}: empty video id or a NUL character in the id or source; give every video "
                           f"a non-empty id and a path without NUL")
        if info.split not in SPLITS:
            raise GcfError(f"{where}: unknown split {info.split!r} for video {info.video_id}; "
                           f"use train, val, test or leave it empty")
        if not -1 <= info.label < len(self.meta.class_names):
            raise GcfError(f"{where}: label {info.label} of video {info.video_id} is not a class index "
                           f"(0..{len(self.meta.class_names) - 1}, or -1 for unknown); fix the labels")
        if info.video_id in self._added:
            raise GcfError(f"{where}: video {info.video_id} was already added by this writer; "
                           f"skip the ids in StoreWriter.done()")

    def _check_arrays(self, info: VideoInfo, features, start_frames, times, logits) -> dict:
        where = f"{info.source or info.video_id} (video {info.video_id}, store {self.path})"
        d, dtype = self.meta.feature_dim, self.meta.dtype
        raw = np.asarray(features)
        if raw.ndim != 2 or raw.shape[1] != d or raw.shape[0] < 1:
            raise GcfError(f"{where}: features have shape {list(raw.shape)}, expected [n_clips, {d}] with "
                           f"n_clips >= 1; use the store's backbone (feature_dim {d}) or record a failure")
        n = len(raw)
        feats = _finite(raw, dtype, where, "features")
        starts = np.asarray(start_frames)
        spans = np.asarray(times, dtype=np.float64)
        if starts.shape != (n,) or spans.shape != (n, 2):
            raise GcfError(f"{where}: start_frames {list(starts.shape)} and times {list(spans.shape)} must be "
                           f"[{n}] and [{n}, 2] for {n} clips; pass one start frame and (start, end) per clip")
        _finite(spans, np.float64, where, "clip times")
        arrays = {"features": feats, "start_frame": starts.astype(np.int64), "times": spans, "logits": None}
        if logits is not None:
            raw = np.asarray(logits)
            K = self._part.logits_dim or (raw.shape[1] if raw.ndim == 2 else -1)
            if raw.shape != (n, K):
                raise GcfError(f"{where}: logits have shape {list(raw.shape)}, expected [{n}, {K}] "
                               f"(one row per clip, the same classes for every video of this writer)")
            arrays["logits"] = _finite(raw, dtype, where, "logits")
            self._part.logits_dim = K
        return arrays


def _finite(x: np.ndarray, dtype, where: str, what: str) -> np.ndarray:
    """x cast to dtype, refusing NaN/Inf (also values too large for float16) with a GcfError."""
    with np.errstate(over="ignore"):  # overflow becomes inf, reported below
        y = np.ascontiguousarray(x, dtype=dtype)
    bad = ~np.isfinite(y)
    if bad.any():
        hint = ("values exceed the float16 range: create the store with dtype float32"
                if np.isfinite(np.asarray(x, dtype=np.float64)).all() else "check the decoder, inputs and weights")
        raise GcfError(f"{where}: {int(bad.sum())} NaN/Inf values in {what}; {hint} "
                       f"(nothing was written for this video)")
    return y
