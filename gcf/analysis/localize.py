"""Temporal localisation of a store's videos: intervals, temporal IoU and detection mAP against ground truth.

Intervals come from `predict.score_intervals`: runs of consecutive clips whose score (the clip evidence, or the
gate att of paper 3.1, which "can be used to locate the time interval of an action event") passes the threshold,
merged into [start of the first clip, end of the last] seconds, scored by their mean score. Detections for mAP are
(video, class, start, end, score) with score = the interval's score x the video's probability of that class;
they are matched to ground-truth segments of the video's true class, ActivityNet style (greedy by score, each
segment used once, interpolated AP per class).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gcf.analysis.predict import Model, Prediction, predict_features
from gcf.errors import GcfError

TIOUS = (0.3, 0.5, 0.7)
Segments = dict[str, list[tuple[float, float]]]     # video id -> [(start, end)] seconds


def _union(intervals: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Sorted, disjoint union of intervals."""
    out: list[list[float]] = []
    for s, e in sorted(intervals):
        if out and s <= out[-1][1]:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return [(s, e) for s, e in out]


def _length(intervals: list[tuple[float, float]]) -> float:
    return float(sum(e - s for s, e in intervals))


def union_tiou(pred: list[tuple[float, float]], truth: list[tuple[float, float]]) -> float:
    """Temporal IoU of two sets of intervals taken as unions of time: |P & T| / |P | T| (0 when both are empty)."""
    p, t = _union(pred), _union(truth)
    inter = sum(max(0.0, min(pe, te) - max(ps, ts)) for ps, pe in p for ts, te in t)
    union = _length(p) + _length(t) - inter
    return inter / union if union > 0 else 0.0


def tiou(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Temporal IoU of two single intervals."""
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = (a[1] - a[0]) + (b[1] - b[0]) - inter
    return inter / union if union > 0 else 0.0


@dataclass(frozen=True)
class Detection:
    video: str
    label: int
    start: float
    end: float
    score: float


def average_precision(detections: list[Detection], truth: Segments, threshold: float) -> float:
    """Interpolated AP of one class's detections against its ground-truth segments (video -> segments)."""
    n_truth = sum(len(s) for s in truth.values())
    if n_truth == 0:
        return float("nan")
    used = {v: np.zeros(len(s), bool) for v, s in truth.items()}
    hits = []
    for d in sorted(detections, key=lambda d: -d.score):
        best, best_iou = -1, threshold          # the best unused segment of the video with tIoU >= threshold
        for j, seg in enumerate(truth.get(d.video, [])):
            iou = tiou((d.start, d.end), seg)
            if not used[d.video][j] and iou >= best_iou:
                best, best_iou = j, iou
        if best >= 0:
            used[d.video][best] = True
        hits.append(best >= 0)
    hits = np.asarray(hits, bool)
    tp = np.cumsum(hits)
    precision = tp / np.arange(1, len(hits) + 1)
    recall = tp / n_truth
    # precision envelope, integrated over recall (VOC 2010+ / ActivityNet)
    precision = np.concatenate([[0.0], precision, [0.0]])
    recall = np.concatenate([[0.0], recall, [1.0]])
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    steps = np.flatnonzero(recall[1:] != recall[:-1]) + 1
    return float(np.sum((recall[steps] - recall[steps - 1]) * precision[steps]))


def mean_ap(detections: list[Detection], truth: Segments, labels: dict[str, int],
            threshold: float) -> float:
    """Mean over classes (with ground truth) of the AP at one tIoU threshold; `labels` gives each video's class."""
    aps = []
    for c in sorted(set(labels[v] for v in truth)):
        segs = {v: s for v, s in truth.items() if labels[v] == c}
        aps.append(average_precision([d for d in detections if d.label == c], segs, threshold))
    return float(np.nanmean(aps)) if aps else float("nan")


def read_segments(path: str | Path) -> Segments:
    """Ground truth from a CSV with columns video,start,end (seconds; `gcf synth` writes segments.csv)."""
    path = Path(path)
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError) as e:
        raise GcfError(f"{path}: cannot read segments ({e}); give a CSV with columns video,start,end") from e
    segments: Segments = {}
    for i, row in enumerate(rows, start=2):
        try:
            start, end = float(row["start"]), float(row["end"])
            video = row["video"]
        except (KeyError, TypeError, ValueError):
            raise GcfError(f"{path}:{i}: expected columns video,start,end with start and end in seconds") from None
        if not (np.isfinite(start) and np.isfinite(end) and end > start >= 0):
            raise GcfError(f"{path}:{i}: segment [{start}, {end}] is not an interval with 0 <= start < end")
        segments.setdefault(video, []).append((start, end))
    if not segments:
        raise GcfError(f"{path}: no segments; give a CSV with columns video,start,end")
    return segments


@dataclass(frozen=True)
class Localized:
    """One store video: its id, true label (-1 unknown) and what the run predicts for it."""

    video: str
    label: int
    pred: Prediction


def localize_store(model: Model, split: str, threshold: float, by: str = "evidence") -> list[Localized]:
    """Predictions with intervals (from `by`: "evidence" or "att") for the videos of `split` ("train", "val",
    "test" as the run made them, or "all") of the model's store, from the stored descriptors."""
    from gcf.head.data import load_store
    from gcf.store import open_store

    data, _, _ = load_store(str(model.store), model.run.splits)     # the splits the run was trained with
    t = data.table
    chosen = np.arange(len(t.video_ids)) if split == "all" else getattr(data, split)
    if len(chosen) == 0:
        raise GcfError(f"{model.store}: the {split} split has no videos; choose another --split")
    reader = open_store(model.store)
    out = []
    for v in chosen:
        vid = t.video_ids[v]
        c = reader.clips(vid)
        times = np.stack([c["start_s"], c["end_s"]], 1)
        duration = max(reader.info(vid).duration, float(times[-1, 1]))
        features = t.features[t.offsets[v]:t.offsets[v + 1]]
        pred = predict_features(model.head, vid, features, times, duration, threshold, by)
        out.append(Localized(vid, int(t.labels[v]), pred))
    return out


def evaluate(videos: list[Localized], truth: Segments, source: str) -> dict:
    """Mean temporal IoU and mAP at TIOUS of the predicted intervals and of the whole-video interval, per video too.

    Detections are labelled with the predicted class and scored by the interval's mean score x the class
    probability (the whole video: the probability); only videos with ground truth count, labelled ones for mAP.
    The summary counts the ground-truth videos left out (`unmatched`: other splits, not in the store) and the
    segments that start after their video ends (`beyond_end`: frame numbers instead of seconds?).
    """
    have = [v for v in videos if v.video in truth]
    if not have:
        raise GcfError(f"{source}: none of its videos is among the {len(videos)} localised ones; its video column "
                       f"must hold store video ids (e.g. {videos[0].video!r})")
    labels = {v.video: v.label for v in have if v.label >= 0}
    labelled = {vid: truth[vid] for vid in labels}
    per_video, det = {}, {"intervals": [], "whole": []}
    for v in have:
        top, prob = v.pred.top(1)[0]
        whole = (0.0, v.pred.duration)
        per_video[v.video] = {"tiou": union_tiou([(i.start, i.end) for i in v.pred.intervals], truth[v.video]),
                              "tiou_whole": union_tiou([whole], truth[v.video])}
        det["intervals"] += [Detection(v.video, top, i.start, i.end, i.score * prob) for i in v.pred.intervals]
        det["whole"].append(Detection(v.video, top, *whole, prob))
    beyond = sum(start >= v.pred.duration for v in have for start, _ in truth[v.video])
    summary = {"videos": len(have), "by": have[0].pred.by, "tious": list(TIOUS), "per_video": per_video,
               "unmatched": len(truth) - len(have), "beyond_end": beyond}
    for key, field in (("intervals", "tiou"), ("whole", "tiou_whole")):
        summary[key] = {"tiou": float(np.mean([p[field] for p in per_video.values()])),
                        "map": [mean_ap(det[key], labelled, labels, t) for t in TIOUS]}
    return summary


def write_intervals(path: Path, videos: list[Localized], class_names: tuple[str, ...], summary: dict | None) -> None:
    """CSV (one row per interval, an empty one for a video without) or JSON (per video, plus the summary)."""
    per_video = summary["per_video"] if summary else {}
    name = lambda i: class_names[i] if i >= 0 else ""  # noqa: E731
    if path.suffix == ".json":
        rows = []
        for v in videos:
            top, prob = v.pred.top(1)[0]
            rows.append({"video": v.video, "label": name(v.label), "predicted": class_names[top], "prob": prob,
                         "by": v.pred.by, "attention": None if v.pred.attention is None else v.pred.attention.tolist(),
                         "evidence": v.pred.evidence.tolist(), "clips": v.pred.clips.tolist(),
                         "intervals": [[i.start, i.end, i.score] for i in v.pred.intervals],
                         **per_video.get(v.video, {})})
        totals = None if summary is None else {k: x for k, x in summary.items() if k != "per_video"}
        path.write_text(json.dumps({"videos": rows, "summary": totals}, indent=1))
        return
    scores = ["tiou", "tiou_whole"] if summary else []
    fields = ["video", "label", "predicted", "prob", "start", "end", "score"] + scores
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(fields)
        for v in videos:
            top, prob = v.pred.top(1)[0]
            head = [v.video, name(v.label), class_names[top], f"{prob:.6f}"]
            tail = [f"{per_video[v.video][k]:.6f}" if v.video in per_video else "" for k in scores]
            spans = [[f"{i.start:.6f}", f"{i.end:.6f}", f"{i.score:.6f}"] for i in v.pred.intervals] or [["", "", ""]]
            for span in spans:
                w.writerow(head + span + tail)
