"""HDF5 store: a header file plus immutable part files, each written whole under a hidden name and then renamed.

    STORE.h5                        attrs["gcf_store"] = header JSON; written once, never modified
    STORE.h5.parts/<part>-<seq>.h5  one batch of whole videos per flush (the rename is its commit)
    STORE.h5.parts/<part>.h5        a writer's batches merged when it closes; `merged` lists them (JSON)

Each part file holds features [n, d], start_frame [n], times [n, 2], optional logits [n, K] and the video table
(`videos`: uint8, the binary form of gcf.store.videos). HDF5 has no concurrent writers and a file modified
in place can be left corrupt by a crash, so no file is ever modified: writers only add new files, and the
reader joins them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np

from gcf.errors import GcfError
from gcf.store import videos
from gcf.store.fsutil import disk_size, fsync_path, hidden_tmp, remove_tree

BATCH_BYTES = 64 << 20  # feature bytes per batch file: also the most a crash can lose per writer
ARRAYS = ("features", "start_frame", "times", "logits")
FORMAT = "hdf5"


def parts_dir(path: Path) -> Path:
    """The folder of part files next to the header file: STORE.h5.parts."""
    return path.with_name(path.name + ".parts")


def create(path: Path, header: dict) -> None:
    """Create the header file atomically (link fails if another writer made it first) and the parts folder."""
    tmp = hidden_tmp(path, "creating")
    with h5py.File(tmp, "w") as f:
        f.attrs["gcf_store"] = json.dumps(header)
    fsync_path(tmp)
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        os.unlink(tmp)
    parts_dir(path).mkdir(exist_ok=True)
    fsync_path(path.parent)


def read_header(path: Path) -> dict:
    """The header stored in the header file's attributes."""
    try:
        with h5py.File(path, "r", locking=False) as f:
            return json.loads(f.attrs["gcf_store"])
    except (OSError, ValueError, KeyError):
        raise GcfError(f"{path}: not a gcf feature store (no readable gcf_store attribute); check the path, "
                       f"or write a new store elsewhere") from None


def size(path: Path) -> int:
    """Bytes on disk: the header file and every part file."""
    return disk_size(path) + (disk_size(parts_dir(path)) if parts_dir(path).is_dir() else 0)


def remove(path: Path) -> None:
    """Delete the parts folder first, then the header: any moment in between is a valid (smaller) store."""
    if parts_dir(path).is_dir():
        remove_tree(parts_dir(path))
    path.unlink()
    fsync_path(path.parent)


def _scan(path: Path) -> tuple[list["H5Part"], set[str]]:
    """(committed parts not superseded by a merged file, sorted by name; names of superseded batch files)."""
    for attempt in range(3):
        try:
            parts = [H5Part(f) for f in sorted(parts_dir(path).glob("*.h5")) if not f.name.startswith(".")]
            break
        except FileNotFoundError:  # a writer merged and deleted its batches while we listed: look again
            if attempt == 2:
                raise
    merged = {name for p in parts for name in p.merged}
    return [p for p in parts if p.name not in merged], merged


def list_parts(path: Path) -> list["H5Part"]:
    """Every committed part file, sorted by name."""
    return _scan(path)[0]


def check(path: Path) -> tuple[list[str], list[str]]:
    """Structural problems as (damage, notes): unreadable part files; leftovers of killed writers."""
    damage, notes = [], []
    merged: set[str] = set()
    for f in sorted(parts_dir(path).glob("*.h5")):
        if not f.name.startswith("."):
            try:
                merged.update(H5Part(f).merged)
            except (OSError, KeyError, ValueError) as e:
                damage.append(f"{f}: unreadable part file ({e})")
    for f in sorted(parts_dir(path).iterdir()):
        if f.name in merged:
            notes.append(f"{f}: batch already merged into another part (writer died while cleaning up); "
                         f"ignored, safe to delete")
        elif f.name.startswith("."):
            notes.append(f"{f}: temporary file of an unfinished batch (a writer died or is writing); "
                         f"ignored, safe to delete when no writer runs")
    return damage, notes


class H5Part:
    """One committed part file: its video table and a reader for its per-clip arrays."""

    def __init__(self, path: Path):
        self.path = path
        self.name = path.name
        with h5py.File(path, "r", locking=False) as f:
            self.videos = videos.decode(f["videos"][:].tobytes())
            self.tables = [self.videos]
            self.merged = json.loads(f["merged"][:].tobytes()) if "merged" in f else []
        self._file = None

    def row_shape(self, array: str) -> tuple:
        """Shape of one row of `array` (features: (d,), times: (2,), logits: (K,))."""
        return self._h5()[array].shape[1:]

    def read(self, array: str, row: int, n: int, out: np.ndarray) -> None:
        """Read rows [row, row+n) of `array` into `out`."""
        self._h5()[array].read_direct(out, np.s_[row:row + n])

    def _h5(self) -> h5py.File:
        if self._file is None:
            try:
                self._file = h5py.File(self.path, "r", locking=False)
            except FileNotFoundError:
                raise GcfError(f"{self.path}: part file vanished (its writer merged it while this reader was "
                               f"open); open the store again") from None
        return self._file

    def __getstate__(self) -> dict:  # open files do not travel to DataLoader workers
        return {**self.__dict__, "_file": None}


class H5PartWriter:
    """Buffers whole videos and writes each batch as a new part file; on close merges its batches into one."""

    def __init__(self, store: Path, name: str, meta, chunk_rows: int | None = None):
        self.dir, self.name, self.meta = parts_dir(store), name, meta
        itemsize = np.dtype(meta.dtype).itemsize
        self.flush_rows = chunk_rows or max(1, BATCH_BYTES // (meta.feature_dim * itemsize))
        self.pending: list[tuple] = []   # (info, arrays or None, error)
        self.pending_rows = 0
        self.logits_dim: int | None = None
        self.batches: list[Path] = []
        _remove_merged_leftovers(store)

    def add(self, info, arrays: dict | None, error: str = "") -> None:
        """Buffer one video (arrays: features, start_frame, times, logits or None) or one failure (arrays None)."""
        self.pending.append((info, arrays, error))
        self.pending_rows += 0 if arrays is None else len(arrays["features"])

    def flush(self, final: bool) -> None:
        """Write every buffered video as one new batch file (`final` makes no difference: batches are whole)."""
        if not self.pending:
            return
        table, blocks, row = videos.empty(), {k: [] for k in ARRAYS}, 0
        any_logits = any(a is not None and a["logits"] is not None for _, a, _ in self.pending)
        for info, arrays, error in self.pending:
            n = 0 if arrays is None else len(arrays["features"])
            videos.append(table, info, row, n, arrays is not None and arrays["logits"] is not None, error)
            if n:
                for k in ("features", "start_frame", "times"):
                    blocks[k].append(arrays[k])
                if any_logits:
                    x = arrays["logits"]
                    blocks["logits"].append(x if x is not None else np.zeros((n, self.logits_dim), self.meta.dtype))
            row += n
        data = {k: np.concatenate(v) for k, v in blocks.items() if v}

        def fill(f: h5py.File) -> None:
            for k, x in data.items():
                f.create_dataset(k, data=x)
            _write_table(f, table)

        path = self.dir / f"{self.name}-{len(self.batches) + 1:06d}.h5"
        _commit_file(path, fill)
        self.batches.append(path)
        self.pending, self.pending_rows = [], 0

    def close(self) -> None:
        """Write what is buffered, then merge this writer's batches into one file and delete them."""
        self.flush(final=True)
        if len(self.batches) > 1:
            _commit_file(self.dir / f"{self.name}.h5", self._merge)
            for b in self.batches:
                b.unlink()
            fsync_path(self.dir)
            self.batches = []

    def _merge(self, out: h5py.File) -> None:
        """Fill `out` with all batches, one batch in memory at a time."""
        parts = [H5Part(b) for b in self.batches]
        counts = [int(p.videos["n"].sum()) for p in parts]
        starts = np.concatenate([[0], np.cumsum(counts)])
        _write_table(out, videos.concat([{**p.videos, "row": p.videos["row"] + s} for p, s in zip(parts, starts)]))
        out.create_dataset("merged", data=_bytes(json.dumps([b.name for b in self.batches]).encode()))
        for p, start, n in zip(parts, starts, counts):
            with h5py.File(p.path, "r", locking=False) as f:
                for k in ARRAYS:
                    if k in f:
                        if k not in out:  # rows of batches without logits keep the fill value 0
                            out.create_dataset(k, shape=(int(starts[-1]), *f[k].shape[1:]), dtype=f[k].dtype)
                        out[k][start:start + n] = f[k][:]


def _commit_file(path: Path, fill) -> None:
    """Write a complete part file under a hidden name (fill(h5py.File) writes its content), make it durable,
    then rename it into place: the rename is the commit."""
    tmp = hidden_tmp(path, "writing")
    with h5py.File(tmp, "w") as f:
        fill(f)
    fsync_path(tmp)
    os.rename(tmp, path)
    fsync_path(path.parent)


def _write_table(f: h5py.File, table: dict) -> None:
    """The video table, in the binary form of gcf.store.videos, as the uint8 dataset `videos`."""
    f.create_dataset("videos", data=_bytes(videos.encode(table)))


def _bytes(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, dtype=np.uint8)


def _remove_merged_leftovers(store: Path) -> None:
    """Delete batch files that a merged part already holds (left when a writer died while cleaning up)."""
    d = parts_dir(store)
    for name in _scan(store)[1] if d.is_dir() else ():
        (d / name).unlink(missing_ok=True)


PartWriter = H5PartWriter
