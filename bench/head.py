"""Is head training compute-bound? Videos/s through the real data path vs from tensors already in memory.

    python bench/head.py [--videos 2000] [--in-dim 2048] [--dim 256] [--rounds 3] [--batch 64] [--threads N]

Writes a synthetic store (d-dim float16 descriptors, 8-24 clips per video) to a temporary .zarr, loads it with
gcf.store (the path `gcf train-head` takes), then alternates training epochs of the default GCF head fed
  store:  batches gathered per step from the loaded FeatureTable (gcf.head.train.batches: random clips,
          one torch gather, standardise), exactly what `gcf train-head` does
  memory: the same kind of batches gathered and standardised once beforehand, sliced from one tensor
and prints videos/s of both (target: store/memory >= 0.9), the training FLOP/s (torch's flop counter on one
step) and the machine's matmul FLOP/s measured in the same run.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from gcf.head import HeadConfig, build
from gcf.head.complexity import count_flops
from gcf.head.data import Standardizer, load_store
from gcf.head.synthetic import SynthConfig, synthesize, write_store
from gcf.head.stack import Stack, StackOptimizer
from gcf.head.train import batches, fit_epoch, objective, recipe
from gcf.store import select_clips


def matmul_flops(n: int = 2048, reps: int = 10) -> float:
    """Best FLOP/s of an n x n float32 matmul on this machine."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(reps))
    return 2 * n ** 3 / best


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, default=2000, help="training videos in the store")
    ap.add_argument("--in-dim", type=int, default=2048)
    ap.add_argument("--dim", type=int, default=HeadConfig.dim)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3, help="epochs per path, alternating")
    ap.add_argument("--threads", type=int, help="torch threads [torch's default]")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    classes = 20
    synth = synthesize(SynthConfig(classes=classes, train_per_class=args.videos // classes, test_per_class=2,
                                   dim=args.in_dim))
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "bench.zarr")
        t0 = time.perf_counter()
        write_store(path, synth)
        write_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        data, _, _ = load_store(path)
        load_s = time.perf_counter() - t0
    t = data.table
    print(f"store: {len(t.labels)} videos, {t.features.shape[0]} clips x {t.features.shape[1]} "
          f"{t.features.dtype}; written in {write_s:.1f}s, loaded in {load_s:.2f}s; torch threads "
          f"{torch.get_num_threads()}")

    cfg = recipe(batch_size=args.batch)
    head_cfg = HeadConfig(in_dim=t.features.shape[1], num_classes=classes, clips=cfg.clips, dim=args.dim)
    std = Standardizer.fit(t, data.train)
    rng = np.random.default_rng(0)
    x, mask = select_clips(t, data.train, cfg.clips, "random", rng)
    memory = (std(x), torch.from_numpy(mask), torch.from_numpy(t.labels[data.train]))

    def from_memory():
        order = torch.from_numpy(rng.permutation(len(data.train)))
        for i in range(0, len(order), cfg.batch_size):
            j = order[i:i + cfg.batch_size]
            yield memory[0][j], memory[1][j], memory[2][j]

    def from_store():
        return batches(t, rng.permutation(data.train), cfg, std, cfg.train_select, rng)

    torch.manual_seed(0)
    head = Stack([build(head_cfg)])                                  # what `gcf train-head` trains: a stack of one
    opt, lam = StackOptimizer(head, [cfg]), torch.tensor([cfg.lam])
    fit_epoch(head, opt, from_memory(), lam)                         # warm-up
    seconds = {"store": 0.0, "memory": 0.0}
    for _ in range(args.rounds):
        for name, source in (("store", from_store), ("memory", from_memory)):
            seconds[name] += _timed(lambda: fit_epoch(head, opt, source(), lam))
    rate = {k: args.rounds * len(data.train) / s for k, s in seconds.items()}

    xb, mb, yb = next(from_memory())
    step_flops = count_flops(lambda: objective(head(xb, mb), yb, lam).sum().backward()) / len(yb)
    peak = matmul_flops()
    print(f"head gcf d={head_cfg.in_dim} D={head_cfg.dim} C={cfg.clips} batch {cfg.batch_size}: "
          f"{step_flops / 1e6:.1f} MFLOPs per training video (forward + backward)")
    for name in ("memory", "store"):
        achieved = rate[name] * step_flops
        print(f"  {name:6s}: {rate[name]:8.1f} videos/s, {achieved / 1e9:6.2f} GFLOP/s "
              f"= {achieved / peak:.2f} of matmul")
    print(f"matmul {2048}x{2048} float32: {peak / 1e9:.1f} GFLOP/s")
    ratio = rate["store"] / rate["memory"]
    print(f"store / memory videos/s: {ratio:.3f} (target >= 0.9: {'ok' if ratio >= 0.9 else 'MISSED'})")


if __name__ == "__main__":
    main()
