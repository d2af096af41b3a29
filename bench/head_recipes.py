"""Compare heads and training recipes on synthetic feature stores where averaging clips is misled.

    python bench/head_recipes.py [--seeds 3] [--only heads|recipes]

Each seed draws a new synthetic store (gcf.head.synthetic, default SynthConfig) and trains every row with that
seed; prints test top-1 (mean ± std over seeds), mean per-class accuracy and seconds per run as a markdown table.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import numpy as np
import torch

from gcf.head import HeadConfig
from gcf.head.synthetic import SynthConfig, synthesize
from gcf.head.train import clip_baselines, clip_scores, fit_clip_classifier, recipe, train

HEADS = ["gcf", "gcf-clipgate", "fusion-only", "attention-only", "linear", "max-pool", "attention-pool", "transformer"]

RECIPES = [  # (label, head overrides, train overrides) varied one at a time from the default
    ("default", {}, {}),
    ("paper recipe (SGD 0.1, plateau x0.1 three times)", {}, {"recipe": "paper"}),
    ("paper recipe, no standardisation", {}, {"recipe": "paper", "standardize": False}),
    ("no standardisation", {}, {"standardize": False}),
    ("N(v) = count", {"norm": "count"}, {}),
    ("N(v) = count, lr 1e-4", {"norm": "count"}, {"lr": 1e-4}),
    ("plateau schedule", {}, {"schedule": "plateau", "epochs": 100}),
    ("lr 3e-4", {}, {"lr": 3e-4}),
    ("lr 3e-3", {}, {"lr": 3e-3}),
    ("epochs 15", {}, {"epochs": 15}),
    ("epochs 60", {}, {"epochs": 60}),
    ("weight decay 0", {}, {"weight_decay": 0.0}),
    ("dropout 0.5", {"dropout": 0.5}, {}),
    ("lam 0", {}, {"lam": 0.0}),
    ("lam 1e-2", {}, {"lam": 1e-2}),
    ("no random clip selection", {}, {"train_select": "uniform"}),
    ("D 128", {"dim": 128}, {}),
    ("D 1024", {"dim": 1024}, {}),
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

    def run(label: str, head_cfg: HeadConfig, name: str, **overrides) -> None:
        t0 = time.perf_counter()
        r = train(data, head_cfg, recipe(name, seed=seed, **overrides))
        results.setdefault(label, []).append(dict(r.metrics, seconds=time.perf_counter() - t0))

    for seed in range(args.seeds):
        data = synthesize(replace(SynthConfig(), seed=seed, test_per_class=50)).data(seed)
        t0 = time.perf_counter()
        clf = fit_clip_classifier(data, recipe(seed=seed))
        seconds = time.perf_counter() - t0
        for name, m in clip_baselines(clip_scores(clf, data.table, data.test), data.table, data.test).items():
            results.setdefault(name, []).append(dict(m, seconds=seconds))
        if args.only != "recipes":
            for head in HEADS:
                run(f"head {head}", HeadConfig(name=head), "default")
        if args.only != "heads":
            for label, head_over, train_over in RECIPES:
                train_over = dict(train_over)
                run(f"gcf, {label}", HeadConfig(**head_over), train_over.pop("recipe", "default"), **train_over)
        print(f"seed {seed} done", flush=True)
    print("| configuration | top-1 % | mean class % | s/run |\n| --- | --- | --- | --- |")
    for label, runs in results.items():
        print(row(label, runs))


if __name__ == "__main__":
    main()
