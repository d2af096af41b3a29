"""Training, evaluation and run directories on small synthetic feature tables (Python API)."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from gcf.errors import GcfError
from gcf.head import HeadConfig
from gcf.head.data import Standardizer, carve, make_data, reuse_splits, rows_of, split_ids
from gcf.head.run import load_run, save_run
from gcf.head.synthetic import SynthConfig, synthesize
from gcf.head.train import (accuracy, batches, check_data, clip_baselines, clip_scores, evaluate, fit_clip_classifiers,
                            recipe, train)
from gcf.store import FeatureTable, select_clips

torch.set_num_threads(1)  # tiny heads: threads only add overhead, and the test machine is shared

SMALL = SynthConfig(classes=4, train_per_class=60, test_per_class=25, dim=32, min_clips=6, max_clips=12,
                    min_relevant=2, max_relevant=3, signal=4.0)
FAST = dict(epochs=10, batch_size=32, lr=1e-2)


@pytest.fixture(scope="module")
def data():
    return synthesize(SMALL).data()


@pytest.fixture(scope="module")
def trained(data):
    return train(data, HeadConfig(dim=32), recipe(**FAST))


def test_carve_is_stratified_and_seeded():
    labels = np.repeat(np.arange(3), 10)
    kept, val = carve(np.arange(30), labels, 0.2, seed=5)
    assert np.bincount(labels[val]).tolist() == [2, 2, 2]
    assert len(np.intersect1d(kept, val)) == 0 and len(kept) + len(val) == 30
    assert (carve(np.arange(30), labels, 0.2, seed=5)[1] == val).all()


def test_make_data_uses_val_as_test_when_the_store_has_no_test(data):
    t = data.table
    splits = ["val" if i % 5 == 0 else "train" for i in range(len(t.labels))]
    d = make_data(replace(t, splits=splits), data.class_names)
    assert set(d.test) == {i for i in range(len(t.labels)) if i % 5 == 0}
    assert len(d.val) > 0 and not set(d.val) & set(d.test)
    assert "val split" in d.notes[0]


def test_make_data_names_unlabelled_videos_and_classes_it_cannot_learn(data):
    t = data.table
    labels, splits = t.labels.copy(), ["train"] * len(t.labels)
    labels[:4] = -1
    for i in range(4):
        splits[i] = "test"                                   # the store's test split: all unlabelled
    d = make_data(replace(t, labels=labels, splits=splits), data.class_names)
    assert d.notes[0] == "left out 4 unlabelled videos"
    assert "(its test videos are unlabelled)" in d.notes[1] and not {0, 1, 2, 3} & set(d.test)
    assert not any("no training video" in n for n in d.notes)
    features = t.features.copy()
    features[t.offsets[0]:t.offsets[4]] = np.nan              # labelled test videos, all broken
    d = make_data(replace(t, features=features, splits=splits), data.class_names)
    assert "(its test videos have NaN/Inf features)" in d.notes[1]
    only_test = int(labels[4])                               # every video of one class in test
    splits = ["test" if labels[i] == only_test else "train" for i in range(len(labels))]
    d = make_data(replace(t, labels=labels, splits=splits), data.class_names)
    assert d.notes[-1] == (f"1 class in test with no training video ({data.class_names[only_test]!r}): "
                           "their test videos cannot be classified right")


def test_make_data_leaves_out_videos_with_nan_or_inf_features(data):
    t = data.table
    features = t.features.copy()
    features[t.offsets[3] + 1, 5], features[t.offsets[7], 0] = np.nan, np.inf
    d = make_data(replace(t, features=features), data.class_names)
    used = np.concatenate([d.train, d.val, d.test])
    assert 3 not in used and 7 not in used and len(used) == len(t.labels) - 2
    assert d.notes[0] == f"left out 2 videos with NaN/Inf features ({t.video_ids[3]!r}, {t.video_ids[7]!r}); re-extract them"
    assert np.isfinite(Standardizer.fit(d.table, d.train).std.numpy()).all()
    broken = make_data(replace(t, features=np.full_like(t.features, np.nan)), data.class_names)
    with pytest.raises(GcfError, match=rf"no labelled videos to train on \(left out {len(t.labels)} videos with NaN/Inf "
                       r"features .*; re-extract them\); fix those videos and extract them again into a new store"):
        check_data(broken)                                    # the reason, and a fix that is not "label them"
    again = reuse_splits(d, split_ids(d))                     # eval of that run: same splits, the note kept
    assert again.notes[0] == d.notes[0] and again.notes[1].startswith("splits: the run's")
    assert all((getattr(again, n) == getattr(d, n)).all() for n in ("train", "val", "test"))
    run = make_data(t, data.class_names)                      # a run made before one of its test videos went bad
    bad = int(run.test[0])
    features = t.features.copy()
    features[t.offsets[bad]] = np.nan
    later = reuse_splits(make_data(replace(t, features=features), data.class_names), split_ids(run))
    assert later.notes[1].startswith("splits: the run's") and set(later.test) == set(run.test) - {bad}


@pytest.mark.parametrize("policy", ["uniform", "random"])
def test_batches_are_the_stores_clip_selection_standardised(data, policy):
    std = Standardizer.fit(data.table, data.train)
    cfg = recipe(batch_size=16, clips=10)
    got = list(batches(data.table, data.train[:40], cfg, std, policy, np.random.default_rng(3)))
    rng = np.random.default_rng(3)
    for i, (x, mask, y) in enumerate(got):
        v = data.train[:40][16 * i:16 * (i + 1)]
        ref, ref_mask = select_clips(data.table, v, 10, policy, rng)
        assert torch.equal(x, std(ref)) and (mask.numpy() == ref_mask).all()
        assert (y.numpy() == data.table.labels[v]).all()
    assert [len(b[2]) for b in got] == [16, 16, 8]


def test_standardizer_fits_train_clips(data):
    std = Standardizer.fit(data.table, data.train)
    x = std(data.table.features[rows_of(data.table, data.train)])
    assert torch.allclose(x.mean(0), torch.zeros(x.shape[1]), atol=1e-3)
    assert torch.allclose(x.std(0), torch.ones(x.shape[1]), atol=1e-2)


def test_standardizer_is_per_dimension_and_keeps_a_small_spread_on_a_large_offset(data):
    t = data.table
    features = t.features.astype(np.float32)
    features[:, 0] += 1e6                                               # one dimension far off zero (spread ~1)
    features[:, 1] = 3.0                                                # a constant dimension
    std = Standardizer.fit(replace(t, features=features), data.train)
    assert std.std[1] == 1.0 and std.mean[1] == 3.0
    assert abs(float(std.std[0]) - float(data.table.features[:, 0].std())) < 0.1   # not cancelled to 0 or 1
    x = std(features[rows_of(t, data.train)])
    assert torch.allclose(x[:, 2:].std(0), torch.ones(x.shape[1] - 2), atol=1e-2)   # the others still standardised


def test_training_beats_chance_and_averaging(data, trained):
    assert trained.metrics["top1"] > 0.6                                  # chance is 0.25
    assert [h["epoch"] for h in trained.history] == list(range(1, FAST["epochs"] + 1))
    clf = fit_clip_classifiers(data, [recipe(**FAST)])[0]
    assert len(clf.history) == recipe().epochs     # the baseline trains the recipe's epochs, not FAST's 10
    base = clip_baselines(clip_scores(clf, data.table, data.test), data.table, data.test)
    assert trained.metrics["top1"] > base["D-Clips"]["top1"]


def test_training_is_deterministic_for_a_seed(data, trained):
    again = train(data, HeadConfig(dim=32), recipe(**FAST))
    for k, v in trained.head.state_dict().items():
        assert torch.equal(v, again.head.state_dict()[k]), k


def test_clip_baselines_by_hand():
    table = FeatureTable(np.zeros((5, 1)), np.array([0, 3, 5]), ["a", "b"], np.array([1, 0]), ["test", "test"])
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.3, 0.7], [0.8, 0.2], [0.4, 0.6]])
    out = clip_baselines(probs, table, np.array([0, 1]))
    assert out["C-Clip"]["top1"] == 0.5      # centre clips: a -> clip 1 says 1 (right), b -> clip 4 says 1 (wrong)
    assert out["D-Clips"]["top1"] == 1.0     # means: a (0.47, 0.53) -> 1, b (0.6, 0.4) -> 0


def test_accuracy_top5_and_mean_class():
    scores = np.array([[0.9, 0.1], [0.9, 0.1], [0.9, 0.1], [0.1, 0.9]])
    m = accuracy(scores, np.array([0, 0, 0, 0]))
    assert m["top1"] == 0.75 and m["top5"] == 1.0 and m["mean_class"] == 0.75
    m = accuracy(np.array([[0.9, 0.1]] * 4), np.array([0, 0, 0, 1]))   # class 0 all right, class 1 all wrong
    assert m["top1"] == 0.75 and m["mean_class"] == 0.5
    m = accuracy(np.array([[0.9, 0.1]] * 11 + [[0.1, 0.9]] * 13), np.zeros(24, dtype=int))
    assert m["top1"] == 11 / 24 and m["mean_class"] == 11 / 24    # exact fractions (float32 gave 0.45833334...)


def test_run_round_trip_reproduces_predictions(tmp_path, data, trained):
    source = {"store": "x.zarr", "backbone": "toy", "weights": "random", "feature_dim": SMALL.dim,
              "class_names": list(data.class_names)}
    save_run(tmp_path / "run", trained, None, source, split_ids(data))
    for name in ("config.json", "splits.json", "head.safetensors", "history.csv", "metrics.json", "curves.png"):
        assert (tmp_path / "run" / name).stat().st_size > 0
    run = load_run(tmp_path / "run")
    assert run.head.head_cfg == trained.head_cfg and run.head.cfg == trained.cfg
    assert run.splits["test"] == [data.table.video_ids[v] for v in data.test]
    again, logits = evaluate(run.head, data)
    assert again == trained.metrics
    assert torch.equal(logits, evaluate(trained, data)[1])


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(data):
    r = train(data, HeadConfig(dim=32), recipe(**dict(FAST, lr=1e30)))
    assert r.stopped and "kept the last good checkpoint (epoch 0)" in r.stopped
    assert all(torch.isfinite(p).all() for p in r.head.parameters())
    assert r.metrics["top1"] >= 0.0


@pytest.mark.parametrize("bad, message", [(dict(lr=-1.0), "lr must be"), (dict(clips=0), "clips must be"),
                                          (dict(optimizer="adam"), "optimizer must be"),
                                          (dict(recipe="fast"), "unknown recipe 'fast'")])
def test_invalid_hyper_parameters(data, bad, message):
    with pytest.raises(ValueError, match=message):
        train(data, HeadConfig(dim=32), recipe(**bad))


def test_empty_split_and_one_class_are_refused(data):
    with pytest.raises(GcfError, match="the test split is empty"):
        train(replace(data, test=data.test[:0]), HeadConfig(dim=32), recipe(**FAST))
    one = data.train[data.table.labels[data.train] == 0]
    with pytest.raises(GcfError, match="one class only"):
        train(replace(data, train=one), HeadConfig(dim=32), recipe(**FAST))


@pytest.mark.parametrize("name", ["gcf-clipgate", "fusion-only", "attention-only", "linear", "max-pool",
                                  "attention-pool", "transformer"])
def test_every_head_trains(data, name):
    r = train(data, HeadConfig(name=name, dim=32), recipe(epochs=2, batch_size=64))
    assert len(r.history) == 2 and 0.0 <= r.metrics["top1"] <= 1.0
