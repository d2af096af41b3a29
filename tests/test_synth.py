import csv
import filecmp

import av
import decord
import numpy as np
import pytest
import torch
from conftest import run_gcf

from gcf.errors import GcfError
from gcf.extract.video import iter_clips
from gcf.synth import SynthSpec, make_dataset, make_video


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def pyav_frames(path):
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(stream)]
        return stream.codec_context.name, float(stream.average_rate), frames


def test_cli_writes_playable_dataset_with_consistent_csvs(tmp_path):
    out = tmp_path / "syn"
    proc = run_gcf("synth", out, "--classes", "2", "--per-class", "3", "--seed", "1", "--max-clips", "6")
    assert "wrote 6 videos" in proc.stdout
    labels, segments = read_csv(out / "labels.csv"), read_csv(out / "segments.csv")
    assert [r["video"] for r in labels] == [r["video"] for r in segments]
    assert sorted(p.relative_to(out).with_suffix("").as_posix() for p in out.rglob("*.mp4")) == \
        sorted(r["video"] for r in labels)
    for row, seg in zip(labels, segments):
        assert row["video"].split("/")[0] == row["label"]
        path = out / f"{row['video']}.mp4"
        vr = decord.VideoReader(str(path))
        codec, fps, frames = pyav_frames(path)
        if "libx264" in av.codecs_available:
            assert codec == "h264"
        assert len(vr) == len(frames) and 4 * 16 <= len(frames) < 7 * 16
        assert vr.get_avg_fps() == fps == 25
        assert vr[0].shape == frames[0].shape == (96, 128, 3)
        start, end = float(seg["start"]), float(seg["end"])
        assert 0 <= start and end <= len(frames) / 25 and 16 / 25 <= end - start <= len(frames) / 2 / 25 + 1e-9
    for label in ("class_0", "class_1"):           # 3 per class: round(0.6) val and test -> 1/1/1
        assert sorted(r["split"] for r in labels if r["label"] == label) == ["test", "train", "val"]


def test_same_seed_same_bytes_other_seed_other_videos(tmp_path):
    spec = SynthSpec(min_clips=1, max_clips=2)
    a = make_dataset(tmp_path / "a", classes=2, per_class=2, seed=7, spec=spec)
    b = make_dataset(tmp_path / "b", classes=2, per_class=2, seed=7, spec=spec)
    c = make_dataset(tmp_path / "c", classes=2, per_class=2, seed=8, spec=spec)
    assert all(filecmp.cmp(x, y, shallow=False) for x, y in zip(a, b))
    assert filecmp.cmp(tmp_path / "a" / "labels.csv", tmp_path / "b" / "labels.csv", shallow=False)
    assert not any(filecmp.cmp(x, y, shallow=False) for x, y in zip(a, c))


def test_class_object_shows_exactly_in_the_segment(synth_videos):
    """Saturated pixels (the class object) appear in the frames segments.csv gives, and nowhere else."""
    for seg in read_csv(synth_videos / "segments.csv"):
        frames = np.stack(pyav_frames(synth_videos / f"{seg['video']}.mp4")[2]).astype(int)
        colourful = ((frames.max(-1) - frames.min(-1)) > 100).mean(axis=(1, 2))
        t = np.arange(len(frames)) / 25
        inside = (t >= float(seg["start"]) - 1e-6) & (t < float(seg["end"]) - 1e-6)
        assert colourful[inside].min() > 0.05, seg
        assert colourful[~inside].max() < 0.005, seg


def test_classes_separate_through_a_random_3d_cnn(synth_videos):
    """Action clips of one class are nearer their own class centroid in a random conv3d's pooled features."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv3d(3, 32, 3, stride=2), torch.nn.ReLU(),
                              torch.nn.Conv3d(32, 64, 3, stride=2), torch.nn.ReLU(),
                              torch.nn.AdaptiveAvgPool3d(1), torch.nn.Flatten())
    feats, labels, action = [], [], []
    segs = {r["video"]: (float(r["start"]), float(r["end"])) for r in read_csv(synth_videos / "segments.csv")}
    for row in read_csv(synth_videos / "labels.csv"):
        start, end = segs[row["video"]]
        for clip in iter_clips(synth_videos / f"{row['video']}.mp4", size=64):
            x = torch.from_numpy(clip.frames).permute(3, 0, 1, 2)[None].float() / 255
            with torch.no_grad():
                feats.append(net(x)[0])
            labels.append(row["label"])
            action.append(min(clip.end_s, end) - max(clip.start_s, start) >= 0.5 * (clip.end_s - clip.start_s))
    feats, labels, action = torch.stack(feats), np.array(labels), np.array(action)
    feats = (feats - feats.mean(0)) / (feats.std(0) + 1e-6)
    names = sorted(set(labels))
    centroids = torch.stack([feats[torch.from_numpy(action & (labels == n))].mean(0) for n in names])
    background = feats[torch.from_numpy(~action)].mean(0)
    pred = torch.cdist(feats[torch.from_numpy(action)], torch.cat([centroids, background[None]])).argmin(1)
    assert (np.array(names + ["none"])[pred.numpy()] == labels[action]).mean() >= 0.95


def test_make_video_any_length_and_mpeg4(tmp_path):
    path = make_video(tmp_path / "short.mp4", 5, label=1, classes=3, action=(0, 5), spec=SynthSpec(codec="mpeg4"))
    codec, fps, frames = pyav_frames(path)
    assert codec == "mpeg4" and len(frames) == 5 and len(decord.VideoReader(str(path))) == 5


def test_bad_arguments_are_one_line_errors(tmp_path):
    with pytest.raises(GcfError, match="even"):
        make_video(tmp_path / "odd.mp4", 5, spec=SynthSpec(width=97))
    proc = run_gcf("synth", tmp_path / "x", "--classes", "0", check=False)
    assert proc.returncode == 2 and "--classes" in proc.stderr
