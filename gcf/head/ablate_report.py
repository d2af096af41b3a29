"""What `gcf ablate` writes: results.csv, baselines.csv, summary.md (mean ± std over seeds) and the paper's plots.

Plots follow the paper: Fig. 3 (accuracy vs D, vs fusion layers), Table 2 (modules next to C-Clip and D-Clips)
and accuracy vs clips. Where the grid holds more values than a plot's axis, each point is the configuration
with the best mean validation top-1 (selection never looks at the test split); the plotted value is its test
top-1, mean ± std over seeds.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from gcf.errors import plural

COLUMNS = ("top1", "top5", "mean_class", "val_top1", "val_top5", "val_mean_class", "val_loss", "params", "mflops",
           "best_epoch", "epochs_run", "seconds", "stack", "stopped")
AVERAGED = ("top1", "top5", "mean_class", "val_top1", "val_loss", "seconds")
BASELINES = ("C-Clip", "D-Clips")
AXES = (("dim", "fig3a_dim.png", "head width D"), ("layers", "fig3b_layers.png", "fusion layers n"),
        ("clips", "clips.png", "clips per video C"))
PLOTS = (*(name for _, name, _ in AXES), "table2_modules.png")


def result_row(record: dict) -> dict:
    """A cached run record as the results.csv columns after the grid values and the seed."""
    m, v = record["metrics"], record["val"]
    return {"top1": m["top1"], "top5": m["top5"], "mean_class": m["mean_class"], "val_top1": v["top1"],
            "val_top5": v["top5"], "val_mean_class": v["mean_class"], "val_loss": math.nan if v["loss"] is None else v["loss"],
            "params": record["params"], "mflops": record["mflops"], "best_epoch": record["best_epoch"],
            "epochs_run": record["epochs_run"], "seconds": record["seconds"], "stack": record["stack"],
            "stopped": record["stopped"] or ""}


def write_csv(path: Path, rows: list[dict], columns: list[str]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def summarize(rows: list[dict], keys: list[str]) -> list[dict]:
    """One entry per configuration: its grid values, seeds, means and sample stds over seeds; best test top-1 first."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault(tuple(r[k] for k in keys), []).append(r)
    out = []
    for point, rs in groups.items():
        g = dict(zip(keys, point), seeds=len(rs), params=rs[0]["params"], mflops=rs[0]["mflops"],
                 stopped=sum(bool(r["stopped"]) for r in rs))
        for m in AVERAGED:
            a = np.array([r[m] for r in rs], dtype=float)
            g[m], g[f"{m}_std"] = a.mean(), a.std(ddof=1) if len(a) > 1 else 0.0
        out.append(g)
    return sorted(out, key=lambda g: (-g["top1"], -g["val_top1"]))


def baseline_stats(base: list[dict]) -> dict[str, dict]:
    """C-Clip and D-Clips: mean and sample std over seeds of each accuracy."""
    out = {}
    for name in BASELINES:
        rs = [r for r in base if r["method"] == name]
        if rs:
            out[name] = {"seeds": len(rs)}
            for m in ("top1", "top5", "mean_class"):
                a = np.array([r[m] for r in rs])
                out[name][m], out[name][f"{m}_std"] = a.mean(), a.std(ddof=1) if len(a) > 1 else 0.0
    return out


def pick(groups: list[dict], **fixed) -> dict | None:
    """The configuration matching `fixed` with the best mean validation top-1 (then lowest validation loss; a
    non-finite one last)."""
    match = [g for g in groups if all(g[k] == v for k, v in fixed.items())]
    loss = lambda g: g["val_loss"] if math.isfinite(g["val_loss"]) else math.inf   # noqa: E731
    return max(match, key=lambda g: (g["val_top1"], -loss(g)), default=None)


def pm(g: dict, m: str) -> str:
    """'71.20 ± 0.43' in percent; no ± for one seed."""
    return f"{100 * g[m]:.2f}" + (f" ± {100 * g[f'{m}_std']:.2f}" if g.get("seeds", 1) > 1 else "")


def write_reports(out: Path, grid: dict[str, list], rows: list[dict], base: list[dict], store: str,
                  failed: list[dict] = ()) -> list[str]:
    """Write results.csv, baselines.csv, summary.md and the plots into `out`; return lines to print.

    grid: key -> values (what was asked; rows may hold fewer configurations when runs failed); failed: the
    grid point, seed and error of runs that failed (listed in summary.md, not in the tables)."""
    keys = list(grid)
    write_csv(out / "results.csv", rows, [*keys, "seed", *COLUMNS, "key"])
    write_csv(out / "baselines.csv", base, ["seed", "method", "top1", "top5", "mean_class", "stopped"])
    groups, baselines = summarize(rows, keys), baseline_stats(base)
    heads = list(dict.fromkeys(r["head"] for r in rows)) if "head" in keys else [None]   # in grid order
    drawn, skipped = plot_all(out, grid, groups, baselines, heads)
    for name in set(PLOTS) - set(drawn):   # none is left from an earlier grid
        (out / name).unlink(missing_ok=True)
    clip_stops = {r["seed"]: r["stopped"] for r in base if r.get("stopped")}
    stopped = [r for r in rows if r["stopped"]] + [{"method": "clip classifier (C-Clip, D-Clips)", "seed": s,
                                                    "stopped": why} for s, why in clip_stops.items()]
    grid_keys = [*keys, "method"]
    where = lambda r: ", ".join(r[k] if k == "method" else f"{k}={r[k]}" for k in grid_keys if k in r)  # noqa: E731
    fixed = [k for k in keys if len(grid[k]) == 1]
    common = [f"Same in every configuration: {', '.join(f'{k}={grid[k][0]}' for k in fixed)}.", ""] if fixed else []
    keys = [k for k in keys if k not in fixed]
    head = [*keys, "seeds", "top-1 %", "top-5 %", "mean class %", "val top-1 %", "params", "MFLOPs", "s/run"]
    configs = math.prod(len(v) for v in grid.values())
    finished = plural(len(groups), "configuration") if len(groups) == configs else \
        f"{len(groups)} of {plural(configs, 'configuration')} finished"
    lines = [f"# gcf ablate: {store}", "",
             f"{finished}, {plural(len(rows), 'run')}. Test-split accuracy, mean ± sample std over seeds, "
             "sorted by test top-1. The plots pick configurations by validation top-1.", "", *common,
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for g in groups:
        seeds = f"{g['seeds']}" + (f" ({g['stopped']} stopped early)" if g["stopped"] else "")
        cells = [*(str(g[k]) for k in keys), seeds, pm(g, "top1"), pm(g, "top5"), pm(g, "mean_class"),
                 pm(g, "val_top1"), f"{g['params']:,}", f"{g['mflops']:.2f}", f"{g['seconds']:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "## Baselines (linear clip classifier, or the backbone's own clip logits)", "",
              "| method | seeds | top-1 % | top-5 % | mean class % |", "|---|---|---|---|---|"]
    seeds = lambda b: f"{b['seeds']}" + (f" ({len(clip_stops)} stopped early)" if clip_stops else "")  # noqa: E731
    lines += [f"| {n} | {seeds(b)} | {pm(b, 'top1')} | {pm(b, 'top5')} | {pm(b, 'mean_class')} |"
              for n, b in baselines.items()]
    if stopped:
        lines += ["", "## Stopped early (in the tables with their last good checkpoint)", ""]
        lines += [f"- {where(r)}, seed {r['seed']}: {r['stopped']}" for r in stopped]
    if failed:
        lines += ["", "## Failed (not in the tables; rerun the same command to retry them)", ""]
        lines += [f"- {where(f)}, seed {f['seed']}: {f['error']}" for f in failed]
    lines += ["", "## Plots", ""] + [f"- {p}" for p in drawn] + [f"- not drawn: {s}" for s in skipped]
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    said = []
    if groups:
        best = pick(groups)
        said.append(f"best on validation: {', '.join(f'{k}={best[k]}' for k in keys) or 'the one configuration'}: "
                    f"test top-1 {pm(best, 'top1')}%" + (f" ({best['stopped']} of its runs stopped early)"
                                                          if best["stopped"] else ""))
    said += [f"{n}: test top-1 {pm(b, 'top1')}%" for n, b in baselines.items()]
    said += [f"not drawn: {s}" for s in skipped]
    if stopped:
        said.append(f"{plural(len(stopped), 'run')} stopped early (first: {where(stopped[0])}, seed "
                    f"{stopped[0]['seed']}: {stopped[0]['stopped']}); see summary.md")
    return said


def plot_all(out: Path, grid: dict[str, list], groups: list[dict], baselines: dict,
             heads: list[str | None]) -> tuple[list[str], list[str]]:
    """Draw the plots the grid supports -> (file names drawn, 'file (reason)' skipped). heads: the head names
    of the finished runs (None: no head key), each with one colour in every plot."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    drawn, skipped = [], []
    if not groups:
        return drawn, ["every plot (no finished runs)"]
    color = {**{h: f"C{i}" for i, h in enumerate(heads)}, **{n: f"C{len(heads) + i}" for i, n in enumerate(baselines)}}
    keys = list(grid)
    for key, name, label in AXES:
        xs = sorted({g[key] for g in groups}) if key in keys else []
        if len(xs) < 2:
            asked = len(grid.get(key, []))
            why = (f"fewer than two values of {key} finished" if asked > 1 else
                   f"the grid has {'one value' if asked else 'no values'} of {key}")
            skipped.append(f"{name} ({why})")
            continue
        fig, ax = plt.subplots(figsize=(5, 3.8))
        for h in heads:
            fixed = {} if h is None else {"head": h}
            points = [(x, p) for x in xs if (p := pick(groups, **fixed, **{key: x})) is not None]  # failed: none
            ax.errorbar([x for x, _ in points], [100 * p["top1"] for _, p in points],
                        yerr=[100 * p["top1_std"] for _, p in points], marker="o", capsize=3, label=h or "gcf",
                        color=color[h])
        for n, b in baselines.items():
            ax.axhline(100 * b["top1"], ls="--", color=color[n], label=n)
        if key == "dim":
            ax.set_xscale("log", base=2)
        ax.set_xticks(xs, [str(x) for x in xs])
        ax.set_xlabel(label)
        ax.set_ylabel("test top-1 (%)")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / name, dpi=100)
        plt.close(fig)
        drawn.append(name)
    varied = [k for k in keys if k != "head" and len({g[k] for g in groups}) > 1]
    bars = [(n, n, b["top1"], b["top1_std"]) for n, b in baselines.items()]
    for h in heads:
        p = pick(groups, **({} if h is None else {"head": h}))
        label = "\n".join([h or "gcf", *(f"{k}={p[k]}" for k in varied)])   # the configuration picked
        bars.append((h, label, p["top1"], p["top1_std"]))
    fig, ax = plt.subplots(figsize=(1.2 * len(bars) + 2, 3.8 + 0.25 * len(varied)))
    ax.bar(range(len(bars)), [100 * b[2] for b in bars], yerr=[100 * b[3] for b in bars], capsize=3,
           color=[color[b[0]] for b in bars])
    ax.set_xticks(range(len(bars)), [b[1] for b in bars], fontsize=8)
    ax.set_ylabel("test top-1 (%)")
    lo = min(100 * b[2] for b in bars)
    ax.set_ylim(max(0.0, lo - 10), 100)
    fig.tight_layout()
    fig.savefig(out / "table2_modules.png", dpi=100)
    plt.close(fig)
    drawn.append("table2_modules.png")
    return drawn, skipped
