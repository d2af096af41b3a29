"""Compare heads and training recipes on synthetic feature stores where averaging clips is misled.

    python bench/head_recipes.py [--seeds 3] [--only heads|recipes]

Each seed draws a new synthetic store (gcf.head.synthetic, default SynthConfig: 10 classes, 200 training and
50 test videos per class, d=256) and trains every row with that seed. Rows change one thing at a time from
BASE (AdamW, cosine, D=256), written out here so the table does not depend on the shipped defaults. Prints
test top-1 (mean ± std over seeds), mean per-class accuracy and seconds per run as a markdown table.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import numpy as np
import torch

from gcf.head import HeadConfig, build, register
from gcf.head.synthetic import SynthConfig, synthesize
from gcf.head.train import TrainConfig, clip_baselines, clip_scores, fit_clip_classifiers, recipe, train

BASE = TrainConfig(optimizer="adamw", lr=1e-3, weight_decay=0.05, batch_size=64, epochs=40, schedule="cosine",
                   lam=1e-3, clips=10, select="uniform", train_select="random", standardize=True)
BASE_HEAD = HeadConfig(dim=256)


@register("gcf-linear-w")
def gcf_linear_w(cfg: HeadConfig):
    """The gcf head with W_q, W_k, W_v, W_z purely linear (no bias), to measure what the bias buys."""
    head = build(HeadConfig(**{**cfg.__dict__, "name": "gcf"}))
    for ba in head.fuse:
        for w in (ba.w_q, ba.w_k, ba.w_v, ba.w_z):
            w.bias = None
    return head

HEADS = ["gcf", "gcf-clipgate", "fusion-only", "attention-only", "linear", "max-pool", "attention-pool", "transformer"]

RECIPES = [  # (label, head overrides, train overrides) varied one at a time from BASE_HEAD and BASE
    ("base: AdamW lr 1e-3, wd 0.05, cosine 40 epochs, batch 64, lam 1e-3, D 256", {}, {}),
    ("paper recipe (SGD 0.1, plateau x0.1 three times, batch 128)", {}, dict(
        optimizer="sgd", lr=0.1, momentum=0.9, dampening=0.9, weight_decay=1e-3, batch_size=128, epochs=300,
        schedule="plateau", patience=3, reductions=3)),
    ("paper recipe, no standardisation", {}, dict(
        optimizer="sgd", lr=0.1, momentum=0.9, dampening=0.9, weight_decay=1e-3, batch_size=128, epochs=300,
        schedule="plateau", patience=3, reductions=3, standardize=False)),
    ("no standardisation", {}, {"standardize": False}),
    ("W_q, W_k, W_v, W_z without bias", {"name": "gcf-linear-w"}, {}),
    ("N(v) = count", {"norm": "count"}, {}),
    ("plateau schedule (AdamW)", {}, {"schedule": "plateau", "epochs": 100}),
    ("lr 3e-4", {}, {"lr": 3e-4}),
    ("lr 3e-3", {}, {"lr": 3e-3}),
    ("epochs 20", {}, {"epochs": 20}),
    ("weight decay 0.5", {}, {"weight_decay": 0.5}),
    ("dropout 0.5 on v'", {"dropout": 0.5}, {}),
    ("lam 0", {}, {"lam": 0.0}),
    ("lam 1e-2", {}, {"lam": 1e-2}),
    ("uniform clips in training (no augmentation)", {}, {"train_select": "uniform"}),
    ("D 128", {"dim": 128}, {}),
    ("D 512", {"dim": 512}, {}),
    ("layers 2", {"layers": 2}, {}),
]


def row(label: str, runs: list[dict]) -> str:
    top1 = np.array([r["top1"] for r in runs]) * 100
    mc = np.array([r["mean_class"] for r in runs]) * 100
    secs = np.mean([r.get("seconds", 0.0) for r in runs])
    return f"| {label} | {top1.mean():.1f} ± {top1.std():.1f} | {mc.mean():.1f} | {secs:.1f} |"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--only", choices=["heads", "recipes"])
    args = ap.parse_args()
    torch.set_num_threads(1)
    results: dict[str, list[dict]] = {}

    def run(label: str, head_cfg: HeadConfig, cfg: TrainConfig) -> None:
        t0 = time.perf_counter()
        r = train(data, head_cfg, replace(cfg, seed=seed))
        results.setdefault(label, []).append(dict(r.metrics, seconds=time.perf_counter() - t0))

    for seed in range(args.seeds):
        data = synthesize(replace(SynthConfig(), seed=seed, test_per_class=50)).data(seed)
        t0 = time.perf_counter()
        clf = fit_clip_classifiers(data, [replace(BASE, seed=seed)])[0]
        seconds = time.perf_counter() - t0
        for name, m in clip_baselines(clip_scores(clf, data.table, data.test), data.table, data.test).items():
            results.setdefault(name, []).append(dict(m, seconds=seconds))
        if args.only != "recipes":
            for head in HEADS:
                run(f"head {head}", replace(BASE_HEAD, name=head), BASE)
            run("gcf, shipped defaults (recipe default, HeadConfig())", HeadConfig(), recipe("default"))
        if args.only != "heads":
            for label, head_over, train_over in RECIPES:
                run(f"gcf, {label}", replace(BASE_HEAD, **head_over), replace(BASE, **train_over))
        print(f"seed {seed} done", flush=True)
    print("| configuration | top-1 % | mean class % | s/run |\n| --- | --- | --- | --- |")
    for label, runs in results.items():
        print(row(label, runs))


if __name__ == "__main__":
    main()
