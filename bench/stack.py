"""Stacked training: K heads of one shape trained together as one Stack (torch.func.vmap) against one head.

    python bench/stack.py [--heads 1,2,4,8,16] [--seeds 1] [--head gcf] [--in-dim 256] [--dim 64] [--layers 1]
                          [--videos 2000] [--epochs 3] [--device cpu] [--threads 1]

For every K, `train_stack` trains K heads (lambda and lr vary; seeds cycle through --seeds, and heads of one
seed share their batches, as a grid point's seeds do) for E epochs, validation and testing included. The
limit it is measured against is one head trained alone by `train` (a stack of one, which runs the head
itself) in the same run: the speed-up is K x (seconds of one head) / (seconds of the stack of K), i.e. how
many times faster K configurations train stacked than one after another. Each time is the best of two.
On a GPU the default K range goes up to 128.
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from gcf.head import HeadConfig
from gcf.head.synthetic import SynthConfig, synthesize
from gcf.head.train import recipe, train, train_stack


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--heads", help="stack sizes K, comma-separated [1,2,4,8,16; on cuda up to 128]")
    ap.add_argument("--seeds", type=int, default=1, help="distinct seeds (batch streams) in a stack")
    ap.add_argument("--head", default="gcf")
    ap.add_argument("--in-dim", type=int, default=256, help="descriptor width d")
    ap.add_argument("--dim", type=int, default=64, help="head width D")
    ap.add_argument("--layers", type=int, default=1)
    ap.add_argument("--videos", type=int, default=2000, help="training videos")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (CPU)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    sizes = [int(k) for k in (args.heads or ("1,8,32,64,128" if args.device.startswith("cuda") else
                                             "1,2,4,8,16")).split(",")]
    classes = 10
    data = synthesize(SynthConfig(classes=classes, train_per_class=args.videos // classes, test_per_class=20,
                                  dim=args.in_dim)).data()
    head = HeadConfig(name=args.head, dim=args.dim, layers=args.layers)
    cfg = recipe(epochs=args.epochs)
    print(f"{len(data.train)} train / {len(data.val)} val / {len(data.test)} test videos, d={args.in_dim}; "
          f"head {args.head} D={args.dim} n={args.layers}; {args.epochs} epochs, batch {cfg.batch_size}; "
          f"{args.device}, {torch.get_num_threads()} torch threads; load average %.2f %.2f %.2f" % os.getloadavg())
    train(data, head, cfg, device=args.device)                      # warm-up (allocator, kernels, CUDA context)
    alone = min(timed(lambda: train(data, head, cfg, device=args.device)) for _ in range(2))
    print(f"limit: one head alone (train): {alone:.2f} s, {args.epochs / alone:.2f} head-epochs/s")
    for k in sizes:
        cfgs = [recipe(epochs=args.epochs, seed=i % args.seeds, lam=(0.0, 1e-3)[i % 2], lr=(1e-3, 3e-3)[i // 2 % 2])
                for i in range(k)]
        t = min(timed(lambda: train_stack(data, head, cfgs, device=args.device)) for _ in range(2))
        print(f"  K={k:4d}: {t:7.2f} s, {k * args.epochs / t:8.2f} head-epochs/s, "
              f"{k * alone / t:6.2f}x one head at a time")


if __name__ == "__main__":
    main()
