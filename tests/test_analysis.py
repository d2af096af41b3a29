"""`gcf predict`, `gcf localize` and `gcf explain` on `gcf synth` videos with known segments.

A tiny backbone (resnet18 width 0.25, 64 px crops so the last conv map is 2x2, random weights) is extracted once
into a real store; heads train for a few epochs. The numbers are not judged for quality here (docs/localize.md
measures that): the tests check that the tools reproduce the store's features, follow the equations, and write
what they say they write.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_gcf

from gcf.analysis.localize import (Detection, average_precision, mean_ap, read_segments, tiou,
                                   union_tiou)
from gcf.analysis.predict import (head_gradient, head_outputs, open_model, passes, predict_features, score_intervals,
                                  store_backbone, video_clips)
from gcf.errors import GcfError
from gcf.store import FeatureTable, open_store, select_clips

TINY = ("--backbone", "resnet18", "--option", "width=0.25", "--size", "64", "--weights", "random",
        "--batch-size", "8", "--workers", "1", "--quiet")


@pytest.fixture(scope="module")
def work(synth_videos, tmp_path_factory) -> Path:
    """A store of the synth videos, a GCF run (paper gate) and a max-pool run on it."""
    cwd = tmp_path_factory.mktemp("analysis")
    run_gcf("extract", *TINY, synth_videos, "-o", "features.zarr", cwd=cwd)
    run_gcf("train-head", "features.zarr", "--out", "run", "--epochs", "3", "--dim", "64", cwd=cwd)
    run_gcf("train-head", "features.zarr", "--out", "maxpool", "--head", "max-pool", "--epochs", "1", "--dim", "64",
            cwd=cwd)
    return cwd


def videos_of(synth_videos: Path, n: int) -> list[Path]:
    return sorted(synth_videos.glob("class_*/*.mp4"))[:n]


# ---- pure functions ----------------------------------------------------------------------------------------------

def test_passes_cover_every_clip_in_temporal_order():
    for n, c in [(3, 10), (10, 10), (11, 10), (37, 10), (100, 7)]:
        p = passes(n, c)
        assert p.shape == ((1, c) if n <= c else (-(-n // c), c))
        assert set(p.flatten()) == set(range(n))
        if n < c:                                                   # loop-padded, as training and eval pad
            assert (p[0] == np.arange(c) % n).all()
            continue
        assert (np.diff(p, axis=1) > 0).all()                       # each pass in temporal order
        if n > c:                    # one clip per equal segment j (positions floor((j + u) n / c)), as in training
            j = np.arange(c)
            assert ((p >= j * n // c) & (p * c < (j + 1) * n)).all()


def test_intervals_merge_consecutive_clips_above_the_threshold():
    clips = np.array([[i * 0.5, i * 0.5 + 0.5] for i in range(7)])
    att = np.array([0.9, 0.7, 0.2, 0.6, 0.5, 0.8, 0.95])
    got = score_intervals(att, clips, 0.5)
    assert [(i.start, i.end) for i in got] == [(0.0, 1.0), (1.5, 2.0), (2.5, 3.5)]
    assert got[0].score == pytest.approx(0.8) and got[2].score == pytest.approx(0.875)
    assert score_intervals(att, clips, 0.99) == []


def test_temporal_iou_and_average_precision_by_hand():
    assert tiou((0, 2), (1, 3)) == pytest.approx(1 / 3)
    assert union_tiou([(0, 1), (2, 3)], [(0.5, 2.5)]) == pytest.approx(1.0 / 3.0)
    assert union_tiou([], [(0, 1)]) == 0.0
    truth = {"a": [(0.0, 2.0)], "b": [(0.0, 1.0), (4.0, 5.0)]}
    dets = [Detection("a", 0, 0.0, 2.0, 0.9),      # hit
            Detection("a", 0, 0.0, 2.0, 0.8),      # duplicate: the segment is used -> false positive
            Detection("b", 0, 4.0, 5.2, 0.7),      # hit (tIoU 0.83)
            Detection("b", 0, 2.0, 3.0, 0.1)]      # miss
    # precision 1, 1/2, 2/3, 2/4 at recall 1/3, 1/3, 2/3, 2/3 -> envelope: 1/3 * 1 + 1/3 * 2/3
    assert average_precision(dets, truth, 0.5) == pytest.approx(1 / 3 + 2 / 9)
    assert average_precision(dets, truth, 0.9) == pytest.approx(1 / 3)
    labels = {"a": 0, "b": 1}
    assert mean_ap([Detection("a", 0, 0, 2, 1.0), Detection("b", 0, 0, 1, 1.0)], truth, labels, 0.5) == \
        pytest.approx(0.5)                            # class 0 perfect, class 1 (b's segments) found nothing


def test_read_segments_errors(tmp_path):
    good = tmp_path / "s.csv"
    good.write_text("video,start,end\na,0,1.5\na,3,4\nb,1,2\n")
    assert read_segments(good) == {"a": [(0.0, 1.5), (3.0, 4.0)], "b": [(1.0, 2.0)]}
    for text, msg in [("video,begin,end\na,0,1\n", "expected columns"), ("video,start,end\na,2,1\n", "not an interval"),
                      ("video,start,end\n", "no segments")]:
        good.write_text(text)
        with pytest.raises(GcfError, match=msg):
            read_segments(good)
    with pytest.raises(GcfError, match="cannot read segments"):
        read_segments(tmp_path / "missing.csv")


# ---- the run on real videos --------------------------------------------------------------------------------------

def test_backbone_rebuilt_from_the_store_reproduces_its_features(work, synth_videos):
    model = open_model(work / "run")
    backbone = store_backbone(model.meta)           # no --weights: the store's seeded random weights
    store = open_store(work / "features.zarr")
    for path in videos_of(synth_videos, 2):
        vid = str(path.relative_to(synth_videos).with_suffix(""))
        got = video_clips(backbone, model.meta, path)
        np.testing.assert_allclose(got.features, store.features(vid).astype(np.float32), rtol=2e-3, atol=2e-3)
        np.testing.assert_allclose(got.times[:, 0], store.clips(vid)["start_s"])


def test_head_outputs_average_passes_and_equal_the_head_on_short_videos(work):
    model = open_model(work / "run")
    head = model.head
    c = head.head_cfg.clips
    x = torch.randn(c - 3, head.head_cfg.in_dim)
    with torch.no_grad():
        logits, att = head_outputs(head, x)
        looped, _ = select_clips(FeatureTable(x.numpy(), np.array([0, c - 3]), ["v"], np.array([0]), ["test"]), [0], c)
        direct = head.head((torch.from_numpy(looped) - head.standardizer.mean) / head.standardizer.std,
                           torch.ones(1, c, dtype=bool))                # eval's uniform selection: loop-padded to C
        assert torch.allclose(logits, direct.logits[0], atol=1e-6)
        copies = np.arange(c) % (c - 3)
        assert torch.allclose(att, torch.stack([direct.att[0][copies == k].mean() for k in range(c - 3)]), atol=1e-6)
        long = torch.randn(3 * c + 1, head.head_cfg.in_dim)
        logits, att = head_outputs(head, long)
        idx = passes(len(long), c)
        outs = [head.head(((long - head.standardizer.mean) / head.standardizer.std)[i][None],
                          torch.ones(1, c, dtype=bool)) for i in idx]
        assert torch.allclose(logits, torch.stack([o.logits[0] for o in outs]).mean(0), atol=1e-6)
        k = 5                                          # clip 5: the mean of its att over the passes that hold it
        mine = [o.att[0][list(i).index(k)] for o, i in zip(outs, idx) if k in i]
        assert att[k] == pytest.approx(float(torch.stack(mine).mean()), abs=1e-6)


def test_predict_text_json_and_plots(work, synth_videos):
    paths = videos_of(synth_videos, 2)
    store = open_store(work / "features.zarr")
    out = run_gcf("predict", *paths, "--run", work / "run", "--json", "--top-k", "2", "--plot-dir", work / "plots")
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["video"] for r in rows] == [str(p) for p in paths]
    for r, path in zip(rows, paths):
        n = store.n_clips(str(path.relative_to(synth_videos).with_suffix("")))
        assert set(r) == {"video", "top", "attention", "evidence", "clips", "intervals", "by"} and r["by"] == "evidence"
        assert len(r["top"]) == 2 and r["top"][0]["prob"] >= r["top"][1]["prob"]
        assert r["top"][0]["label"] in store.meta.class_names
        assert len(r["attention"]) == len(r["evidence"]) == len(r["clips"]) == n
        assert all(0 <= a <= 1 for a in r["attention"]) and min(r["evidence"]) == 0 and max(r["evidence"]) == 1
        expected = score_intervals(np.array(r["evidence"]), np.array(r["clips"]), 0.5)
        assert r["intervals"] == [[pytest.approx(i.start), pytest.approx(i.end)] for i in expected] != []
    assert "RANDOM weights" in out.stderr
    assert sorted(p.name for p in (work / "plots").iterdir()) == sorted(f"{p.stem}.png" for p in paths)
    text = run_gcf("predict", paths[0], "--run", work / "run", "--threshold", "0.3", "--by", "att").stdout
    assert text.startswith(f"{paths[0]}: ") and "attention: " in text and "evidence: " in text
    assert "intervals (att > 0.3): " in text


def test_evidence_is_the_gradient_times_input_of_the_predicted_class(work):
    model = open_model(work / "run")
    head = model.head
    v = torch.randn(13, head.head_cfg.in_dim).abs()
    pred = predict_features(head, "v", v.numpy(), np.stack([np.arange(13), np.arange(1, 14)], 1) * 0.64, 8.32, 0.5)
    x = v.clone().requires_grad_(True)
    logits, _ = head_outputs(head, x)
    (g,) = torch.autograd.grad(logits[pred.top(1)[0][0]], x)
    e = (g * (v - head.standardizer.mean)).sum(1).numpy()
    np.testing.assert_allclose(pred.evidence, (e - e.min()) / (e.max() - e.min()), rtol=1e-4, atol=1e-5)
    assert pred.intervals == score_intervals(pred.evidence, pred.clips, 0.5)
    same_logits, _, grad = head_gradient(head, v.numpy(), target=2)        # any class: d y^2 / d v
    (g2,) = torch.autograd.grad(head_outputs(head, x)[0][2], x)
    assert torch.allclose(same_logits, logits.detach()) and torch.allclose(grad, g2)


def test_localize_reports_iou_and_writes_csv_and_json(work, synth_videos):
    segments = synth_videos / "segments.csv"
    out = run_gcf("localize", work / "run", "--segments", segments, "--split", "all", "-o", work / "loc.csv").stdout
    assert "12 videos (all)" in out and "mean tIoU" in out and "mAP@0.5" in out and "whole video" in out
    with open(work / "loc.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {r["video"] for r in rows} == set(open_store(work / "features.zarr").videos)
    assert all(0 <= float(r["tiou"]) <= 1 and 0 < float(r["tiou_whole"]) <= 1 for r in rows)
    truth = read_segments(segments)
    for r in rows:                                   # the whole video's tIoU is the segment's share of the video
        info = open_store(work / "features.zarr").info(r["video"])
        (s, e), = truth[r["video"]]
        assert float(r["tiou_whole"]) == pytest.approx((e - s) / info.duration, abs=1e-4)
    assert "note:" not in out and "warning:" not in out
    test = run_gcf("localize", work / "run", "--segments", segments, "-o", work / "loc.json").stdout
    doc = json.loads((work / "loc.json").read_text())
    assert len(doc["videos"]) == 3 and doc["summary"]["videos"] == 3       # the test split: one per class
    assert "note: 9 of its videos are not among the 3 localised (test) ones" in test   # the other splits' rows
    assert set(doc["summary"]) == {"videos", "by", "tious", "intervals", "whole", "unmatched", "beyond_end"}
    assert doc["summary"]["by"] == "evidence" and doc["summary"]["unmatched"] == 9
    frames = work / "frames.csv"                     # frame numbers given as seconds: starts after the video ends
    rows = ["video,start,end"] + [f"{v},{s * 25:g},{e * 25:g}" for v, segs in truth.items() for s, e in segs]
    frames.write_text("\n".join(rows) + "\n")
    late = run_gcf("localize", work / "run", "--segments", frames, "--split", "all", "-o", work / "late.csv").stdout
    assert re.search(r"warning: \d+ segments start after their video ends; the start and end columns must be "
                     r"seconds, not frames", late)
    assert len(doc["summary"]["intervals"]["map"]) == 3 and doc["videos"][0]["by"] == "evidence"
    run_gcf("localize", work / "maxpool", "-o", work / "maxpool.csv")      # any head localises by evidence
    # without -o the intervals go into the run
    run_gcf("localize", work / "run")
    assert (work / "run" / "intervals.csv").is_file()


def test_grad_cam_follows_equations_13_and_14(work, synth_videos):
    from gcf.analysis.gradcam import grad_cam
    from gcf.extract.video import iter_clips

    model = open_model(work / "run")
    backbone = store_backbone(model.meta)
    path = videos_of(synth_videos, 1)[0]
    clips = video_clips(backbone, model.meta, path)
    grads = head_gradient(model.head, clips.features, target=1)[2].numpy()
    frames = np.stack([c.frames for c in iter_clips(path, 16, 16, 64)][:2])
    maps = grad_cam(backbone, frames, grads[:2])
    # by hand: A from feature_map, dy/dA through the pooling by autograd, alpha = spatial mean, ReLU(sum_k alpha A)
    x = backbone.spec.normalize(torch.from_numpy(frames))
    a = backbone.feature_map(x).detach().requires_grad_(True)
    y = (a.mean(dim=(2, 3, 4)) * torch.from_numpy(grads[:2])).sum()
    (da,) = torch.autograd.grad(y, a)
    expected = torch.relu((da.mean(dim=(3, 4), keepdim=True) * a).sum(1)).detach().numpy()
    np.testing.assert_allclose(maps, expected, rtol=1e-4, atol=1e-6)
    assert maps.shape == (2, *a.shape[2:])


def test_explain_writes_video_and_contact_sheet_with_nonuniform_heat(work, synth_videos):
    import av
    from PIL import Image

    from gcf.analysis.gradcam import explain_video

    path = videos_of(synth_videos, 1)[0]
    out = run_gcf("explain", path, "--run", work / "run", "--out", work / "explain", "--threshold", "0.01",
                  "--max-clips", "2", "--size", "64").stdout
    assert "explained 2 of" in out
    movie, sheet = work / "explain" / f"{path.stem}_gradcam.mp4", work / "explain" / f"{path.stem}_gradcam.png"
    with av.open(str(movie)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(frames) == 2 * 16 and frames[0].std() > 0
    img = np.asarray(Image.open(sheet).convert("RGB"))
    assert img.shape[0] > 100 and img.std() > 0
    # the heat itself: not uniform in space (2x2 maps) for at least one clip, scaled to [0, 1]
    model = open_model(work / "run")
    backbone = store_backbone(model.meta)
    clips = video_clips(backbone, model.meta, path)
    pred = predict_features(model.head, str(path), clips.features, clips.times, clips.duration, 0.01)
    exp, shown = explain_video(model, backbone, path, pred, clips.features, 0.01, 2, 64)
    assert shown.shape == (2, 16, 64, 64, 3) and exp.heat.shape == (2, 16, 64, 64)
    assert exp.heat.max() == pytest.approx(1.0) and exp.heat.min() >= 0
    assert max(exp.heat[i, 0].std() for i in range(2)) > 0.01
    gif = run_gcf("explain", path, "--run", work / "run", "--out", work / "gif", "--threshold", "0.01", "--by", "att",
                  "--max-clips", "1", "--size", "32", "--format", "gif")
    assert gif.returncode == 0 and Image.open(work / "gif" / f"{path.stem}_gradcam.gif").n_frames == 16


# ---- bad input ---------------------------------------------------------------------------------------------------

def test_bad_inputs_give_one_line_errors(work, synth_videos, tmp_path):
    good = videos_of(synth_videos, 1)[0]
    broken = tmp_path / "broken.mp4"
    broken.write_text("not a video")

    def fails(*args, match):
        """The real CLI in-process (no interpreter start per case): exit 2 with one 'error:' line."""
        from click.testing import CliRunner

        from gcf.cli import main

        r = CliRunner().invoke(main, [str(a) for a in args])
        assert r.exit_code == 2, (r.output, r.exception)
        errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and match in errors[0], r.stderr
        return r

    # a broken video fails alone, in a real process: the good one is still predicted
    r = run_gcf("predict", broken, good, "--run", work / "run", "--json", check=False)
    assert r.returncode == 2 and [json.loads(line)["video"] for line in r.stdout.splitlines()] == [str(good)]
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(f"error: {broken}: cannot open as video ("), r.stderr
    fails("predict", good, "--run", work / "run", "--threshold", "1.5", match="strictly between 0 and 1")
    fails("predict", good, "--run", work / "run", "--threshold", "0", match="strictly between 0 and 1")
    fails("predict", good, "--run", tmp_path, match="not a gcf run")
    fails("localize", work / "maxpool", "--by", "att", match="'max-pool' has no att to threshold")
    fails("explain", good, "--run", work / "maxpool", "--out", tmp_path / "x", "--by", "att",
          match="'max-pool' has no att to threshold")
    fails("explain", good, "--run", work / "run", "--out", tmp_path / "x", "--threshold", "0.999", "--by", "att",
          match="no clip has att above 0.999")
    fails("localize", work / "run", "-o", tmp_path / "out.txt", match="a .csv or .json file")
    fails("predict", good, "--run", work / "run", "--weights", tmp_path / "none.pth", match="no such checkpoint")
    # a store that moved away from the run
    moved = tmp_path / "moved"
    shutil.copytree(work / "run", moved)
    config = json.loads((moved / "config.json").read_text())
    config["store"] = str(tmp_path / "gone.zarr")
    (moved / "config.json").write_text(json.dumps(config))
    fails("predict", good, "--run", moved, match="pass --store")
    assert open_model(moved, work / "features.zarr").store == work / "features.zarr"
    # a max-pool run classifies and localises by evidence, without attention
    r = run_gcf("predict", good, "--run", work / "maxpool", "--json")
    row = json.loads(r.stdout)
    assert row["attention"] is None and row["intervals"] and max(row["evidence"]) == 1 and "no clip gate" in r.stderr


def test_store_weights_are_checked(work, tmp_path):
    from gcf.extract.backbones import weights_identity

    meta = open_store(work / "features.zarr").meta
    backbone = store_backbone(meta)
    ckpt = tmp_path / "tiny.pth"
    torch.save({"state_dict": backbone.state_dict()}, ckpt)         # a plain checkpoint of the same weights
    by_ckpt = dataclasses.replace(meta, weights=weights_identity(ckpt),
                                  extra={k: v for k, v in meta.extra.items() if k != "weights_seed"})
    empty = tmp_path / "no-weights"
    with pytest.raises(GcfError, match="neither a path it recorded nor the published .*r3d18_K_200ep.pth; give it"):
        store_backbone(by_ckpt, weights_dir=empty)
    with pytest.raises(GcfError, match="not random weights"):
        store_backbone(by_ckpt, "random")
    x = torch.randn(1, 3, 16, 64, 64)
    reference = backbone.descriptor(x)
    assert torch.equal(store_backbone(by_ckpt, str(ckpt)).descriptor(x), reference)
    published = tmp_path / "published"                              # the file `gcf extract` defaults to
    published.mkdir()
    shutil.copy(ckpt, published / "r3d18_K_200ep.pth")
    assert torch.equal(store_backbone(by_ckpt, weights_dir=published).descriptor(x), reference)
    recorded = dataclasses.replace(by_ckpt, extra={**by_ckpt.extra, "weights_path": str(ckpt)})
    assert torch.equal(store_backbone(recorded, weights_dir=empty).descriptor(x), reference)
    torch.save({"state_dict": {k: v + 1 if v.is_floating_point() else v for k, v in backbone.state_dict().items()}},
               ckpt)
    with pytest.raises(GcfError, match="changed since the store was extracted"):
        store_backbone(recorded, weights_dir=empty)
    with pytest.raises(GcfError, match="is not the checkpoint the store was extracted with"):
        store_backbone(by_ckpt, str(ckpt))
    no_seed = dataclasses.replace(meta, extra={k: v for k, v in meta.extra.items() if k != "weights_seed"})
    with pytest.raises(GcfError, match="did not record their seed"):
        store_backbone(no_seed)
