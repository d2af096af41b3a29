"""Bad input: one clear GcfError naming the file and the fix, and nothing already in the store is lost."""

from __future__ import annotations

import dataclasses
import json

import h5py
import numpy as np
import pytest
from test_store import META, clip_video

from gcf.errors import GcfError
from gcf.store import StoreWriter, VideoInfo, open_store

BACKENDS = [".zarr", ".h5"]


@pytest.fixture(params=BACKENDS)
def store(request, tmp_path):
    """A store holding two videos."""
    path = tmp_path / f"s{request.param}"
    with StoreWriter(path, META) as w:
        w.add(*clip_video(0, 3))
        w.add(*clip_video(1, 2))
    return path


def assert_intact(path):
    r = open_store(path)
    assert r.videos == ["cls/v0", "cls/v1"]
    np.testing.assert_array_equal(r.features("cls/v0"), clip_video(0, 3)[1].astype(np.float16))


def add_bad(path, **change):
    """Add video 2 with one argument replaced; return the GcfError message."""
    info, x, starts, times, logits = clip_video(2, 4)
    args = {"info": info, "features": x, "start_frames": starts, "times": times, "logits": logits}
    if "split" in change or "label" in change:
        args["info"] = dataclasses.replace(info, **{k: change.pop(k) for k in ("split", "label") if k in change})
    args.update(change)
    with pytest.raises(GcfError) as e:
        with StoreWriter(path, META) as w:
            w.add(**args)
    return str(e.value)


@pytest.mark.parametrize("change, words", [
    ({"features": np.zeros((4, 7))}, ["shape [4, 7]", "feature_dim 8"]),               # wrong dim
    ({"features": np.zeros(8)}, ["shape [8]", "[n_clips, 8]"]),                          # not 2-D
    ({"features": np.zeros((0, 8))}, ["n_clips >= 1", "record a failure"]),              # no clips
    ({"features": np.full((4, 8), np.nan)}, ["32 NaN/Inf values in features", "nothing was written"]),
    ({"features": np.full((4, 8), 1e6)}, ["float16 range", "dtype float32"]),
    ({"logits": np.full((4, 5), np.inf)}, ["NaN/Inf values in logits"]),
    ({"start_frames": np.arange(3)}, ["start_frames [3]", "[4]"]),
    ({"split": "training"}, ["unknown split 'training'", "train, val, test"]),
    ({"label": 3}, ["label 3", "0..2"]),
])
def test_bad_video_is_refused_and_store_kept(store, change, words):
    msg = add_bad(store, **change)
    assert "/data/cls/v2.mp4" in msg and str(store) in msg
    for w in words:
        assert w in msg
    assert_intact(store)


def test_meta_mismatch_names_each_field(store):
    other = dataclasses.replace(META, feature_dim=16, backbone="r2plus1d")
    with pytest.raises(GcfError) as e:
        StoreWriter(store, other)
    msg = str(e.value)
    assert msg.startswith(str(store)) and 'backbone is "resnext101" in the store but "r2plus1d" here' in msg
    assert "feature_dim is 8 in the store but 16 here" in msg and "--overwrite" in msg
    assert_intact(store)


@pytest.mark.parametrize("names, words", [(("run", "jump", "run"), "class name 'run' is given twice"),
                                          (("run", " "), "class 1 has a blank name")])
def test_blank_or_repeated_class_names_are_refused(tmp_path, names, words):
    with pytest.raises(GcfError, match=words):
        StoreWriter(tmp_path / "s.zarr", dataclasses.replace(META, class_names=names))
    assert not (tmp_path / "s.zarr").exists()


def test_other_schema_version_is_refused(store):
    if store.suffix == ".zarr":
        f = store / "zarr.json"
        doc = json.loads(f.read_text())
        doc["attributes"]["gcf_store"]["schema_version"] = 99
        f.write_text(json.dumps(doc))
    else:
        with h5py.File(store, "r+") as f:
            header = json.loads(f.attrs["gcf_store"])
            f.attrs["gcf_store"] = json.dumps({**header, "schema_version": 99})
    for action in (lambda: open_store(store), lambda: StoreWriter(store, META)):
        with pytest.raises(GcfError, match=r"store schema version 99, but this gcf .* reads versions 1 and 2"):
            action()


def test_not_a_store_and_bad_paths(tmp_path):
    (tmp_path / "x.zarr").mkdir()
    (tmp_path / "x.zarr" / "data.txt").write_text("mine")
    with pytest.raises(GcfError, match="not a gcf feature store"):
        open_store(tmp_path / "x.zarr")
    with pytest.raises(GcfError, match="not a gcf feature store"):
        StoreWriter(tmp_path / "x.zarr", META, overwrite=True)   # refuses to delete what is not a store
    assert (tmp_path / "x.zarr" / "data.txt").read_text() == "mine"
    with pytest.raises(GcfError, match="NAME.zarr"):
        open_store(tmp_path / "x.parquet")
    with pytest.raises(GcfError, match="no such feature store"):
        open_store(tmp_path / "missing.h5")
    with pytest.raises(GcfError, match="dtype 'float64'"):
        StoreWriter(tmp_path / "y.zarr", dataclasses.replace(META, dtype="float64"))


def test_same_video_twice_in_one_writer(tmp_path):
    with StoreWriter(tmp_path / "s.zarr", META) as w:
        w.add(*clip_video(0, 2))
        with pytest.raises(GcfError, match="already added by this writer"):
            w.add_failure(VideoInfo("cls/v0", "/data/cls/v0.mp4", 0, "", 0, 0.0, 0.0), "x")
    assert open_store(tmp_path / "s.zarr").videos == ["cls/v0"]
