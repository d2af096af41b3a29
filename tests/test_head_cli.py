"""`gcf train-head`, `gcf eval` and `gcf head info` run as a user would, on real stores on disk."""

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch
from conftest import run_gcf

from gcf.head.synthetic import SynthConfig, Synthetic, synthesize, write_store
from gcf.store import StoreWriter, VideoInfo, open_store

SMALL = SynthConfig(classes=4, train_per_class=60, test_per_class=25, dim=32, min_clips=6, max_clips=12,
                    min_relevant=2, max_relevant=3, signal=4.0)
TRAIN = ("--dim", "32", "--epochs", "10", "--lr", "1e-2")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny heads on a shared test machine: one torch thread per gcf process."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OMP_NUM_THREADS", "1")
        yield


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("stores") / "toy.zarr"
    write_store(str(path), synthesize(SMALL))
    return path


@pytest.fixture(scope="module")
def run(store, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "run"
    proc = run_gcf("train-head", store, "--out", out, *TRAIN)
    assert "params" in proc.stdout and "MFLOPs" in proc.stdout and "test (100 videos): top-1" in proc.stdout
    return out


def test_train_head_writes_a_complete_run(run, store):
    for name in ("config.json", "head.safetensors", "clip_classifier.safetensors", "history.csv", "metrics.json",
                 "curves.png"):
        assert (run / name).stat().st_size > 0, name
    config = json.loads((run / "config.json").read_text())
    assert config["store"] == str(store.resolve()) and config["backbone"] == "synthetic"
    assert config["feature_dim"] == 32 and len(config["class_names"]) == 4
    assert len(config["standardizer"]["mean"]) == 32 and config["head"]["dim"] == 32
    assert config["notes"] == ["val: 24 videos carved from train (10%, at least one of every class with two or more), "
                               "stratified, seed 1"]
    assert len((run / "history.csv").read_text().splitlines()) == 11
    assert json.loads((run / "metrics.json").read_text())["top1"] > 0.5


def test_eval_prints_the_table_1_comparison(run):
    table = json.loads(run_gcf("eval", run, "--json").stdout)
    assert set(table) == {"C-Clip", "D-Clips", "gcf"}
    assert set(table["gcf"]) == {"top1", "top5", "mean_class"}
    assert table["gcf"]["top1"] > table["D-Clips"]["top1"]
    assert table["gcf"] == {k: v for k, v in json.loads((run / "metrics.json").read_text()).items() if k in table["gcf"]}
    assert (run / "confusion.png").stat().st_size > 0
    assert json.loads((run / "eval.json").read_text())["gcf"] == table["gcf"]


def test_eval_on_another_store_keeps_the_runs_own_results(run, store, tmp_path):
    other = tmp_path / "copy.zarr"
    shutil.copytree(store, other)
    before = (run / "eval.json").read_bytes() if (run / "eval.json").exists() else None
    out = run_gcf("eval", run, "--store", other).stdout
    assert f"wrote {run / 'eval-copy.json'} and {run / 'confusion-copy.png'}" in out
    assert json.loads((run / "eval-copy.json").read_text())["store"] == str(other)
    assert (run / "confusion-copy.png").stat().st_size > 0
    assert ((run / "eval.json").read_bytes() if (run / "eval.json").exists() else None) == before
    twin = tmp_path / "elsewhere" / "copy.zarr"                      # another store of the same name
    shutil.copytree(store, twin)
    out = run_gcf("eval", run, "--store", f"{twin}/").stdout
    tagged = sorted(p.name for p in run.glob("eval-copy-*.json"))
    assert len(tagged) == 1 and f"wrote {run / tagged[0]}" in out
    assert json.loads((run / tagged[0]).read_text())["store"] == str(twin)
    assert json.loads((run / "eval-copy.json").read_text())["store"] == str(other)   # the first stays
    run_gcf("eval", run, "--store", twin)
    assert sorted(p.name for p in run.glob("eval-copy-*.json")) == tagged             # the same name again


def test_eval_refuses_a_store_made_differently(run, store, tmp_path):
    synth = synthesize(SMALL)
    renamed = Synthetic(synth.table, tuple(f"other{c}" for c in range(4)), synth.relevant)
    write_store(str(tmp_path / "classes.zarr"), renamed)
    proc = run_gcf("eval", run, "--store", tmp_path / "classes.zarr", check=False)
    assert proc.returncode == 2 and "class_names" in proc.stderr and "differs from the run's" in proc.stderr
    write_store(str(tmp_path / "backbone.zarr"), synth, backbone="r3d18")
    proc = run_gcf("eval", run, "--store", tmp_path / "backbone.zarr", check=False)
    assert proc.returncode == 2 and "backbone 'r3d18' differs from the run's 'synthetic'" in proc.stderr


def test_train_head_default_out_and_existing_run(store, run, tmp_path):
    run_gcf("train-head", store, "--dim", "8", "--epochs", "1", cwd=tmp_path)
    assert (tmp_path / "runs" / "toy-gcf" / "config.json").is_file()
    proc = run_gcf("train-head", store, "--out", run, check=False)
    assert proc.returncode == 2 and "pass --overwrite" in proc.stderr and proc.stderr.count("\n") == 1


def test_bad_hyper_parameters_and_nan_loss(store, tmp_path):
    beyond = f"cuda:{torch.cuda.device_count()}" if torch.cuda.is_available() else "cuda"   # not there, or no CUDA
    proc = run_gcf("train-head", store, "--device", beyond, check=False)
    assert proc.returncode == 2 and f"--device {beyond}: " in proc.stderr and "--device cpu" in proc.stderr
    proc = run_gcf("train-head", store, "--lr", "-1", check=False)
    assert proc.returncode == 2 and "invalid hyper-parameter: lr must be a positive number" in proc.stderr
    proc = run_gcf("train-head", store, "--out", tmp_path / "nan", "--dim", "8", "--lr", "1e30", check=False)
    assert proc.returncode == 2 and "kept the last good checkpoint" in proc.stderr
    assert (tmp_path / "nan" / "head.safetensors").is_file()
    proc = run_gcf("eval", tmp_path / "nan")                            # the kept checkpoint evaluates, with a warning
    assert "warning: the run's head stopped early in training: " in proc.stderr and "top-1" in proc.stdout


def test_one_class_and_empty_split_are_refused(tmp_path):
    synth = synthesize(SMALL)
    t = synth.table
    one = replace(t, labels=np.zeros_like(t.labels))
    write_store(str(tmp_path / "one.zarr"), Synthetic(one, synth.class_names, synth.relevant))
    proc = run_gcf("train-head", tmp_path / "one.zarr", "--out", tmp_path / "r", check=False)
    assert proc.returncode == 2 and "one class only ('class00')" in proc.stderr
    only_test = replace(t, splits=["test"] * len(t.splits))
    write_store(str(tmp_path / "test.zarr"), Synthetic(only_test, synth.class_names, synth.relevant))
    proc = run_gcf("train-head", tmp_path / "test.zarr", "--out", tmp_path / "r", check=False)
    assert proc.returncode == 2 and f"the train split is empty: all {len(t.labels)} labelled videos are in the " \
        "store's val and test splits" in proc.stderr
    failed = tmp_path / "failed.zarr"        # every video failed at extraction: said so, not "add videos"
    with StoreWriter(failed, open_store(tmp_path / "test.zarr").meta) as w:
        for i in range(3):
            w.add_failure(VideoInfo(f"v{i}", f"/data/v{i}.mp4", 0, "train", 0, 0.0, 0.0), "moov atom not found")
    proc = run_gcf("train-head", failed, "--out", tmp_path / "r", check=False)
    assert proc.returncode == 2 and "no labelled videos to train on (left out 3 videos that failed at " \
        "extraction" in proc.stderr and "fix those videos and extract them again into a new store" in proc.stderr


def take(synth: Synthetic, videos: np.ndarray, split: str = "train") -> Synthetic:
    """Videos of a synthetic table as a table of their own, all in one split."""
    t = synth.table
    rows = np.concatenate([np.arange(t.offsets[v], t.offsets[v + 1]) for v in videos])
    offsets = np.concatenate([[0], np.cumsum(np.diff(t.offsets)[videos])])
    table = replace(t, features=t.features[rows], offsets=offsets, video_ids=[t.video_ids[v] for v in videos],
                    labels=t.labels[videos], splits=[split] * len(videos))
    return Synthetic(table, synth.class_names, synth.relevant[rows])


def test_eval_tests_the_runs_videos_after_the_store_grew(tmp_path):
    synth = synthesize(SMALL)
    n = len(synth.table.labels)
    write_store(str(tmp_path / "grow.zarr"), take(synth, np.arange(0, n, 2)))     # no test split: one is carved
    run_gcf("train-head", tmp_path / "grow.zarr", "--out", tmp_path / "run", "--dim", "8", "--epochs", "2")
    tested = json.loads((tmp_path / "run" / "splits.json").read_text())["test"]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    write_store(str(tmp_path / "grow.zarr"), take(synth, np.arange(1, n, 2)))     # a resumed extract adds videos
    proc = run_gcf("eval", tmp_path / "run")
    assert f"splits: the run's ({len(tested)} test videos); {n - n // 2} videos added to the store since" in proc.stdout
    assert f"test split, {len(tested)} videos" in proc.stdout
    table = json.loads(run_gcf("eval", tmp_path / "run", "--json").stdout)
    assert table["gcf"] == {k: metrics[k] for k in table["gcf"]}                  # the same videos train-head tested
    one_each = [int(np.flatnonzero(synth.table.labels == c)[0]) for c in range(SMALL.classes)]
    write_store(str(tmp_path / "tiny.zarr"), take(synth, np.asarray(one_each)))   # too small to carve a test split
    proc = run_gcf("eval", tmp_path / "run", "--store", tmp_path / "tiny.zarr", check=False)
    assert proc.returncode == 2 and "tiny.zarr: no test videos (" in proc.stderr and proc.stderr.count("\n") == 1


def test_head_info_reports_table_3_complexity():
    out = run_gcf("head", "info", "--in-dim", "2048", "--dim", "128", "--clips", "10", "--classes", "600").stdout
    assert "0.881M params, 16.26 MFLOPs (8.13M MACs)" in out
