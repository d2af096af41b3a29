"""`gcf ablate`: train a grid of head configurations on one store, in parallel and cached, and report it.

Every run is `gcf train-head`'s code path: gcf.head.train.train on the store's splits (the same for every seed),
then evaluate. The store is read once; its features are dumped to .npy files that the loky workers memory-map,
so no configuration re-reads the store. Each run's result is written atomically to OUT/cache/<key>.json, the
key hashing the full head and training config, the seed and the store's content: a rerun, an interrupted run or
an extended grid trains only what is new. C-Clip and D-Clips are evaluated once per seed for the comparison.
"""

from __future__ import annotations

import fcntl
import hashlib
import itertools
import json
import math
import os
import shutil
import time
from concurrent.futures import BrokenExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import click
import numpy as np
import torch
from joblib import Parallel, cpu_count, delayed
from tqdm import tqdm

from gcf import __version__
from gcf.device import check_device
from gcf.errors import GcfError, plural
from gcf.head.ablate_report import BASELINES, result_row, write_reports
from gcf.head.complexity import complexity
from gcf.head.data import Data, load_store
from gcf.head.registry import HEADS, HeadConfig, canonical
from gcf.head.train import (TrainConfig, check_data, clip_baselines, clip_config, clip_scores, fit_clip_classifiers,
                            recipe, shared_part, train_stack)
from gcf.store import FeatureTable

HEAD_KEYS = {"head": "name", "dim": "dim", "layers": "layers", "norm": "norm", "reduction": "reduction",
             "dropout": "dropout"}                       # grid key -> HeadConfig field
TRAIN_KEYS = tuple(f.name for f in fields(TrainConfig) if f.name != "seed")   # 'recipe' picks the preset
GRID_KEYS = (*HEAD_KEYS, *TRAIN_KEYS)
KINDS = {bool: "a boolean (true/false)", int: "an integer", float: "a number", str: "a string"}
MAX_RUNS = 200                                                                 # larger grids need --yes
STACK = {"cpu": 8, "cuda": 64}          # most heads trained together by default (bench/ablate.py measured them)


# ---------------------------------------------------------------------------------------------------- the grid

def parse_grid(text: str) -> dict[str, list]:
    """'head=gcf,fusion-only;dim=256,512' -> {"head": ["gcf", "fusion-only"], "dim": ["256", "512"]} (raw text)."""
    grid: dict[str, list] = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        key, eq, values = part.partition("=")
        key = key.strip()
        if not eq or not key:
            raise GcfError(f"--grid: {part!r} is not key=value,value,...; write e.g. 'dim=256,512;layers=1,2'")
        if key in grid:
            raise GcfError(f"--grid: key {key!r} is given twice; list all its values once, comma-separated")
        grid[key] = [v.strip() for v in values.split(",") if v.strip()]
    return grid


def read_grid_file(path: str) -> dict[str, list]:
    """A JSON or YAML mapping of grid key -> list of values (or one value)."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise GcfError(f"{path}: cannot read the grid file ({e.strerror}); check the path") from e
    if p.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError as e:
            raise GcfError(f"{path}: YAML grid files need pyyaml (pip install 'gcf[yaml]'); "
                           "or write the grid as JSON") from e
        load, errors = lambda text: yaml.load(text, Loader=_unique_yaml_loader(yaml)), (yaml.YAMLError,)
    elif p.suffix.lower() == ".json":
        load, errors = lambda text: json.loads(text, object_pairs_hook=_unique), (ValueError,)
    else:
        raise GcfError(f"{path}: a grid file must end in .json, .yaml or .yml")
    try:
        grid = load(text)
    except errors as e:
        raise GcfError(f"{path}: not valid {p.suffix[1:].upper()} ({str(e).splitlines()[0]}); fix the file") from e
    if not isinstance(grid, dict):
        raise GcfError(f"{path}: the grid must be a mapping of key -> list of values, e.g. {{\"dim\": [256, 512]}}")
    return {str(k): v if isinstance(v, list) else [v] for k, v in grid.items()}


def _unique_yaml_loader(yaml):
    """A SafeLoader that refuses a mapping naming a key twice (safe_load would keep the last silently)."""
    class Loader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            keys = [self.construct_object(k, deep=deep) for k, _ in node.value]
            for i, k in enumerate(keys):
                if k in keys[:i]:
                    raise yaml.constructor.ConstructorError(None, None, f"key {k!r} is given twice",
                                                            node.value[i][0].start_mark)
            return super().construct_mapping(node, deep)
    return Loader


def _unique(pairs: list[tuple]) -> dict:
    """A JSON object that names no key twice (json.loads would keep the last silently)."""
    grid = {}
    for k, v in pairs:
        if k in grid:
            raise ValueError(f"key {k!r} is given twice")
        grid[k] = v
    return grid


def _default(key: str):
    return getattr(HeadConfig(), HEAD_KEYS[key]) if key in HEAD_KEYS else getattr(TrainConfig(), key)


def parse_value(key: str, value):
    """One grid value (text, or a JSON/YAML scalar) as the type of its config field."""
    kind = type(_default(key))
    if isinstance(value, str) and kind is not str:
        text = value.strip().lower()
        try:
            if kind is bool:
                return {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}[text]
            value = kind(text)
        except (KeyError, ValueError):
            raise GcfError(f"grid key {key!r}: {value!r} is not {KINDS[kind]}") from None
    if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value) + 0.0     # -0.0 -> 0.0: one value, one cache key
    if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
        return value
    quote = " (YAML reads off/on/yes/no as booleans: quote it)" if kind is str and isinstance(value, bool) else ""
    raise GcfError(f"grid key {key!r}: {value!r} is not {KINDS[kind]}{quote}")


def check_grid(grid: dict[str, list]) -> dict[str, list]:
    """Typed, de-duplicated values for known keys; raise GcfError for an unknown key or an empty grid or key."""
    for key in grid:
        if key not in GRID_KEYS:
            raise GcfError(f"unknown grid key {key!r}; valid keys: {', '.join(GRID_KEYS)}")
    if not grid:
        raise GcfError("the grid is empty; give --grid 'key=v1,v2;...' or --grid-file, e.g. --grid 'dim=256,512'")
    typed = {}
    for key, values in grid.items():
        if not values:
            raise GcfError(f"grid key {key!r} has no values; give at least one, e.g. '{key}={_default(key)}'")
        typed[key] = list(dict.fromkeys(parse_value(key, v) for v in values))
        for v in typed[key]:
            try:
                _check_one(key, v)
            except ValueError as e:
                raise GcfError(f"invalid grid value {key}={v}: {e}") from None
    return typed


def _check_one(key: str, value) -> None:
    """Raise ValueError if one grid value is invalid on its own (combinations are checked by expand)."""
    if key in HEAD_KEYS:
        HeadConfig(**{HEAD_KEYS[key]: value}).check()
    elif key == "recipe":
        recipe(value)
    else:
        recipe(**{key: value}).check()


@dataclass(frozen=True)
class Job:
    """One training run: a grid point with a seed, or (head None) the C-Clip/D-Clips clip classifier of a seed.

    head and train are canonical (gcf.head.registry.canonical, TrainConfig.canonical): grid points that differ
    only in settings their head ignores get the same configs, the same key and one training run.
    """

    point: tuple[tuple[str, object], ...]   # (grid key, value) in grid order; () for the clip classifier
    head: HeadConfig | None
    train: TrainConfig

    def key(self, store: str, in_dim: int, classes: int) -> str:
        """Cache key: a hash of the full head and training config (seed included), the store and gcf's version."""
        head = None if self.head is None else asdict(self.full_head(in_dim, classes))
        text = json.dumps({"gcf": __version__, "store": store, "head": head, "train": asdict(self.train)},
                          sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:24]

    def full_head(self, in_dim: int, classes: int) -> HeadConfig:
        """The head as training builds it: the store's d and classes, the run's clips (canonical)."""
        return canonical(replace(self.head, in_dim=in_dim, num_classes=classes, clips=self.train.clips))


def expand(grid: dict[str, list], seeds: int) -> tuple[list[Job], list[Job]]:
    """Every grid point x seed as a Job (checked; GcfError on a bad value), and the clip classifier per seed.

    Grid keys set HeadConfig fields (head=name) or TrainConfig fields of the recipe (recipe=name picks it).
    The clip classifier is trained with the first recipe and the training keys that have one value.
    """
    def train_cfg(point: dict, seed: int):
        over = {k: v for k, v in point.items() if k not in HEAD_KEYS and k != "recipe"}
        return recipe(point.get("recipe", "default"), seed=seed, **over)

    runs = []
    for values in itertools.product(*grid.values()):
        point = dict(zip(grid, values))
        try:
            head = HeadConfig(**{HEAD_KEYS[k]: v for k, v in point.items() if k in HEAD_KEYS})
            cfg = train_cfg(point, 0)
            cfg.check()
            replace(head, clips=cfg.clips).check()
        except ValueError as e:
            where = "; ".join(f"{k}={v}" for k, v in point.items())
            raise GcfError(f"invalid grid value: {e} (at {where}); nothing was trained") from e
        att = HEADS[head.name].att
        runs += [Job(tuple(point.items()), canonical(head), replace(cfg, seed=s).canonical(att)) for s in range(seeds)]
    fixed = {k: v[0] for k, v in grid.items() if k not in HEAD_KEYS and (len(v) == 1 or k == "recipe")}
    clip = lambda s: replace(clip_config(train_cfg(fixed, s).canonical(att=False)),  # noqa: E731
                             select=TrainConfig.select)   # one-clip videos: the eval selection cannot matter
    return runs, [Job((), None, clip(s)) for s in range(seeds)]


# ---------------------------------------------------------------------------------------------------- the store

@dataclass(frozen=True)
class Store:
    """A store read once: its data (table and train/val/test, as `gcf train-head` makes them) and identity."""

    data: Data
    fingerprint: str                    # sha256 of features, clips, ids, labels, splits, classes and backbone
    backbone_probs: np.ndarray | None   # the backbone's test-clip probabilities, when usable for C-Clip/D-Clips


def read_store(path: str) -> Store:
    """Load the store once, with `gcf train-head`'s splits; GcfError if they cannot train a classifier."""
    data, source, probs = load_store(path)
    try:
        check_data(data)
    except GcfError as e:
        raise GcfError(f"{path}: {e}") from None
    t = data.table
    h = hashlib.sha256()
    for a in (t.features, t.offsets, t.labels):
        h.update(np.ascontiguousarray(a).view(np.uint8).data)
    h.update(json.dumps([str(t.features.dtype), list(t.features.shape), list(t.video_ids), list(t.splits),
                         source["class_names"], source["backbone"], source["weights"]]).encode())
    return Store(data, h.hexdigest()[:24], probs)


def share(data: Data, folder: Path) -> None:
    """Dump the table (features, offsets, ids, labels, splits) and the split indices as .npy files for workers."""
    folder.mkdir(parents=True, exist_ok=True)
    t = data.table
    arrays = {"features": t.features, "offsets": t.offsets, "video_ids": np.array(t.video_ids, dtype=str),
              "labels": t.labels, "splits": np.array(t.splits, dtype=str),
              "train": data.train, "val": data.val, "test": data.test}
    for name, a in arrays.items():
        np.save(folder / f"{name}.tmp.npy", np.ascontiguousarray(a))
        os.replace(folder / f"{name}.tmp.npy", folder / f"{name}.npy")


def shared_data(folder: Path, class_names: tuple[str, ...]) -> Data:
    """The Data of `share`, memory-mapped: the workers share one copy of the features in the page cache."""
    load = lambda name: np.load(folder / f"{name}.npy", mmap_mode="r")  # noqa: E731
    names = lambda name: np.load(folder / f"{name}.npy").tolist()       # noqa: E731 (lists, as the store gives)
    table = FeatureTable(load("features"), load("offsets"), names("video_ids"), load("labels"), names("splits"))
    return Data(table, load("train"), load("val"), load("test"), class_names)


# ---------------------------------------------------------------------------------------------------- running

def write_json(path: Path, record: dict) -> None:
    """Write JSON atomically: a reader (or a rerun after a kill) sees the whole file or none."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(record, indent=1))
    os.replace(tmp, path)


def run_stack(jobs: list[Job], keys: list[str], full_head: HeadConfig | None, folder: str,
              class_names: tuple[str, ...], threads: int, cache: str, device: str) -> list[dict]:
    """Train and test one stack of jobs together (in a worker or in-process), cache each record, return them.

    full_head is their common head (None: the clip classifiers). An error is returned as one record per job.
    """
    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    cfgs = [job.train for job in jobs]
    try:
        data = shared_data(Path(folder), class_names)
        t = data.table
        if full_head is None:
            records = [{"baselines": clip_baselines(clip_scores(clf, t, data.test), t, data.test),
                        "stopped": clf.stopped} for clf in fit_clip_classifiers(data, cfgs, device)]
        else:
            results = train_stack(data, full_head, cfgs, device=device)
            c = complexity(results[0].head_cfg, results[0].head)
            # a kept checkpoint can give a non-finite validation loss (it diverged on val): null, valid JSON
            records = [{"metrics": r.metrics, "params": c.params, "mflops": c.flops / 1e6,
                        "val": {**r.val_metrics, "loss": r.val_metrics["loss"] if math.isfinite(r.val_metrics["loss"])
                                else None},
                        "best_epoch": r.best_epoch, "epochs_run": len(r.history), "stopped": r.stopped,
                        "head": asdict(r.head_cfg)} for r in results]
    except Exception as e:  # noqa: BLE001 (one broken stack never stops the grid; it is reported and retried)
        hint = "; lower --stack" if isinstance(e, torch.cuda.OutOfMemoryError) else ""
        return [{"key": key, "error": f"{type(e).__name__}: {first_line(e)}{hint}"} for key in keys]
    seconds = (time.perf_counter() - t0) / len(jobs)
    for record, key, cfg in zip(records, keys, cfgs):
        record.update(key=key, seconds=seconds, stack=len(jobs), gcf_version=__version__, train=asdict(cfg))
        write_json(Path(cache) / f"{key}.json", record)
    return records


def first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [""])[0]


def cached(path: Path, run: bool) -> dict | None:
    """A cached run (or clip baseline) record, or None when absent, unreadable or incomplete: then it is
    trained again."""
    try:
        record = json.loads(path.read_text())
        values = result_row(record) if run else {f"{n}.{m}": record["baselines"][n][m]
                                                  for n in BASELINES for m in ("top1", "top5", "mean_class")}
    except (OSError, ValueError, KeyError, TypeError):
        return None
    diverged = lambda k, v: k == "val_loss" and isinstance(v, float) and math.isnan(v)   # noqa: E731 (null: kept)
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0
                  for k, v in values.items() if k != "stopped" and not diverged(k, v))
    return record if numbers and isinstance(values.get("stopped", ""), (str, type(None))) else None


def cost(job: Job) -> float:
    """Rough relative training time, to start the longest runs first."""
    h = job.head or HeadConfig(name="linear", dim=1, layers=0)
    return job.train.epochs * job.train.clips * (h.dim * max(h.layers, 1) + 1)


def make_stacks(todo: dict[str, Job], in_dim: int, classes: int, size: int,
                jobs: int) -> list[tuple[HeadConfig | None, dict]]:
    """Group the jobs that can train together (one head config, one shared TrainConfig part) into stacks of at
    most `size`, split evenly, and into at least its share of `jobs` stacks where a group is most of the grid
    (so no process idles) -> [(full head or None, {key: job})], the costliest first."""
    groups: dict[tuple, dict[str, Job]] = {}
    for key, job in todo.items():
        head = None if job.head is None else job.full_head(in_dim, classes)
        groups.setdefault((head, shared_part(job.train)), {})[key] = job
    stacks = []
    for (head, _), members in groups.items():
        items = sorted(members.items(), key=lambda kj: kj[1].train.seed)   # fewer seeds per stack: fewer batches
        alone = head is not None and head.dropout > 0      # their dropout masks would depend on the stack
        n = len(items) if alone else min(len(items), max(-(-len(items) // size), round(jobs * len(items) / len(todo))))
        stacks += [(head, dict(items[i * len(items) // n:(i + 1) * len(items) // n])) for i in range(n)]
    return sorted(stacks, key=lambda s: -sum(map(cost, s[1].values())))


def run_all(stacks: list[tuple[HeadConfig | None, dict]], folder: Path, class_names: tuple[str, ...], jobs: int,
            threads: int, cache: Path, device: str) -> list[dict]:
    """Run the stacks with joblib: loky worker processes, or in this process for one job.

    When a worker dies (killed, out of memory, crashed) the stacks not returned are run again in fresh
    workers, as long as the last round finished some; the rest fail with that error (a rerun retries them).
    """
    records, todo = [], stacks
    with tqdm(total=sum(len(m) for _, m in stacks), desc="runs", unit="run", leave=False) as bar:
        while todo:
            tasks = (delayed(run_stack)(list(members.values()), list(members), head, str(folder), class_names,
                                        threads, str(cache), device) for head, members in todo)
            returned = set()
            try:
                for done in Parallel(n_jobs=jobs, backend="loky", return_as="generator_unordered")(tasks):
                    records += done
                    returned.update(r["key"] for r in done)
                    bar.update(len(done))
                break
            except BrokenExecutor as e:
                left = [(h, m) for h, m in todo if not returned.intersection(m)]
                if not returned:        # nothing finished in this round: give up on what is left
                    error = f"a worker process died ({type(e).__name__}: {first_line(e)})"
                    records += [{"key": k, "error": error} for _, m in left for k in m]
                    break
                todo = left
    return records


def baseline_record(store: Store) -> dict | None:
    """C-Clip/D-Clips from the backbone's own clip logits, when the store has them for its classes."""
    if store.backbone_probs is None:
        return None
    d = store.data
    return {"baselines": clip_baselines(store.backbone_probs, d.table, d.test), "seconds": 0.0}


@contextmanager
def open_out(out: Path):
    """Own the output directory for a run: create it, refuse one that is not an ablation output, lock it so a
    second `gcf ablate` on it is refused (not interleaved), and remove what killed runs left in its cache."""
    if out.exists() and not out.is_dir():
        raise GcfError(f"{out}: is a file, not a directory; choose another --out")
    if out.is_dir() and any(out.iterdir()) and not any((out / n).exists() for n in ("cache", "summary.md")):
        raise GcfError(f"{out}: exists and is not a `gcf ablate` output (no cache/ or summary.md); "
                       "choose another --out")
    created = not out.exists()
    try:
        (out / "cache").mkdir(parents=True, exist_ok=True)
        lock = open(out / "cache" / ".lock", "w")
    except OSError as e:
        raise GcfError(f"{out}: cannot create the output directory ({e.strerror}); choose another --out") from None
    with lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise GcfError(f"{out}: another `gcf ablate` is running on it; wait for it to end, "
                           "or choose another --out") from None
        for left in (out / "cache").glob("features-*"):     # the shared features of a killed run
            shutil.rmtree(left, ignore_errors=True)
        for left in (out / "cache").glob(".*.tmp"):          # a record a killed run was writing
            left.unlink(missing_ok=True)
        try:
            yield
        except GcfError:
            if created and not list((out / "cache").glob("*.json")):   # refused before anything was kept
                shutil.rmtree(out, ignore_errors=True)
            raise


def ablate_store(store_path: str, grid: dict[str, list], seeds: int, out: Path, jobs: int, threads: int | None = None,
                 stack: int | None = None, device: str = "cpu",
                 echo=print) -> tuple[list[dict], list[dict], list[dict]]:
    """Run every grid point x seed (cached) and the clip baselines -> (run rows, baseline rows, failures: the
    grid point, seed and error of each run or clip baseline that failed). The caller holds open_out(out).

    Runs that can are trained together in stacks of at most `stack` heads (default STACK[device type]);
    `jobs` processes train stacks at once with `threads` torch threads each (default: cores // jobs).
    """
    runs, clip_jobs = expand(grid, seeds)
    store = read_store(store_path)
    cache = out / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    d, k = store.data.table.features.shape[1], len(store.data.class_names)
    keys = {j: j.key(store.fingerprint, d, k) for j in runs + clip_jobs}
    records = {key: (baseline_record(store) if job.head is None else None) or cached(cache / f"{key}.json",
                                                                                      job.head is not None)
               for job, key in keys.items()}
    bad = sorted({key for key, r in records.items() if r is None and (cache / f"{key}.json").exists()})
    if bad:
        echo(f"{plural(len(bad), 'cache record')} unreadable or incomplete (first: {cache / bad[0]}.json); "
             "training them again")
    todo = {key: j for j, key in keys.items() if records[key] is None}      # one run per distinct key
    new = sum(j.head is not None for j in todo.values())
    same = sum(records[keys[j]] is None for j in runs) - new
    stacks = make_stacks(todo, d, k, stack or STACK[torch.device(device).type], jobs)
    jobs = max(1, min(jobs, len(stacks)))
    threads = threads or max(1, cpu_count() // jobs)
    clip_said = ("from the backbone's clip logits" if store.backbone_probs is not None else
                 f"{len(clip_jobs) - (len(todo) - new)} cached, {len(todo) - new} new")
    echo(f"{plural(len(runs), 'run')}: {len(runs) - new - same} cached, {new} new"
         + (f", {same} the same as another run (settings their head ignores)" if same else "")
         + f"; clip baselines: {clip_said}"
         + (f"; {plural(len(stacks), 'stack')} on {device}, {plural(jobs, 'job')} x "
            f"{plural(threads, 'torch thread')}" if todo else ""))
    errors = {}
    if todo:
        folder = cache / f"features-{store.fingerprint}"
        try:
            share(store.data, folder)
            for record in run_all(stacks, folder, store.data.class_names, jobs, threads, cache, device):
                if "error" in record:
                    errors[record["key"]] = record["error"]
                else:
                    records[record["key"]] = record
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    rows = [dict(job.point, seed=job.train.seed, **result_row(records[keys[job]]), key=keys[job])
            for job in runs if records[keys[job]] is not None]
    base = [{"seed": job.train.seed, "method": name, **records[keys[job]]["baselines"][name],
             "stopped": records[keys[job]].get("stopped") or ""}
            for job in clip_jobs if records[keys[job]] is not None for name in BASELINES]
    failed = [dict(job.point, seed=job.train.seed, error=errors[keys[job]]) for job in runs if keys[job] in errors]
    failed += [{"seed": job.train.seed, "method": " and ".join(BASELINES), "error": errors[keys[job]]}
               for job in clip_jobs if keys[job] in errors]
    return rows, base, failed


# ---------------------------------------------------------------------------------------------------- the command

@click.command("ablate")
@click.argument("store", type=click.Path())
@click.option("--grid", "grid_texts", multiple=True,
              help="Grid as 'key=v1,v2;key=v1,...', e.g. 'head=gcf,fusion-only;dim=256,512'; may be repeated.")
@click.option("--grid-file", type=click.Path(), help="Grid as a JSON (or YAML) mapping key -> list of values; "
              "--grid keys replace its keys.")
@click.option("--seeds", type=click.IntRange(min=1), default=3, show_default=True,
              help="Train every configuration with seeds 0..N-1.")
@click.option("--jobs", type=click.IntRange(min=1),
              help="Parallel training processes [default: the cores; 1 with --device cuda].")
@click.option("--threads", type=click.IntRange(min=1), help="Torch threads per job [default: cores // jobs].")
@click.option("--stack", type=click.IntRange(min=1),
              help=f"Most runs of one head shape trained together [default: {STACK['cpu']} on cpu, "
                   f"{STACK['cuda']} on cuda]; 1 trains one run after another.")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N.")
@click.option("--out", help="Output directory; rerun with the same one to resume [default: runs/ablate-<store>].")
@click.option("--yes", is_flag=True, help=f"Train grids of more than {MAX_RUNS} runs.")
def ablate(store, grid_texts, grid_file, seeds, jobs, threads, stack, device, out, yes):
    """Train and test every combination of the grid on STORE (cached, in parallel); write results and plots.

    Keys: head, dim, layers, norm, reduction, dropout (the head) and recipe, lr, epochs, lam, clips, ...
    (any training option of `gcf train-head`). Runs of one head shape train together as one stack.
    """
    check_device(device)
    if not grid_texts and grid_file is None:
        raise GcfError("no grid; give --grid 'key=v1,v2;...' or --grid-file GRID.json, e.g. --grid 'dim=256,512'")
    grid = {}
    if grid_file:
        file_grid = read_grid_file(grid_file)        # its own errors name the file
        try:
            grid = check_grid(file_grid)
        except GcfError as e:
            raise GcfError(f"{grid_file}: {e}") from None
    if grid_texts:
        grid.update(check_grid(parse_grid(";".join(grid_texts))))   # a key in two --grid options is refused
    runs, _ = expand(grid, seeds)
    configs = len(runs) // seeds
    click.echo(f"grid: {' x '.join(f'{len(v)} {k}' for k, v in grid.items())} = {plural(configs, 'configuration')} "
               f"x {plural(seeds, 'seed')} = {plural(len(runs), 'run')}")
    if len(runs) > MAX_RUNS and not yes:
        raise GcfError(f"the grid has {len(runs)} runs (more than {MAX_RUNS}); pass --yes to train them all, "
                       "or shrink the grid or --seeds")
    out_dir = Path(out) if out else Path("runs") / f"ablate-{Path(store.rstrip('/')).stem}"
    t0 = time.perf_counter()
    jobs = jobs or (1 if device.startswith("cuda") else cpu_count())    # one process owns a GPU
    try:
        with open_out(out_dir):
            rows, base, failed = ablate_store(store, grid, seeds, out_dir, jobs, threads, stack, device, click.echo)
            for line in write_reports(out_dir, grid, rows, base, store, failed):
                click.echo(line)
    except KeyboardInterrupt:
        kept = len(list((out_dir / "cache").glob("*.json")))
        click.echo(f"\ninterrupted: {plural(kept, 'finished run')} (clip baselines included) kept in "
                   f"{out_dir / 'cache'}; rerun the same command to resume", err=True)
        raise SystemExit(130) from None
    click.echo(f"{plural(len(rows), 'run')} in {time.perf_counter() - t0:.1f}s; wrote {out_dir}")
    if failed:
        lost = {"runs": (len(runs) - len(rows), len(runs)), "clip baselines": (seeds - len(base) // len(BASELINES), seeds)}
        what = " and ".join(f"{n} of {total} {what}" for what, (n, total) in lost.items() if n)
        raise GcfError(f"{what} failed (first: {failed[0]['error']}); "
                       f"the others are in {out_dir}; rerun the same command to retry the failed ones")
