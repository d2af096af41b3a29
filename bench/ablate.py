"""Benchmark `gcf ablate`: a 24-configuration grid on a synthetic store on disk, end to end, against
(a) a loop of 24 `gcf train-head` processes on the same store and (b) the same grid trained one
configuration after another in one process (`gcf ablate --jobs 1 --threads 1`).

    python bench/ablate.py [--epochs 40] [--jobs N] [--skip-naive]

Targets on the 2-core CPU: >= 2x (a) and >= 1.6x (b). The machine is shared, so the script first measures the
limit for (b): how many times more matmul work J concurrent one-thread processes get done than one process
(2.0 on two idle cores; less while other jobs hold the cores). Every contender runs torch with one thread per process,
which is the fastest setting for heads this small (on a shared machine two threads per tiny matmul can be
many times slower). Wall times are the targets; CPU seconds (the process and its workers) show the work each
contender does whatever else the machine runs. Also checks that the parallel, sequential and train-head
results are the same numbers.
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


def gcf(*args: str, threads: str | None = None) -> tuple[float, float]:
    """Run `python -m gcf ARGS` to completion -> (wall seconds, CPU seconds of it and its worker processes)."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    if threads:
        env["OMP_NUM_THREADS"] = threads
    t0, c0 = time.perf_counter(), cpu_children()
    subprocess.run([sys.executable, "-m", "gcf", *args], env=env, check=True, capture_output=True, text=True)
    return time.perf_counter() - t0, cpu_children() - c0


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
    ap.add_argument("--jobs", type=int, default=cpu_count())
    ap.add_argument("--skip-naive", action="store_true", help="Skip the loop of train-head processes.")
    args = ap.parse_args()
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
        capacity = parallel_capacity(args.jobs)
        print(f"limit: {args.jobs} concurrent matmul processes do {capacity:.2f}x the work of one ({load()})")

        par, par_cpu = gcf("ablate", str(store), "--grid", grid, "--seeds", "1", "--jobs", str(args.jobs),
                            "--out", str(tmp / "par"))
        print(f"gcf ablate --jobs {args.jobs}:              {par:7.1f} s, {par_cpu:6.1f} CPU-s   ({load()})")
        seq, seq_cpu = gcf("ablate", str(store), "--grid", grid, "--seeds", "1", "--jobs", "1", "--threads", "1",
                           "--out", str(tmp / "seq"))
        print(f"gcf ablate --jobs 1 --threads 1:     {seq:7.1f} s, {seq_cpu:6.1f} CPU-s   ({load()})")
        same = top1(tmp / "par" / "results.csv") == top1(tmp / "seq" / "results.csv")
        print(f"sequential / parallel: {seq / par:.2f}x (target >= 1.6x: {'ok' if seq / par >= 1.6 else 'MISSED'}; "
              f"{seq / par / capacity:.0%} of the measured limit {capacity:.2f}x); "
              f"same test top-1 in every run: {same}")
        if args.skip_naive:
            return
        naive, naive_cpu, expected, agree = 0.0, 0.0, top1(tmp / "par" / "results.csv"), 0
        for i, run in enumerate(runs):
            out = tmp / "naive" / str(i)
            h, c = run.head, run.train
            wall, cpu = gcf("train-head", str(store), "--head", h.name, "--dim", str(h.dim), "--layers",
                            str(h.layers), "--lam", str(c.lam), "--epochs", str(c.epochs), "--seed", "0",
                            "--out", str(out), threads="1")
            naive, naive_cpu = naive + wall, naive_cpu + cpu
            got = json.loads((out / "metrics.json").read_text())["top1"]
            agree += got == expected[(h.name, str(h.dim), str(h.layers), str(c.lam))]
        print(f"{len(runs)} x gcf train-head (1 thread):   {naive:7.1f} s, {naive_cpu:6.1f} CPU-s   ({load()})")
        print(f"naive loop / parallel: {naive / par:.2f}x (target >= 2x: {'ok' if naive / par >= 2 else 'MISSED'}); "
              f"train-head gave the same test top-1 in {agree} of {len(runs)} runs")


if __name__ == "__main__":
    main()
