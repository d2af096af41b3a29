"""Whole-store load throughput against np.fromfile on the same bytes (issue 3: must be >= 70%).

Writes a store of variable-length videos with two writers (so the reader joins parts), writes the same feature
bytes to one raw file, warms the page cache, then times --repeat interleaved runs of `open_store(path).load()`
(metadata included) and of `np.fromfile(raw)`. Prints median throughputs and their ratio for each backend.

    python bench/store.py [--mib 256] [--dim 2048] [--repeat 5] [--dir /tmp]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
from gcf.store import StoreMeta, StoreWriter, VideoInfo, open_store

LIMIT = 0.70


def build(path: Path, videos: list[np.ndarray], meta: StoreMeta) -> None:
    """Two writers, each adding half of the videos."""
    for w_id in range(2):
        with StoreWriter(path, meta, writer_id=f"bench{w_id}") as w:
            for i in range(w_id, len(videos), 2):
                x = videos[i]
                n = len(x)
                info = VideoInfo(f"v{i:06d}", f"v{i:06d}.mp4", i % 10, "train", n * 16, 30.0, n * 16 / 30)
                starts = np.arange(n) * 16
                w.add(info, x, starts, np.stack([starts / 30, (starts + 16) / 30], 1))


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mib", type=int, default=256, help="feature bytes in the store")
    ap.add_argument("--dim", type=int, default=2048)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--dir", default=None, help="where to write (default: a temporary folder)")
    args = ap.parse_args()

    rng = np.random.default_rng(0)
    row_bytes = args.dim * 2
    videos, total = [], 0
    while total < args.mib << 20:
        n = int(rng.integers(5, 40))
        videos.append(rng.standard_normal((n, args.dim), dtype=np.float32).astype(np.float16))
        total += n * row_bytes
    meta = StoreMeta(backbone="bench", weights="random", clip_len=16, stride=16, input_size=112,
                     mean=(0.45, 0.45, 0.45), std=(0.225, 0.225, 0.225), feature_dim=args.dim,
                     class_names=tuple(f"c{i}" for i in range(10)))
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        raw = Path(tmp) / "raw.bin"
        order = [videos[i] for w in range(2) for i in range(w, len(videos), 2)]  # store order
        np.concatenate(order).tofile(raw)
        print(f"{len(videos)} videos, {total / 2**20:.0f} MiB of {args.dim}-d float16 features, "
              f"median of {args.repeat} interleaved runs, warm page cache")
        for suffix in (".zarr", ".h5"):
            path = Path(tmp) / f"bench{suffix}"
            build(path, videos, meta)
            table = open_store(path).load()
            assert np.array_equal(table.features, np.fromfile(raw, dtype=np.float16).reshape(-1, args.dim))
            del table
            t_raw, t_load, t_open = [], [], []
            for _ in range(args.repeat):  # interleaved, so both see the same machine load
                t_raw.append(timed(lambda: np.fromfile(raw, dtype=np.float16)))
                t_load.append(timed(lambda: open_store(path).load()))
                t_open.append(timed(lambda: open_store(path)))
            t_raw, t_load, t_open = (float(np.median(t)) for t in (t_raw, t_load, t_open))
            ratio = t_raw / t_load
            print(f"{suffix:5s}  np.fromfile {total / t_raw / 1e9:5.2f} GB/s   open_store().load() "
                  f"{total / t_load / 1e9:5.2f} GB/s (open alone {t_open * 1e3:.1f} ms)   ratio {ratio:.2f} "
                  f"(limit {LIMIT:.2f}: {'PASS' if ratio >= LIMIT else 'FAIL'})")


if __name__ == "__main__":
    main()
