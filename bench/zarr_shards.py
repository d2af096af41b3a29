"""Why each store writer owns its own arrays: two processes writing different chunks of one zarr shard lose data.

Each run creates a [16, 64] array stored as one shard of 16 one-row chunks; two processes write the even and
the odd rows at the same time. zarr 3.1 rewrites the whole shard file for every chunk write (read, modify,
replace) without cross-process locking, so one process's write replaces the shard the other just wrote.
The control gives each process its own array. Prints the rows lost per run for both layouts.

    python bench/zarr_shards.py [--runs 8]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile

import numpy as np
import zarr
from zarr.storage import LocalStore

ROWS = 16


def write_rows(path: str, first: int) -> None:
    """Child process: write rows first, first+2, ... one chunk at a time."""
    a = zarr.open_array(LocalStore(path), mode="r+")
    for i in range(first, ROWS, 2):
        a[i] = np.full(64, i + 1, np.float32)


def lost_rows(paths: list[str]) -> int:
    """Run the two writers at once (one per path, or both on one path) and count rows that did not survive."""
    procs = [subprocess.Popen([sys.executable, __file__, "--child", paths[w % len(paths)], str(w)]) for w in (0, 1)]
    for p in procs:
        p.wait()
    lost = 0
    for w in (0, 1):
        a = zarr.open_array(LocalStore(paths[w % len(paths)]), mode="r")[:]
        lost += sum(bool((a[i] != i + 1).any()) for i in range(w, ROWS, 2))
    return lost


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=8)
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        write_rows(args.child[0], int(args.child[1]))
        return
    shared, separate = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for run in range(args.runs):
            paths = {k: [f"{tmp}/{k}{run}.zarr/{name}" for name in names]
                     for k, names in (("shared", ["a"]), ("separate", ["w0", "w1"]))}
            for p in paths["shared"] + paths["separate"]:
                zarr.create_array(store=LocalStore(p), shape=(ROWS, 64), chunks=(1, 64), shards=(ROWS, 64),
                                  dtype="float32", fill_value=0)
            shared.append(lost_rows(paths["shared"]))
            separate.append(lost_rows(paths["separate"]))
    print(f"zarr {zarr.__version__}: rows lost of {ROWS} per run")
    print(f"  two writers, one shard:       {shared}")
    print(f"  each writer its own array:    {separate}")


if __name__ == "__main__":
    main()
