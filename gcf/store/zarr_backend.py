"""Zarr v3 directory store: one group per writer session under parts/, each with append-only arrays and a commit log.

    STORE.zarr/zarr.json                   root group; attributes["gcf_store"] = header (schema version, meta)
    STORE.zarr/parts/<part>/zarr.json      one group per writer session (its own files: no two writers share one)
    STORE.zarr/parts/<part>/features/      [CAPACITY, d] float16|float32, chunks [R, d]
    STORE.zarr/parts/<part>/start_frame/   [CAPACITY] int64
    STORE.zarr/parts/<part>/times/         [CAPACITY, 2] float64 (start, end seconds)
    STORE.zarr/parts/<part>/logits/        [CAPACITY, K], only when the writer was given logits
    STORE.zarr/parts/<part>/commits.log    commit records (gcf.store.commitlog) of video tables (gcf.store.videos)

Arrays are uncompressed (codec `bytes`, little endian) with chunk keys `c.<i>.0`, so a chunk file holds R rows
as raw C-order bytes; the reader reads them straight into its output. Every chunk is written once and never
rewritten, and a video is committed only after all its rows are on disk (fsync), so a crash at any instant
leaves every video fully present or absent. The declared row count is a fixed capacity: the commit log says
which rows hold data.
"""

from __future__ import annotations

import functools
import json
import math
import os
import shutil
from pathlib import Path

import numpy as np

from gcf.errors import GcfError
from gcf.store import commitlog, videos
from gcf.store.fsutil import disk_size, fsync_path, hidden_tmp, pread_into, remove_tree
from gcf.store.meta import StoreMeta

CAPACITY = 1 << 40      # declared rows per array; only committed rows are meaningful
CHUNK_BYTES = 4 << 20   # at most this many feature bytes per chunk ...
CHUNK_ROWS = 4096       # ... and at most this many rows (clips): bounds what a crash loses, and the space a
                        # writer's last, partly filled chunk takes (chunk files are always full size)
LOG = "commits.log"
ARRAYS = ("features", "start_frame", "times", "logits")
_BYTES_CODEC = [{"name": "bytes", "configuration": {"endian": "little"}}]

FORMAT = "zarr"


def create(path: Path, header: dict) -> None:
    """Create an empty store atomically (built under a hidden name, then renamed); no-op if one appeared meanwhile."""
    import zarr
    from zarr.storage import LocalStore

    tmp = hidden_tmp(path, "creating")
    zarr.create_group(store=LocalStore(tmp), attributes={"gcf_store": header})
    zarr.create_group(store=LocalStore(tmp / "parts"))
    for p in (tmp / "zarr.json", tmp / "parts" / "zarr.json", tmp / "parts", tmp):
        fsync_path(p)
    try:
        os.rename(tmp, path)  # fails if a non-empty directory (a store another writer just made) is there
    except OSError:
        shutil.rmtree(tmp)
        if not path.is_dir():
            raise GcfError(f"{path}: exists and is not a directory; choose another store path") from None
    fsync_path(path.parent)


def read_header(path: Path) -> dict:
    """The header stored in the root group's attributes."""
    try:
        with open(path / "zarr.json") as f:
            return json.load(f)["attributes"]["gcf_store"]
    except (OSError, ValueError, KeyError, TypeError):
        raise GcfError(f"{path}: not a gcf feature store (no readable zarr.json with gcf_store attributes); "
                       f"check the path, or write a new store elsewhere") from None


def size(path: Path) -> int:
    """Bytes on disk."""
    return disk_size(path)


def remove(path: Path) -> None:
    """Delete the store; it vanishes in one rename, so no half-deleted store is ever seen."""
    remove_tree(path)


def list_parts(path: Path) -> list["ZarrPart"]:
    """Every part with at least one committed record, sorted by name."""
    parts = []
    for d in sorted((path / "parts").iterdir()) if (path / "parts").is_dir() else []:
        if d.is_dir() and not d.name.startswith("."):
            records, _, _ = commitlog.read(d / LOG)
            if records:
                parts.append(ZarrPart(d, [videos.decode(r) for r in records]))
    return parts


def check(path: Path) -> tuple[list[str], list[str]]:
    """Structural problems as (damage, notes). Damage: committed rows whose chunks are missing or short.
    Notes: harmless leftovers of killed writers (uncommitted chunks, torn log tails, temporary files)."""
    damage, notes = [], []
    for d in sorted((path / "parts").iterdir()):
        if not d.is_dir() or d.name.startswith("."):
            continue
        records, good, size = commitlog.read(d / LOG)
        if size > good:
            notes.append(f"{d / LOG}: {size - good} bytes after the last commit record (a writer died while "
                         f"committing; those videos are absent and a rerun adds them)")
        if not records:
            notes.append(f"{d}: no committed videos (a writer died before its first commit); safe to delete")
        part = ZarrPart(d, [videos.decode(r) for r in records])
        for name in ARRAYS:
            try:
                needed = part.needed_chunks(name)
                _, _, _, ndim, nbytes = part.layout(name)
            except GcfError as e:
                if part.needed_chunks(name, chunk_rows=1):
                    damage.append(str(e))
                continue
            present = {f.name for f in (d / name).iterdir() if f.name.startswith("c.")}
            for c in sorted(needed):
                f = d / name / _chunk_key(c, ndim)
                if f.name not in present or f.stat().st_size != nbytes:
                    damage.append(f"{f}: chunk of committed videos is missing or truncated")
            extra = {f for f in present if not f.endswith(".partial")} - {_chunk_key(c, ndim) for c in needed}
            if extra:
                notes.append(f"{d / name}: {len(extra)} chunk(s) hold only uncommitted rows (a writer died "
                             f"before committing them)")
        for f in d.rglob("*.partial"):
            notes.append(f"{f}: temporary file of an interrupted chunk write; safe to delete")
    return damage, notes


def _chunk_key(c: int, ndim: int) -> str:
    """File name of row-chunk c of an array with `ndim` dimensions (chunks span whole rows)."""
    return f"c.{c}" + ".0" * (ndim - 1)


class ZarrPart:
    """One writer session's committed videos and a reader for its per-clip arrays."""

    def __init__(self, path: Path, tables: list[dict]):
        self.path = path
        self.name = path.name
        self.tables = tables  # one video table per commit record
        self._layouts: dict[str, tuple] = {}

    @functools.cached_property
    def videos(self) -> dict:
        """All committed videos of this part as one table."""
        return videos.concat(self.tables)

    def layout(self, array: str) -> tuple:
        """(dtype, row shape, chunk rows, ndim, chunk bytes), checked against the format gcf writes."""
        if array not in self._layouts:
            f = self.path / array / "zarr.json"
            try:
                m = json.loads(f.read_text())
                shape, chunks = m["shape"], m["chunk_grid"]["configuration"]["chunk_shape"]
                ok = (m["codecs"] == _BYTES_CODEC and m["chunk_key_encoding"]["configuration"]["separator"] == "."
                      and shape[1:] == chunks[1:])
            except (OSError, ValueError, KeyError, TypeError):
                ok = False
            if not ok:
                raise GcfError(f"{f}: missing or not the array layout gcf writes; run `gcf store verify` "
                               f"and re-extract the affected videos")
            dtype, row_shape = np.dtype(m["data_type"]).newbyteorder("<"), tuple(shape[1:])
            nbytes = chunks[0] * dtype.itemsize * math.prod(row_shape)
            self._layouts[array] = (dtype, row_shape, chunks[0], len(shape), nbytes)
        return self._layouts[array]

    def needed_chunks(self, array: str, chunk_rows: int | None = None) -> set[int]:
        """Chunk indices that hold committed rows of `array`."""
        R = chunk_rows or self.layout(array)[2]
        rows, counts = self.videos["row"], self.videos["n"]
        used = (counts > 0) & (self.videos["logits"] if array == "logits" else True)
        return {c for r, n in zip(rows[used].tolist(), counts[used].tolist())
                for c in range(r // R, (r + n - 1) // R + 1)}

    def row_shape(self, array: str) -> tuple:
        """Shape of one row of `array` (features: (d,), times: (2,), logits: (K,))."""
        return self.layout(array)[1]

    def read(self, array: str, row: int, n: int, out: np.ndarray) -> None:
        """Read rows [row, row+n) of `array` straight into the C-contiguous `out` (n rows)."""
        _, _, R, ndim, _ = self.layout(array)
        buf = memoryview(out).cast("B")
        row_bytes = len(buf) // n
        folder = os.path.join(self.path, array)
        for c in range(row // R, (row + n - 1) // R + 1):
            lo, hi = max(row, c * R), min(row + n, (c + 1) * R)
            f = os.path.join(folder, _chunk_key(c, ndim))
            try:
                fd = os.open(f, os.O_RDONLY)
            except FileNotFoundError:
                raise GcfError(f"{f}: chunk of committed videos is missing; run `gcf store verify`") from None
            try:
                want = (hi - lo) * row_bytes
                got = pread_into(fd, buf[(lo - row) * row_bytes:(hi - row) * row_bytes], (lo - c * R) * row_bytes)
            finally:
                os.close(fd)
            if got != want:
                raise GcfError(f"{f}: chunk is truncated; run `gcf store verify`")


class ZarrPartWriter:
    """Appends videos to one new part. Rows are buffered and written chunk by chunk; a commit record follows
    once every row of its videos is durable. A chunk is never rewritten: after a partial chunk is flushed,
    the next video starts at the next chunk boundary."""

    def __init__(self, store: Path, name: str, meta: StoreMeta, chunk_rows: int | None = None):
        self.store, self.path, self.meta = store, store / "parts" / name, meta
        itemsize = np.dtype(meta.dtype).itemsize
        self.chunk_rows = chunk_rows or max(1, min(CHUNK_ROWS, CHUNK_BYTES // (meta.feature_dim * itemsize)))
        self.flush_rows = self.chunk_rows
        self.pending: list[tuple] = []   # (info, row, n, arrays or None, error)
        self.pending_rows = 0
        self.next_row = 0                # row of the next added video
        self.written = 0                 # rows below this are on disk
        self.logits_dim: int | None = None
        self._arrays: dict = {}
        self._log_fd: int | None = None

    def add(self, info, arrays: dict | None, error: str = "") -> None:
        """Buffer one video (arrays: features, start_frame, times, logits or None) or one failure (arrays None)."""
        n = 0 if arrays is None else len(arrays["features"])
        self.pending.append((info, self.next_row, n, arrays, error))
        self.next_row += n
        self.pending_rows += n

    def flush(self, final: bool) -> None:
        """Write whole chunks (all rows if final) and commit the videos they complete."""
        R = self.chunk_rows
        end = self.next_row if final else self.next_row // R * R
        if end > self.written:
            self._write(self.written, self._rows(self.written, end))
            self.written = end
        done = [p for p in self.pending if p[2] == 0 or p[1] + p[2] <= end]
        if done:
            table = videos.empty()
            for info, row, n, arrays, error in done:
                videos.append(table, info, row, n, arrays is not None and arrays["logits"] is not None, error)
            commitlog.append(self._log(), videos.encode(table))
            self.pending = [p for p in self.pending if not (p[2] == 0 or p[1] + p[2] <= end)]
            self.pending_rows = sum(p[2] for p in self.pending)
        if final:  # the last chunk may be partial: never write into it again
            self.next_row = self.written = -(-self.written // R) * R

    def close(self) -> None:
        """Commit everything buffered and release the log."""
        self.flush(final=True)
        if self._log_fd is not None:
            os.close(self._log_fd)
            self._log_fd = None

    def _rows(self, lo: int, hi: int) -> dict[str, np.ndarray]:
        """Per-array blocks holding rows [lo, hi) of the buffered videos (logits: zeros for videos without)."""
        cols: dict[str, list] = {"features": [], "start_frame": [], "times": [], "logits": []}
        any_logits = False
        for _, row, n, arrays, _ in self.pending:
            a, b = max(row, lo), min(row + n, hi)
            if a >= b:
                continue
            s = slice(a - row, b - row)
            for k in ("features", "start_frame", "times"):
                cols[k].append(arrays[k][s])
            logits = arrays["logits"]
            any_logits |= logits is not None
            cols["logits"].append(logits[s] if logits is not None else None)
        blocks = {k: np.concatenate(cols[k]) for k in ("features", "start_frame", "times")}
        if any_logits:
            K = self.logits_dim
            blocks["logits"] = np.concatenate([x if x is not None else np.zeros((len(f), K), self.meta.dtype)
                                               for x, f in zip(cols["logits"], cols["features"])])
        return blocks

    def _write(self, lo: int, blocks: dict[str, np.ndarray]) -> None:
        for name, block in blocks.items():
            self._array(name, block.shape[1:], block.dtype)[lo:lo + len(block)] = block
        R = self.chunk_rows
        for name, block in blocks.items():
            for c in range(lo // R, (lo + len(block) - 1) // R + 1):
                fsync_path(self.path / name / _chunk_key(c, block.ndim))
            fsync_path(self.path / name)

    def _array(self, name: str, row_shape: tuple, dtype: np.dtype):
        """The part's array `name`, created (and made durable) on first use."""
        if name not in self._arrays:
            import zarr
            from zarr.storage import LocalStore

            self._arrays[name] = zarr.create_array(
                store=LocalStore(self.path), name=name, shape=(CAPACITY, *row_shape),
                chunks=(self.chunk_rows, *row_shape), dtype=dtype, compressors=None, filters=None, fill_value=0,
                chunk_key_encoding={"name": "default", "separator": "."},
                dimension_names=("row", *(f"dim{i}" for i in range(len(row_shape)))),
                config={"write_empty_chunks": True})
            for p in (self.path / name / "zarr.json", self.path / name, self.path / "zarr.json", self.path,
                      self.path.parent):
                fsync_path(p)
        return self._arrays[name]

    def _log(self) -> int:
        if self._log_fd is None:
            self.path.mkdir(parents=True, exist_ok=True)
            self._log_fd = os.open(self.path / LOG, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            fsync_path(self.path)
            fsync_path(self.path.parent)
        return self._log_fd


PartWriter = ZarrPartWriter
