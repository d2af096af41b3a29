"""Benchmark `gcf ablate`: a 24-configuration grid on a synthetic store on disk, end to end, against
(a) a loop of 24 `gcf train-head` processes on the same store and (b) the same grid trained one
configuration after another in one process (`gcf ablate --jobs 1 --threads 1 --stack 1`); (c), the grid
stacked in one process (`--jobs 1 --threads 1`), shows what stacking alone gives.

    python bench/ablate.py [--epochs 40] [--jobs N] [--skip-naive] [--device cuda]

Targets on the 2-core CPU: >= 2x (a) and >= 1.6x (b); on a GPU >= 10x (a). The machine is shared, so the script
first measures the limit for (b): how many times more matmul work J concurrent one-thread processes get done
than one process (2.0 on two idle cores; less while other jobs hold the cores). Every CPU contender runs torch
with one thread per process, which is the fastest setting for heads this small (on a shared machine two
threads per tiny matmul can be many times slower). Wall times are the targets; CPU seconds (the process and
its workers) show the work each contender does whatever else the machine runs. Also checks that the
contenders' results are the same numbers (stacked heads use batched matmuls, so they can differ in the last
float bits, and a test accuracy by one video).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from joblib import cpu_count

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gcf.head.ablate import check_grid, expand, parse_grid  # noqa: E402
from gcf.head.synthetic import SynthConfig, synthesize, write_store  # noqa: E402

GRID = "head=gcf,fusion-only,attention-only;dim=64,128;layers=1,2;lam=0,1e-3"


def cpu_children() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def gcf(*args: str, threads: str | None = None) -> tuple[float, float, str]:
    """Run `python -m gcf ARGS` to completion -> (wall seconds, CPU seconds of it and its workers, stdout)."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    if threads:
        env["OMP_NUM_THREADS"] = threads
    t0, c0 = time.perf_counter(), cpu_children()
    proc = subprocess.run([sys.executable, "-m", "gcf", *args], env=env, check=True, capture_output=True, text=True)
    return time.perf_counter() - t0, cpu_children() - c0, proc.stdout


SPIN = "import time, torch; torch.set_num_threads(1); a = torch.randn(256, 256); t = time.perf_counter()\n" \
       "for _ in range(3000): a = (a @ a).tanh()\nprint(time.perf_counter() - t)"


def parallel_capacity(jobs: int) -> float:
    """Work done by `jobs` concurrent one-thread matmul processes relative to one: the cores we really get."""
    def spin(n: int) -> float:
        procs = [subprocess.Popen([sys.executable, "-c", SPIN], stdout=subprocess.PIPE, text=True) for _ in range(n)]
        return max(float(p.communicate()[0]) for p in procs)
    return jobs * spin(1) / spin(jobs)


def load() -> str:
    return "load average %.2f %.2f %.2f" % os.getloadavg()


def top1(path: Path) -> dict:
    with open(path) as f:
        return {(r["head"], r["dim"], r["layers"], r["lam"]): float(r["top1"]) for r in csv.DictReader(f)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=40, help="Epochs per run [40, the default recipe's].")
    ap.add_argument("--jobs", type=int, help="Parallel processes [the cores; 1 on cuda].")
    ap.add_argument("--device", default="cpu", help="cpu, or cuda: every contender trains there.")
    ap.add_argument("--skip-naive", action="store_true", help="Skip the loop of train-head processes.")
    args = ap.parse_args()
    cuda = args.device.startswith("cuda")
    jobs = args.jobs or (1 if cuda else cpu_count())
    grid = f"{GRID};epochs={args.epochs}"
    runs, _ = expand(check_grid(parse_grid(grid)), seeds=1)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        store = tmp / "synthetic.zarr"
        synth = synthesize(SynthConfig())
        write_store(str(store), synth)
        t = synth.table
        print(f"store: {len(t.labels)} videos, {t.features.shape[0]} clips, d={t.features.shape[1]}; "
              f"grid: {len(runs)} configurations, {args.epochs} epochs; {cpu_count()} cores; {load()}")
        capacity = parallel_capacity(jobs)
        print(f"limit: {jobs} concurrent matmul processes do {capacity:.2f}x the work of one ({load()})")
        common = ("--grid", grid, "--seeds", "1", "--device", args.device)

        def ablate(name: str, *extra: str) -> float:
            wall, cpu, out = gcf("ablate", str(store), *common, "--out", str(tmp / name), *extra)
            plan = next(line for line in out.splitlines() if " cached, " in line)
            print(f"gcf ablate {' '.join(extra):32s} {wall:7.1f} s, {cpu:6.1f} CPU-s   ({load()})\n    {plan}")
            return wall

        par = ablate("par", "--jobs", str(jobs))
        seq = ablate("seq", "--jobs", "1", "--threads", "1", "--stack", "1")
        one = ablate("one", "--jobs", "1", "--threads", "1")
        expected = top1(tmp / "par" / "results.csv")
        same = {name: agreement(expected, top1(tmp / name / "results.csv")) for name in ("seq", "one")}
        print(f"(b) one after another / parallel: {seq / par:.2f}x (target >= 1.6x: "
              f"{'ok' if seq / par >= 1.6 else 'MISSED'}; {seq / par / capacity:.0%} of the measured limit "
              f"{capacity:.2f}x); (c) stacked in one process / parallel: {one / par:.2f}x")
        print(f"same test top-1 as the parallel run: (b) {same['seq']}, (c) {same['one']}")
        if args.skip_naive:
            return
        naive, naive_cpu, agree = 0.0, 0.0, []
        for i, run in enumerate(runs):
            out = tmp / "naive" / str(i)
            h, c = run.head, run.train
            point = dict(run.point)
            wall, cpu, _ = gcf("train-head", str(store), "--head", h.name, "--dim", str(point["dim"]), "--layers",
                               str(point["layers"]), "--lam", str(point["lam"]), "--epochs", str(c.epochs),
                               "--seed", "0", "--device", args.device, "--out", str(out), threads="1")
            naive, naive_cpu = naive + wall, naive_cpu + cpu
            got = json.loads((out / "metrics.json").read_text())["top1"]
            agree.append(abs(got - expected[tuple(str(point[k]) for k in ("head", "dim", "layers", "lam"))]))
        target = 10 if cuda else 2
        print(f"{len(runs)} x gcf train-head (1 thread):   {naive:7.1f} s, {naive_cpu:6.1f} CPU-s   ({load()})")
        print(f"(a) naive loop / parallel: {naive / par:.2f}x (target >= {target}x: "
              f"{'ok' if naive / par >= target else 'MISSED'}); train-head gave the same test top-1 in "
              f"{sum(d == 0 for d in agree)} of {len(runs)} runs (largest difference {max(agree):.4f})")


def agreement(a: dict, b: dict) -> str:
    """'N of M' grid points with the same test top-1, and the largest difference."""
    diff = [abs(a[k] - b[k]) for k in a]
    return f"{sum(d == 0 for d in diff)} of {len(diff)} (largest difference {max(diff):.4f})"


if __name__ == "__main__":
    main()
