"""A writer process for the crash and concurrency tests: adds videos lo..hi-1 to a store, printing progress.

    python tests/store_child.py STORE LO HI WRITER_ID CHUNK_ROWS
Video i has 1 + i % 5 clips whose features are a pure function of i (store_child.video(i)), so a test can
check every stored value; every 7th video is recorded as a failure.

STORE_CHILD_DIE=commit:K makes the process kill itself just before its K-th commit record (its rows are already
durable), STORE_CHILD_DIE=torn:K after writing half of the K-th record: two exact crash instants.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from gcf.store import StoreMeta, StoreWriter, VideoInfo, commitlog  # noqa: E402

DIM = 6
META = StoreMeta(backbone="tiny", weights="random", clip_len=16, stride=16, input_size=112,
                 mean=(0.45, 0.45, 0.45), std=(0.225, 0.225, 0.225), feature_dim=DIM, class_names=("a", "b", "c"))


def video(i: int) -> tuple[VideoInfo, np.ndarray | None]:
    """Video i's info and features (None: it fails)."""
    n = 1 + i % 5
    info = VideoInfo(f"v{i:04d}", f"/videos/v{i:04d}.mp4", i % 3, ("train", "val", "test")[i % 3], n * 16, 25.0,
                     n * 16 / 25.0)
    if i % 7 == 6:
        return info, None
    return info, np.random.default_rng(i).standard_normal((n, DIM)).astype(np.float16)


def die_at_commit(how: str, k: int) -> None:
    """Replace commitlog.append so that the process is SIGKILLed at its k-th commit."""
    append, calls = commitlog.append, [0]

    def dying_append(fd: int, record: dict) -> None:
        calls[0] += 1
        if calls[0] == k:
            if how == "torn":
                line = commitlog.encode(record)
                os.write(fd, line[:len(line) // 2])
            os.kill(os.getpid(), signal.SIGKILL)
        append(fd, record)

    commitlog.append = dying_append


def main() -> None:
    if os.environ.get("STORE_CHILD_DIE"):
        how, k = os.environ["STORE_CHILD_DIE"].split(":")
        die_at_commit(how, int(k))
    store, lo, hi, writer_id, chunk_rows = sys.argv[1], *map(int, sys.argv[2:4]), sys.argv[4], int(sys.argv[5])
    with StoreWriter(store, META, writer_id=writer_id, chunk_rows=chunk_rows) as w:
        done = w.done()
        print(f"skipped {sum(f'v{i:04d}' in done for i in range(lo, hi))}", flush=True)
        for i in range(lo, hi):
            info, x = video(i)
            if info.video_id in done:
                continue
            if x is None:
                w.add_failure(info, f"cannot decode {info.source}")
            else:
                starts = np.arange(len(x)) * 16
                w.add(info, x, starts, np.stack([starts / 25.0, (starts + 16) / 25.0], 1), x[:, :3] * 2)
            print(f"added {i}", flush=True)
    print("closed", flush=True)


if __name__ == "__main__":
    main()
