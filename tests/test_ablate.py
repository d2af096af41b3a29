"""`gcf ablate` on a real synthetic store on disk: outputs, cache reuse, resuming after a kill, bad grids."""

import csv
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner
from conftest import REPO, run_gcf

from gcf.cli import main
from gcf.errors import GcfError
from gcf.head.ablate import GRID_KEYS, ablate_store, check_grid, expand, parse_grid, read_grid_file, run_stack
from gcf.head.ablate_report import write_reports
from gcf.head.synthetic import SynthConfig, synthesize, write_store

TINY = SynthConfig(classes=3, train_per_class=12, test_per_class=4, dim=16, min_clips=4, max_clips=8,
                   min_relevant=2, max_relevant=2, signal=4.0)
GRID = "head=gcf,fusion-only;dim=8,16;epochs=3"   # options `gcf train-head` has too


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("ablate") / "tiny.zarr"
    write_store(str(path), synthesize(TINY))
    return path


@pytest.fixture(scope="module")
def first(store, tmp_path_factory):
    """One ablation of 4 configurations x 2 seeds on two processes."""
    out = tmp_path_factory.mktemp("ablate") / "out"
    proc = run_gcf("ablate", store, "--grid", GRID, "--seeds", "2", "--jobs", "2", "--out", out)
    return out, proc


def gcf_in_process(*args):
    """The real CLI in this process (no interpreter start-up): -> (exit code, stdout, stderr)."""
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_small_grid_writes_every_output(first):
    out, proc = first
    assert "4 configurations x 2 seeds = 8 runs" in proc.stdout
    assert "8 runs: 0 cached, 8 new; clip baselines: 0 cached, 2 new; 5 stacks on cpu, 2 jobs" in proc.stdout
    results = rows(out / "results.csv")
    assert len(results) == 8
    assert {(r["head"], r["dim"], r["seed"]) for r in results} == {
        (h, d, s) for h in ("gcf", "fusion-only") for d in ("8", "16") for s in ("0", "1")}
    for r in results:
        assert 0 <= float(r["top1"]) <= float(r["top5"]) <= 1 and 0 <= float(r["val_top1"]) <= 1
        assert int(r["params"]) > 0 and float(r["mflops"]) > 0 and r["epochs"] == "3"
    base = rows(out / "baselines.csv")
    assert sorted((b["method"], b["seed"]) for b in base) == [("C-Clip", "0"), ("C-Clip", "1"),
                                                             ("D-Clips", "0"), ("D-Clips", "1")]
    summary = (out / "summary.md").read_text()
    table = [line for line in summary.splitlines() if line.startswith(("| gcf", "| fusion-only"))]
    assert len(table) == 4 and all(" ± " in line for line in table)
    means = [float(line.split("|")[4].split("±")[0]) for line in table]
    assert means == sorted(means, reverse=True)                        # sorted by mean test top-1
    assert "Same in every configuration: epochs=3." in summary
    assert "| C-Clip | 2 |" in summary and "| D-Clips | 2 |" in summary
    for png in ("fig3a_dim.png", "table2_modules.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    assert not (out / "fig3b_layers.png").exists() and "not drawn: fig3b_layers.png" in summary
    assert len(list((out / "cache").glob("*.json"))) == 10              # 8 runs + 2 clip baselines
    assert not list((out / "cache").glob("features-*"))                 # the shared arrays are removed


def test_rerun_trains_nothing(first, store):
    out, _ = first
    before = {p: p.stat().st_mtime_ns for p in (out / "cache").glob("*.json")}
    old = rows(out / "results.csv")
    code, stdout, _ = gcf_in_process("ablate", store, "--grid", GRID, "--seeds", "2", "--out", out)
    assert code == 0 and "8 runs: 8 cached, 0 new; clip baselines: 2 cached, 0 new" in stdout
    assert {p: p.stat().st_mtime_ns for p in (out / "cache").glob("*.json")} == before
    assert rows(out / "results.csv") == old


def test_a_run_whose_kept_checkpoint_diverges_on_val_stays_cached(first, store, tmp_path):
    """A kept checkpoint can give a non-finite validation loss (stored as null): still a result, not retrained,
    and never the best on validation by its loss."""
    out = tmp_path / "out"
    shutil.copytree(first[0], out)
    records = sorted((out / "cache").glob("*.json"))
    runs = [p for p in records if "metrics" in json.loads(p.read_text())]
    record = json.loads(runs[0].read_text())
    record["val"]["loss"] = None
    runs[0].write_text(json.dumps(record))
    code, stdout, _ = gcf_in_process("ablate", store, "--grid", GRID, "--seeds", "2", "--out", out)
    assert code == 0 and "8 runs: 8 cached, 0 new" in stdout
    row = next(r for r in rows(out / "results.csv") if r["key"] == runs[0].stem)
    assert row["val_loss"] == "nan"
    from gcf.head.ablate_report import pick
    best = {"val_top1": 0.5, "val_loss": 2.0, "head": "gcf"}
    assert pick([{"val_top1": 0.5, "val_loss": float("nan"), "head": "gcf"}, best], head="gcf") is best


def test_one_code_path_with_train_head(first, store, tmp_path):
    """A grid run equals `gcf train-head` with the same settings and seed (same torch threads)."""
    out, _ = first
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    subprocess.run([sys.executable, "-m", "gcf", "train-head", str(store), "--head", "fusion-only", "--dim", "16",
                    "--epochs", "3", "--seed", "1", "--out", str(tmp_path / "run")],
                   env=env, check=True, capture_output=True)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    row = next(r for r in rows(out / "results.csv") if (r["head"], r["dim"], r["seed"]) == ("fusion-only", "16", "1"))
    for m in ("top1", "top5", "mean_class"):
        assert float(row[m]) == pytest.approx(metrics[m], abs=1e-6)


def test_extended_grid_trains_only_the_new_points(store, tmp_path):
    said = []
    ablate_store(str(store), check_grid({"dim": [8], "epochs": [2]}), 1, tmp_path, jobs=1, threads=1,
                 echo=said.append)
    runs, _, errors = ablate_store(str(store), check_grid({"dim": [8, 16], "epochs": [2]}), 1, tmp_path, jobs=1,
                                   threads=1, echo=said.append)
    assert said[1].startswith("2 runs: 1 cached, 1 new; clip baselines: 1 cached, 0 new")
    assert len(runs) == 2 and not errors
    record = tmp_path / "cache" / f"{runs[0]['key']}.json"
    good = json.loads(record.read_text())
    wrong_type = dict(good, metrics=dict(good["metrics"], top1="oops"))
    for bad in ('{"metrics": ', "{}", "[1]", json.dumps(wrong_type)):   # torn, empty, not a record, wrong type
        record.write_text(bad)
        said.clear()
        again, _, _ = ablate_store(str(store), check_grid({"dim": [8, 16], "epochs": [2]}), 1, tmp_path, jobs=1,
                                   threads=1, echo=said.append)
        assert said[0] == (f"1 cache record unreadable or incomplete (first: {record}); training them again")
        assert said[1].startswith("2 runs: 1 cached, 1 new")
        assert [dict(r, seconds=0) for r in again] == [dict(r, seconds=0) for r in runs]   # retrained: same numbers


def test_a_failing_run_is_reported_not_cached(tmp_path):
    (tmp_path / "cache").mkdir()
    runs, _ = expand(check_grid({"dim": [8]}), seeds=2)
    records = run_stack(runs, ["k0", "k1"], runs[0].full_head(16, 3), str(tmp_path / "gone"), ("a", "b", "c"), 1,
                        str(tmp_path / "cache"), "cpu")
    assert [r["key"] for r in records] == ["k0", "k1"]
    assert all(r["error"].startswith("FileNotFoundError") for r in records)
    assert not list((tmp_path / "cache").iterdir())


def test_settings_a_head_ignores_train_once(store, tmp_path):
    """attention-only reads no D; fusion-only has no att, so lambda cannot change it: 8 grid runs, 4 trainings."""
    grid = check_grid(parse_grid("head=fusion-only,attention-only;dim=8,16;lam=0,1e-3;epochs=2"))
    said = []
    runs, _, errors = ablate_store(str(store), grid, 1, tmp_path, jobs=1, threads=1, echo=said.append)
    assert said[0].startswith("8 runs: 0 cached, 4 new, 4 the same as another run (settings their head ignores)")
    assert len(runs) == 8 and not errors and len({r["key"] for r in runs}) == 4
    assert len(list((tmp_path / "cache").glob("*.json"))) == 4 + 1      # 4 runs and the clip baselines
    by_key = {}
    for r in runs:
        by_key.setdefault(r["key"], []).append(r)
    for same in by_key.values():
        assert len(same) == 2 and same[0]["top1"] == same[1]["top1"] and same[0]["val_loss"] == same[1]["val_loss"]
    pairs = {(r["head"], r["dim"] if r["head"] == "fusion-only" else r["lam"]) for r in runs}
    assert len(pairs) == 4                                              # what differs is what each head reads


def test_stacked_runs_equal_runs_one_after_another(store, tmp_path):
    grid = check_grid(parse_grid("lam=0,1e-3;lr=1e-3,3e-3;epochs=3"))
    said = []
    stacked, _, _ = ablate_store(str(store), grid, 2, tmp_path / "stacked", jobs=1, threads=1, echo=said.append)
    alone, _, _ = ablate_store(str(store), grid, 2, tmp_path / "alone", jobs=1, threads=1, stack=1,
                               echo=said.append)
    assert "; 2 stacks on cpu" in said[0] and "; 10 stacks on cpu" in said[1]   # + 2 clip classifiers
    assert [r["stack"] for r in stacked] == [8] * 8 and [r["stack"] for r in alone] == [1] * 8
    for s, a in zip(stacked, alone):
        assert s["key"] == a["key"] and s["top1"] == pytest.approx(a["top1"], abs=1e-9)
        assert s["val_loss"] == pytest.approx(a["val_loss"], rel=1e-4)


def test_dropout_runs_train_alone(store, tmp_path):
    """Dropout masks in a stack come from one generator, so heads with dropout never share a stack."""
    said = []
    runs, _, errors = ablate_store(str(store), check_grid(parse_grid("dropout=0.3;lam=0,1e-3;epochs=2")), 2, tmp_path,
                                   jobs=1, threads=1, echo=said.append)
    assert "; 5 stacks on cpu" in said[0] and [r["stack"] for r in runs] == [1] * 4 and not errors


@pytest.mark.parametrize("device, message", [("mps", "only cpu and cuda are supported"),
                                             ("tpu", "not a device; use cpu, cuda or cuda:N"),
                                             ("cpu:5", "the CPU has no device index; use --device cpu")])
def test_bad_device_is_refused(store, tmp_path, device, message):
    code, _, stderr = gcf_in_process("ablate", store, "--grid", "dim=8", "--device", device, "--out", tmp_path / "o")
    assert code == 2 and message in stderr and not (tmp_path / "o").exists()


def test_killed_run_resumes_with_the_rest(store, tmp_path):
    out, cache = tmp_path / "out", tmp_path / "out" / "cache"
    args = [sys.executable, "-m", "gcf", "ablate", str(store), "--grid", "dim=4,8,12,16;epochs=10",
            "--seeds", "1", "--jobs", "1", "--threads", "1", "--out", str(out)]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not list(cache.glob("*.json")) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)                             # like a crash or a lost machine
        proc.wait()
    done = len(list(cache.glob("*.json")))
    assert 1 <= done < 5 and not (out / "results.csv").exists()
    code, stdout, _ = gcf_in_process("ablate", store, "--grid", "dim=4,8,12,16;epochs=10", "--seeds", "1",
                                     "--threads", "1", "--out", out)
    assert code == 0
    assert len(rows(out / "results.csv")) == 4 and len(list(cache.glob("*.json"))) == 5
    cached = int(stdout.split("4 runs: ")[1].split(" cached")[0])
    base_cached = int(stdout.split("clip baselines: ")[1].split(" cached")[0])
    assert cached + base_cached == done


def test_grid_parsing_and_files(tmp_path):
    grid = check_grid(parse_grid(" head=gcf,attention-only ; dim=256,512,256; lam=0,1e-4; standardize=false;"))
    assert grid == {"head": ["gcf", "attention-only"], "dim": [256, 512], "lam": [0.0, 1e-4], "standardize": [False]}
    runs, clip = expand(grid, seeds=3)
    assert len(runs) == 2 * 2 * 2 * 3 and len(clip) == 3
    assert {r.train.seed for r in runs} == {0, 1, 2} and all(not r.train.standardize for r in runs + clip)
    assert {tuple(dict(r.point)[k] for k in ("head", "dim", "lam")) for r in runs} == {
        (h, d, lam) for h in ("gcf", "attention-only") for d in (256, 512) for lam in (0.0, 1e-4)}
    assert {(r.head.name, r.head.dim, r.train.lam) for r in runs} == {   # attention-only reads no D
        ("gcf", d, lam) for d in (256, 512) for lam in (0.0, 1e-4)} | {("attention-only", 256, 0.0),
                                                                      ("attention-only", 256, 1e-4)}
    (tmp_path / "g.json").write_text(json.dumps({"layers": [1, 2], "recipe": "paper", "lr": [0.1, 1]}))
    runs, _ = expand(check_grid(read_grid_file(tmp_path / "g.json")), seeds=1)
    assert {(r.head.layers, r.train.optimizer, r.train.lr) for r in runs} == {
        (n, "sgd", lr) for n in (1, 2) for lr in (0.1, 1.0)}
    yaml = pytest.importorskip("yaml")
    (tmp_path / "g.yaml").write_text(yaml.safe_dump({"dim": [64, 128], "norm": ["count"]}))
    assert check_grid(read_grid_file(tmp_path / "g.yaml")) == {"dim": [64, 128], "norm": ["count"]}
    (tmp_path / "twice.yaml").write_text("dim: [16]\nlayers: 1\ndim: [32]\n")
    with pytest.raises(GcfError, match="not valid YAML \\(key 'dim' is given twice\\)"):
        read_grid_file(tmp_path / "twice.yaml")


@pytest.mark.parametrize("text, message", [
    ("dims=256", "unknown grid key 'dims'; valid keys: head, dim, layers"),
    ("dim=abc", "grid key 'dim': 'abc' is not an integer"),
    ("lam=small", "grid key 'lam': 'small' is not a number"),
    ("standardize=maybe", "is not a boolean"),
    ("dim=0", "dim must be >= 1, got 0"),
    ("head=nope", "unknown head 'nope'; choose one of"),
    ("recipe=fast", "unknown recipe 'fast'"),
    ("lr=-1", "lr must be a positive number"),
    ("lam=inf", "lam must be a finite number >= 0, got inf"),
    ("momentum=nan;optimizer=sgd", "momentum must be a finite number >= 0, got nan"),
    ("dim=", "grid key 'dim' has no values"),
    ("dim", "is not key=value"),
    ("dim=1;dim=2", "given twice"),
    (" ; ", "the grid is empty"),
])
def test_bad_grid_values(text, message):
    with pytest.raises(GcfError, match=message.replace("(", r"\(")):
        expand(check_grid(parse_grid(text)), seeds=1)


def test_bad_grid_files(tmp_path, monkeypatch):
    (tmp_path / "g.json").write_text('{"dim": [256, 512.5]}')
    with pytest.raises(GcfError, match="512.5 is not an integer"):
        check_grid(read_grid_file(tmp_path / "g.json"))
    (tmp_path / "twice.json").write_text('{"dim": [16], "dim": [32]}')
    with pytest.raises(GcfError, match="not valid JSON \\(key 'dim' is given twice\\)"):
        read_grid_file(tmp_path / "twice.json")
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(GcfError, match="must be a mapping"):
        read_grid_file(tmp_path / "list.json")
    (tmp_path / "g.toml").write_text("")
    with pytest.raises(GcfError, match="must end in .json, .yaml or .yml"):
        read_grid_file(tmp_path / "g.toml")
    (tmp_path / "g.yaml").write_text("dim: [256]\n")
    monkeypatch.setitem(sys.modules, "yaml", None)                      # as if pyyaml were not installed
    with pytest.raises(GcfError, match=r"need pyyaml \(pip install 'gcf\[yaml\]'\); or write the grid as JSON"):
        read_grid_file(tmp_path / "g.yaml")
    assert "standardize" in GRID_KEYS and "seed" not in GRID_KEYS and "in_dim" not in GRID_KEYS
    one_clip = [expand(check_grid(parse_grid(g)), seeds=1)[1][0].train for g in ("clips=6;select=random", "clips=10")]
    assert one_clip[0] == one_clip[1]          # the clip classifier sees one-clip videos: C and select cannot matter
    short, full = [expand(check_grid(parse_grid(g)), seeds=1)[1][0] for g in ("epochs=8", "epochs=40")]
    assert short.train.epochs == full.train.epochs == 40      # it trains the recipe's epochs: its key says so
    assert short.key("s", 16, 3) == full.key("s", 16, 3)
    assert check_grid(parse_grid("lam=-0,0,0.0")) == {"lam": [0.0]} and str(check_grid({"lam": [-0.0]})) == "{'lam': [0.0]}"
    with pytest.raises(GcfError, match=r"False is not a string \(YAML reads off/on/yes/no as booleans: quote it\)"):
        check_grid({"norm": [False]})


def test_cli_refuses_bad_and_too_large_grids_before_training(store, tmp_path):
    out = tmp_path / "out"
    proc = run_gcf("ablate", store, "--grid", "dimm=256", "--out", out, check=False)
    assert proc.returncode == 2 and "unknown grid key 'dimm'; valid keys:" in proc.stderr
    big = "dim=" + ",".join(map(str, range(1, 41))) + ";layers=1,2"
    code, stdout, stderr = gcf_in_process("ablate", store, "--grid", big, "--seeds", "3", "--out", out)
    assert "80 configurations x 3 seeds = 240 runs" in stdout
    assert code == 2 and "240 runs (more than 200); pass --yes" in stderr
    code, _, stderr = gcf_in_process("ablate", store, "--out", out)
    assert code == 2 and "no grid" in stderr
    code, stdout, stderr = gcf_in_process("ablate", store, "--grid", big, "--grid", "head=gcf,fusion-only", "--out", out)
    assert code == 2 and "40 dim x 2 layers x 2 head = 160 configurations" in stdout   # repeated --grid add up
    code, _, stderr = gcf_in_process("ablate", store, "--grid", "dim=8", "--grid", "dim=16", "--out", out)
    assert code == 2 and "key 'dim' is given twice" in stderr
    assert not out.exists()                                             # nothing trained, nothing written
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text("{}")
    code, _, stderr = gcf_in_process("ablate", store, "--grid", "dim=8", "--out", tmp_path / "run")
    assert code == 2 and "is not a `gcf ablate` output" in stderr
    code, _, stderr = gcf_in_process("ablate", store, "--grid", "dim=8", "--out", tmp_path / "run" / "config.json")
    assert code == 2 and "config.json: is a file, not a directory; choose another --out" in stderr
    code, _, stderr = gcf_in_process("ablate", store, "--grid", "dim=8", "--out", tmp_path / "run" / "config.json" / "x")
    assert code == 2 and "x: cannot create the output directory (Not a directory); choose another --out" in stderr
    (tmp_path / "g.json").write_text('{"dim": [null]}')
    code, _, stderr = gcf_in_process("ablate", store, "--grid-file", tmp_path / "g.json", "--out", out)
    assert code == 2 and f"{tmp_path / 'g.json'}: grid key 'dim': None is not an integer" in stderr
    (tmp_path / "g.json").write_text('{"dim": [16, 0]}')
    code, _, stderr = gcf_in_process("ablate", store, "--grid-file", tmp_path / "g.json", "--out", out)
    assert code == 2 and f"{tmp_path / 'g.json'}: invalid grid value dim=0: dim must be >= 1, got 0" in stderr
    code, _, stderr = gcf_in_process("ablate", tmp_path / "none.zarr", "--grid", "dim=8", "--out", out)
    assert code == 2 and "none.zarr" in stderr
    assert not out.exists()                                             # refused: no directory left behind
    (out / "cache").mkdir(parents=True)
    with open(out / "cache" / ".lock", "w") as lock:                     # as another `gcf ablate` holds it
        fcntl.flock(lock, fcntl.LOCK_EX)
        code, _, stderr = gcf_in_process("ablate", store, "--grid", "dim=8", "--out", out)
    assert code == 2 and "another `gcf ablate` is running on it; wait for it to end, or choose another --out" in stderr
    assert list((out / "cache").iterdir()) == [out / "cache" / ".lock"]  # nothing trained


def test_reports_with_a_missing_point_and_one_seed(tmp_path):
    """Plots draw what finished (a failed point is left out); one seed prints no ±; mean ± std by hand."""
    def result(head, dim, seed, top1, val):
        return {"head": head, "dim": dim, "seed": seed, "top1": top1, "top5": 1.0, "mean_class": top1,
                "val_top1": val, "val_top5": 1.0, "val_mean_class": val, "val_loss": 1.0 - val, "params": 10,
                "mflops": 0.5, "best_epoch": 3, "epochs_run": 3, "seconds": 1.0, "stopped": "", "key": "k"}
    results = [result("gcf", 8, 0, 0.5, 0.4), result("gcf", 8, 1, 0.7, 0.6), result("gcf", 16, 0, 0.9, 0.1),
               result("gcf", 16, 1, 0.9, 0.1), result("fusion-only", 8, 0, 0.2, 0.9),
               result("fusion-only", 8, 1, 0.4, 0.9)]
    base = [{"seed": 0, "method": "C-Clip", "top1": 0.1, "top5": 0.5, "mean_class": 0.1},
            {"seed": 0, "method": "D-Clips", "top1": 0.3, "top5": 0.6, "mean_class": 0.3}]
    said = write_reports(tmp_path, {"head": ["gcf", "fusion-only"], "dim": [8, 16]}, results, base,
                         "store.zarr")
    summary = (tmp_path / "summary.md").read_text()
    assert "| gcf | 16 | 2 | 90.00 ± 0.00 |" in summary and "| gcf | 8 | 2 | 60.00 ± 14.14 |" in summary
    assert "| C-Clip | 1 | 10.00 | 50.00 | 10.00 |" in summary
    assert said[0] == "best on validation: head=fusion-only, dim=8: test top-1 30.00 ± 14.14%"
    assert (tmp_path / "fig3a_dim.png").exists() and (tmp_path / "table2_modules.png").exists()
    assert len(rows(tmp_path / "results.csv")) == 6
    # a later grid without dim: no stale fig3a; a failed run and a diverged one are named, not hidden
    results = [{k: v for k, v in r.items() if k != "dim"} for r in results if r["dim"] == 8]
    results[0]["stopped"] = "training loss turned nan in epoch 2; stopped and kept the last good checkpoint"
    failed = [{"head": "transformer", "seed": 0, "error": "RuntimeError: boom"}]
    said = write_reports(tmp_path, {"head": ["gcf", "fusion-only", "transformer"]}, results, base, "store.zarr",
                         failed)
    summary = (tmp_path / "summary.md").read_text()
    assert not (tmp_path / "fig3a_dim.png").exists() and "not drawn: fig3a_dim.png" in summary
    assert "## Failed (not in the tables; rerun the same command to retry them)\n\n" \
           "- head=transformer, seed 0: RuntimeError: boom" in summary
    assert "- head=gcf, seed 0: training loss turned nan in epoch 2" in summary
    assert said[-1].startswith("1 run stopped early (first: head=gcf, seed 0: training loss turned nan")


def test_random_clip_selection_reproduces_and_leftovers_go(store, tmp_path):
    """select=random evaluates the same clips every time, so two runs of one config agree (cache stays true)."""
    grid = ["--grid", "dim=8;epochs=3;select=random", "--seeds", "2", "--jobs", "1"]
    for out in ("a", "b"):
        code, _, stderr = gcf_in_process("ablate", store, *grid, "--out", tmp_path / out)
        assert code == 0, stderr
    a, b = rows(tmp_path / "a" / "results.csv"), rows(tmp_path / "b" / "results.csv")
    assert [(r["top1"], r["val_loss"]) for r in a] == [(r["top1"], r["val_loss"]) for r in b]
    cache = tmp_path / "a" / "cache"
    (cache / "features-0123").mkdir()                                  # what a killed run leaves
    (cache / ".k.json.123.tmp").write_text("{")
    code, stdout, _ = gcf_in_process("ablate", store, *grid, "--out", tmp_path / "a")
    assert code == 0 and "2 runs: 2 cached, 0 new" in stdout
    assert sorted(p.name for p in cache.iterdir() if not p.name.endswith(".json")) == [".lock"]


def kill_a_worker(args, wait_for=None):
    """Run `gcf *args` and SIGKILL one loky worker as soon as it exists (or once `wait_for()` is true)."""
    proc = subprocess.Popen([sys.executable, "-m", "gcf", *args], env=dict(os.environ, PYTHONPATH=str(REPO)),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline, killed = time.monotonic() + 120, None
    while killed is None and proc.poll() is None and time.monotonic() < deadline:
        if wait_for is None or wait_for():
            for child in open(f"/proc/{proc.pid}/task/{proc.pid}/children").read().split():
                try:
                    cmdline = open(f"/proc/{child}/cmdline").read()
                except OSError:
                    continue
                if "popen_loky" in cmdline:                            # a loky worker, not its resource tracker
                    os.kill(int(child), signal.SIGKILL)
                    killed = child
                    break
        time.sleep(0.01)
    stdout, stderr = proc.communicate(timeout=300)
    assert killed is not None, stderr
    return proc.returncode, stdout, stderr


def test_a_killed_worker_fails_its_runs_not_the_grid(store, tmp_path):
    """A worker killed by the OS (out of memory, say): the stacks it did not return run again in fresh
    workers; if none had finished, they fail in one error line, reports are written and a rerun finishes."""
    out = tmp_path / "out"
    args = ["ablate", str(store), "--grid", "dim=4,8,12,16;epochs=300", "--seeds", "2", "--jobs", "2",
            "--threads", "1", "--out", str(out)]
    code, _, stderr = kill_a_worker(args)                              # before any stack returned
    assert code == 2, stderr
    assert "failed (first: a worker process died (TerminatedWorkerError" in stderr
    assert "rerun the same command to retry the failed ones" in stderr and "Traceback" not in stderr
    assert "## Failed" in (out / "summary.md").read_text()
    assert not list((out / "cache").glob("features-*"))
    shutil.rmtree(out)
    started = []
    def one_record_then_a_while():
        if not started and list((out / "cache").glob("*.json")):
            started.append(time.monotonic())
        return started and time.monotonic() - started[0] > 0.5
    code, stdout, stderr = kill_a_worker(args, one_record_then_a_while)   # mid-grid: the rest is retried
    assert code == 0 and "Traceback" not in stderr, stderr
    assert len(rows(out / "results.csv")) == 8 and "## Failed" not in (out / "summary.md").read_text()


def test_interrupt_says_what_was_kept_and_a_diverged_clip_classifier_is_named(store, tmp_path):
    out = tmp_path / "out"
    args = [sys.executable, "-m", "gcf", "ablate", str(store), "--grid", "dim=4,8,12,16;epochs=300", "--seeds", "2",
            "--jobs", "1", "--out", str(out)]
    # A runner that starts the tests as a background job ignores SIGINT, and the child would inherit that and
    # never see the Ctrl-C: give it the default disposition, as a terminal would.
    proc = subprocess.Popen(args, env=dict(os.environ, PYTHONPATH=str(REPO)), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while not list((out / "cache").glob("*.json")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, "the grid finished before it could be interrupted"
    proc.send_signal(signal.SIGINT)                                    # Ctrl-C
    _, stderr = proc.communicate(timeout=120)
    kept = len(list((out / "cache").glob("*.json")))
    assert proc.returncode == 130 and kept >= 1
    assert f"interrupted: {kept} finished run" in stderr and "rerun the same command to resume" in stderr
    shutil.rmtree(out)
    code, stdout, _ = gcf_in_process("ablate", store, "--grid", "optimizer=sgd;lr=1e7;epochs=2;dim=8", "--seeds", "1",
                                     "--out", out)
    summary = (out / "summary.md").read_text()
    assert "- clip classifier (C-Clip, D-Clips), seed 0: " in summary and "| C-Clip | 1 (1 stopped early) |" in summary
    assert rows(out / "baselines.csv")[0]["stopped"].startswith(("loss turned", "validation loss turned"))
    shutil.rmtree(out / "cache")                                       # what the docs say to do to retrain
    code, stdout, stderr = gcf_in_process("ablate", store, "--grid", "optimizer=sgd;lr=1e7;epochs=2;dim=8",
                                          "--seeds", "1", "--out", out)
    assert "1 run: 0 cached, 1 new" in stdout
