"""`gcf store info/verify/import/export` run as a user would, on real files."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO, run_gcf

from gcf.store import open_store

BACKENDS = [".zarr", ".h5"]


def write_folder(folder, n_videos=6, dim=16):
    """One .npy per video as video_features writes, plus labels.csv; returns {video: features}."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    feats, rows = {}, ["video,label,split"]
    for i in range(n_videos):
        x = rng.standard_normal((2 + i, dim)).astype(np.float32)
        sub = folder / ("a" if i % 2 else "b")
        sub.mkdir(exist_ok=True)
        np.save(sub / f"clip_{i}.npy", x)
        feats[f"clip_{i}"] = x
        rows.append(f"clip_{i},{'walk' if i % 2 else 'run'},{'train' if i < 4 else 'test'}")
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    return feats


@pytest.mark.parametrize("suffix", BACKENDS)
def test_import_info_verify_export(tmp_path, suffix):
    feats = write_folder(tmp_path / "feats")
    store = tmp_path / f"s{suffix}"
    out = run_gcf("store", "import", tmp_path / "feats", "--labels", tmp_path / "feats" / "labels.csv", "-o", store,
                  "--backbone", "r2plus1d_34", "--fps", "25").stdout
    assert "imported 6 of 6 videos (0 already in the store, 0 failed)" in out
    r = open_store(store)
    assert sorted(r.videos) == sorted(feats) and r.meta.backbone == "r2plus1d_34"
    assert r.meta.class_names == ("run", "walk") and r.meta.weights == "unknown" and r.meta.feature_dim == 16
    np.testing.assert_array_equal(r.features("clip_3"), feats["clip_3"].astype(np.float16))
    assert r.label("clip_3") == 1 and r.split("clip_5") == "test"
    np.testing.assert_allclose(r.clips("clip_1")["end_s"], [16 / 25, 32 / 25, 48 / 25])

    args = ("store", "import", tmp_path / "feats", "--labels", tmp_path / "feats" / "labels.csv", "-o", store)
    assert "imported 0 of 6 videos (6 already in the store, 0 failed)" in run_gcf(*args, "--backbone", "r2plus1d_34",
                                                                                 "--fps", "25").stdout
    other = run_gcf(*args, check=False)   # other settings than the store was made with
    assert other.returncode == 2 and 'backbone is "r2plus1d_34" in the store but "imported" here' in other.stderr

    text = run_gcf("store", "info", store).stdout
    for words in ("6 ok, 0 failed", "clips:     27", "16-d float16", "2 (run, walk)", "train 4, test 2",
                  "r2plus1d_34", "MiB on disk"):
        assert words in text
    info = json.loads(run_gcf("store", "info", store, "--json").stdout)
    assert info["videos"] == 6 and info["clips"] == 27 and info["splits"] == {"train": 4, "test": 2}
    assert info["failures"] == 0 and info["feature_dim"] == 16 and info["size_bytes"] > 0

    assert run_gcf("store", "verify", store, "--labels", tmp_path / "feats" / "labels.csv").stdout.endswith(": ok\n")

    run_gcf("store", "export", store, "-o", tmp_path / "out.npz")
    with np.load(tmp_path / "out.npz", allow_pickle=False) as z:
        ids = z["video_ids"].tolist()
        assert sorted(ids) == sorted(feats) and z["offsets"][-1] == 27 and len(z["start_s"]) == 27
        k = ids.index("clip_4")
        np.testing.assert_array_equal(z["features"][z["offsets"][k]:z["offsets"][k + 1]],
                                      feats["clip_4"].astype(np.float16))
        assert z["class_names"].tolist() == ["run", "walk"] and json.loads(str(z["meta"]))["backbone"] == "r2plus1d_34"


def test_import_strided_clips(tmp_path):
    """Features of 8x8 clips (Slow R50): the clip spans 64 frames, the store records the step (schema 2)."""
    write_folder(tmp_path / "feats")
    store = tmp_path / "s.zarr"
    run_gcf("store", "import", tmp_path / "feats", "--labels", tmp_path / "feats" / "labels.csv", "-o", store,
            "--clip-len", "8", "--frame-step", "8", "--fps", "32")
    r = open_store(store)
    assert (r.meta.clip_len, r.meta.frame_step, r.meta.stride, r.meta.schema_version) == (8, 8, 64, 2)
    c = r.clips("clip_1")
    assert c["start_frame"].tolist() == [0, 64, 128] and c["end_s"].tolist() == [2.0, 4.0, 6.0]
    assert r.info("clip_1").n_frames == 192
    assert "frame_step 8" in run_gcf("store", "info", store).stdout
    bad = run_gcf("store", "import", tmp_path / "feats", "--labels", tmp_path / "feats" / "labels.csv", "-o",
                  tmp_path / "bad.zarr", "--clip-len", "8", "--frame-step", "8", "--stride", "4", check=False)
    assert bad.returncode == 2 and "overlapping clips need a stride that is a multiple of the frame step" in bad.stderr
    assert not (tmp_path / "bad.zarr").exists()


def test_verify_labels_name_videos_by_id_base_or_stem(tmp_path):
    """labels.csv rows name videos as `gcf extract` reads them: id, id without the extension a twin file's id
    keeps (walk/a -> walk/a.mkv, walk/a.mp4), id with an extension, or file stem; only unnamed ones are missing."""
    folder = tmp_path / "feats"
    folder.mkdir()
    for name in ("a.mkv", "a.mp4", "b", "c"):
        np.save(folder / f"{name}.npy", np.ones((2, 4), np.float32))
    (folder / "labels.csv").write_text("video,label\na.mkv,x\na.mp4,x\nb,y\nc,y\n")
    store = tmp_path / "s.zarr"
    run_gcf("store", "import", folder, "--labels", folder / "labels.csv", "-o", store)
    rows = tmp_path / "rows.csv"
    rows.write_text("video\na\nb.mp4\nc\n")
    assert run_gcf("store", "verify", store, "--labels", rows).stdout.endswith(": ok\n")
    rows.write_text("video\na\nd\n")
    proc = run_gcf("store", "verify", store, "--labels", rows, check=False)
    assert proc.returncode == 1 and "1 video listed in" in proc.stdout and "(e.g. d)" in proc.stdout


def test_verify_finds_damage(tmp_path):
    write_folder(tmp_path / "feats")
    store = tmp_path / "s.zarr"
    run_gcf("store", "import", tmp_path / "feats", "--labels", tmp_path / "feats" / "labels.csv", "-o", store)
    (tmp_path / "feats" / "more.csv").write_text("video,label\nclip_0,run\nclip_99,walk\n")
    missing = run_gcf("store", "verify", store, "--labels", tmp_path / "feats" / "more.csv", check=False)
    assert missing.returncode == 1 and "1 video listed" in missing.stdout and "clip_99" in missing.stdout

    (chunk,) = store.glob("parts/*/features/c.0.0")
    raw = bytearray(chunk.read_bytes())
    raw[0:2] = np.array([np.nan], dtype=np.float16).tobytes()   # first clip of the first video
    chunk.write_bytes(bytes(raw))
    nan = run_gcf("store", "verify", store, check=False)
    assert nan.returncode == 1 and "NaN/Inf values" in nan.stdout

    chunk.unlink()
    gone = run_gcf("store", "verify", store, check=False)
    assert gone.returncode == 1 and "missing or truncated" in gone.stdout


@pytest.mark.parametrize("case, expect", [
    ("missing_row", "labels.csv: no row for video 'clip_5'"),
    ("ragged", "clip_2.npy: not a numeric array"),
    ("wrong_dim", "clip_3.npy: shape [5, 8] but other files have 16 features per clip"),
    ("one_dim", "clip_1.npy: float32 array of shape [16]"),
    ("bad_split", "labels.csv:3: unknown split 'dev'"),
])
def test_import_bad_input_keeps_store(tmp_path, case, expect):
    folder = tmp_path / "feats"
    store = tmp_path / "s.zarr"
    write_folder(folder)
    labels = folder / "labels.csv"
    run_gcf("store", "import", folder, "--labels", labels, "-o", store)   # a store with 6 videos
    for f in folder.rglob("*.npy"):
        f.unlink()
    write_folder(folder, n_videos=6)
    for f in folder.rglob("clip_*.npy"):                                   # new ids, same layout
        f.rename(f.with_name(f.name.replace("clip_", "new_")))
    labels.write_text(labels.read_text().replace("clip_", "new_"))
    ids = {f"new_{i}" for i in range(6)}
    path = {f.stem: f for f in folder.rglob("*.npy")}
    if case == "missing_row":
        labels.write_text("\n".join(l for l in labels.read_text().splitlines() if not l.startswith("new_5")))
    elif case == "ragged":
        np.save(path["new_2"], np.array([np.zeros(3), np.zeros(4)], dtype=object), allow_pickle=True)
    elif case == "wrong_dim":
        np.save(path["new_3"], np.zeros((5, 8), np.float32))
    elif case == "one_dim":
        np.save(path["new_1"], np.zeros(16, np.float32))
    elif case == "nan":
        x = np.load(path["new_4"])
        x[1, 2] = np.nan
        np.save(path["new_4"], x)
    elif case == "bad_split":
        labels.write_text(labels.read_text().replace("new_1,walk,train", "new_1,walk,dev"))
    proc = run_gcf("store", "import", folder, "--labels", labels, "-o", store, check=False)
    assert proc.returncode == 2
    err = proc.stderr.strip().replace("new_", "clip_")
    assert err.count("\n") == 0 and err.startswith("error: ") and expect in err
    r = open_store(store)
    assert {f"clip_{i}" for i in range(6)} <= set(r.videos)                # nothing that was there is lost
    assert not set(r.videos) & ids


@pytest.mark.parametrize("suffix", BACKENDS)
def test_import_records_a_bad_file_goes_on_and_a_rerun_adds_it_once_fixed(tmp_path, suffix):
    feats = write_folder(tmp_path / "feats")
    labels, store = tmp_path / "feats" / "labels.csv", tmp_path / f"s{suffix}"
    bad = next((tmp_path / "feats").rglob("clip_2.npy"))
    np.save(bad, np.where(np.arange(16) == 3, np.inf, feats["clip_2"]).astype(np.float32))
    proc = run_gcf("store", "import", tmp_path / "feats", "--labels", labels, "-o", store)
    assert "imported 5 of 6 videos (0 already in the store, 1 failed)" in proc.stdout
    assert re.search(r"failed: .*clip_2.npy.*NaN/Inf", proc.stdout)
    r = open_store(store)
    assert sorted(r.videos) == ["clip_0", "clip_1", "clip_3", "clip_4", "clip_5"] and list(r.failed) == ["clip_2"]
    rows = lambda: sum(len(t["id"]) for p in open_store(store).parts for t in p.tables)  # noqa: E731
    before = rows()
    still = run_gcf("store", "import", tmp_path / "feats", "--labels", labels, "-o", store).stdout
    assert "imported 0 of 6 videos (5 already in the store, 1 failed)" in still and rows() == before  # no new row
    np.save(bad, feats["clip_2"])                                        # fixed: the rerun adds it and only it
    again = run_gcf("store", "import", tmp_path / "feats", "--labels", labels, "-o", store).stdout
    assert "imported 1 of 6 videos (5 already in the store, 0 failed)" in again
    r = open_store(store)
    assert sorted(r.videos) == sorted(feats) and not r.failed
    np.testing.assert_array_equal(r.features("clip_2"), feats["clip_2"].astype(np.float16))


def test_import_adds_another_folder_to_a_store_and_orders_integer_labels_as_numbers(tmp_path):
    store = tmp_path / "s.zarr"
    for name, labels in (("one", ["10", "2", "2"]), ("two", ["10", "2"]), ("three", ["7"]), ("four", ["2"])):
        folder = tmp_path / name
        folder.mkdir()
        rows = ["video,label,split"]
        for i, label in enumerate(labels):
            np.save(folder / f"{name}_{i}.npy", np.full((2, 4), float(i), np.float32))
            rows.append(f"{name}_{i},{label},train")
        (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    run_gcf("store", "import", tmp_path / "one", "--labels", tmp_path / "one" / "labels.csv", "-o", store)
    assert open_store(store).meta.class_names == ("2", "10")                 # 2 before 10, as numbers
    with open(tmp_path / "two" / "labels.csv", "a") as f:
        f.write("not_here,99,train\n")                                      # a row without a file: not imported
    out = run_gcf("store", "import", tmp_path / "two", "--labels", tmp_path / "two" / "labels.csv", "-o", store,
                  "--fps", "25")                                             # another folder, fps, the same classes
    assert "imported 2 of 2 videos" in out.stdout
    r = open_store(store)
    assert len(r.videos) == 5 and r.label("two_0") == 1 and r.meta.extra["imported_from"] == str(tmp_path / "one")
    new = run_gcf("store", "import", tmp_path / "three", "--labels", tmp_path / "three" / "labels.csv", "-o", store,
                  check=False)
    assert new.returncode == 2 and "label(s) '7' are not among the 2 classes of" in new.stderr
    assert len(open_store(store).videos) == 5
    (tmp_path / "four" / "four_0.npy").rename(tmp_path / "four" / "one_1.npy")      # an id the store has, elsewhere
    (tmp_path / "four" / "labels.csv").write_text("video,label,split\none_1,2,test\n")
    again = run_gcf("store", "import", tmp_path / "four", "--labels", tmp_path / "four" / "labels.csv", "-o", store)
    assert "imported 0 of 1 video (1 already in the store" in again.stdout
    assert f"warning: 1 video id(s) are in the store from other files and were kept: one_1 ({tmp_path / 'one'}" \
        in again.stdout
    odd = tmp_path / "odd"
    odd.mkdir()
    for i in range(3):
        np.save(odd / f"o{i}.npy", np.ones((1, 4), np.float32))
    (odd / "labels.csv").write_text('video,label,split\no0,\u00b2,train\no1,3,train\no2,"x, y",train\n')  # int("²") fails
    run_gcf("store", "import", odd, "--labels", odd / "labels.csv", "-o", tmp_path / "odd.zarr")
    assert open_store(tmp_path / "odd.zarr").meta.class_names == ("3", "x, y", "\u00b2")    # text order
    assert 'classes:   3 (3, "x, y", \u00b2)' in run_gcf("store", "info", tmp_path / "odd.zarr").stdout


def test_store_cli_does_not_import_torch():
    code = ("import sys; from gcf.store.cli import store; import gcf.store; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)
