"""Does the clip attention localise the action? Paper gate vs per-clip gate, over the sparsity weight lambda.

The paper (3.1-3.2) says the L1 loss on att drives it towards 0/1 and that att finds the relevant clips without
temporal labels. Here heads are trained (default recipe) on data whose relevant clips are known, and the test
videos are localised exactly as `gcf localize` does (gcf.analysis: every clip through the head, att > 0.5 merged
into intervals), against the trivial whole-video interval:

- `features`: gcf.head.synthetic feature stores (relevant clips marked; a clip is 0.64 s), variable clip counts.
- `videos`: `gcf synth` videos (segments.csv) extracted with a small random-weights backbone (resnet18 width 0.5,
  64 px crops), as `gcf demo` would; a clip counts as relevant when at least half of it lies in the segment.

Printed per head and lambda (mean over seeds): test top-1; mean tIoU of the whole-video interval; for att (gated
heads): mean tIoU of its intervals, the ROC AUC of att ranking relevant above irrelevant clips within a video
(0.5 = no information), mean att on relevant / irrelevant clips, the share of att values below 0.1 or above 0.9
(the claimed 0/1 tendency) and the tIoU at the best single threshold in hindsight (an upper bound for any fixed
threshold); the tIoU and AUC of the clip evidence (gcf.analysis.predict.clip_evidence, `--by evidence`); mAP@0.5
of the whole video, att and evidence intervals. max-pool (no gate) is added once, for the evidence.

    python bench/localize.py --data features --seeds 2
    python bench/localize.py --data videos --seeds 2
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gcf.analysis.localize import Localized, evaluate, union_tiou  # noqa: E402
from gcf.analysis.predict import score_intervals, predict_features  # noqa: E402
from gcf.head.registry import HeadConfig  # noqa: E402
from gcf.head.train import recipe, train  # noqa: E402

HEADS = ("gcf", "gcf-clipgate", "attention-only")
LAMBDAS = (0.0, 1e-4, 1e-3, 1e-2, 1e-1)
GRID = np.round(np.arange(0.05, 1.0, 0.05), 2)


def feature_data(seed: int):
    """(Data, clip times per video, durations, truth segments, relevant-clip masks) from the feature synthesiser."""
    from gcf.head.synthetic import SynthConfig, synthesize

    s = synthesize(SynthConfig(classes=5, train_per_class=200, test_per_class=40, dim=128, seed=seed))
    t = s.table
    times, truth, relevant = [], {}, []
    for v, vid in enumerate(t.video_ids):
        n = t.offsets[v + 1] - t.offsets[v]
        times.append(np.stack([np.arange(n), np.arange(1, n + 1)], 1) * 0.64)
        rel = s.relevant[t.offsets[v]:t.offsets[v + 1]]
        relevant.append(rel)
        idx = np.flatnonzero(rel)
        truth[vid] = [(times[v][idx[0], 0], times[v][idx[-1], 1])]
    durations = [float(x[-1, 1]) for x in times]
    return s.data(seed), times, durations, truth, relevant


def video_data(seed: int, workdir: Path):
    """The same from `gcf synth` videos extracted with a small random backbone into a real store."""
    from gcf.analysis.localize import read_segments
    from gcf.extract.pipeline import ExtractConfig, extract
    from gcf.head.data import load_store
    from gcf.store import open_store
    from gcf.synth import make_dataset

    videos, store = workdir / f"videos{seed}", workdir / f"features{seed}.zarr"
    if not store.exists():
        make_dataset(videos, classes=5, per_class=20, seed=seed)
        extract(ExtractConfig(inputs=(str(videos),), backbone="resnet18", weights="random", output=str(store),
                              options=(("width", 0.5),), size=64, workers=1, progress=False))
    data, _, _ = load_store(str(store))
    reader, truth = open_store(store), read_segments(videos / "segments.csv")
    times, durations, relevant = [], [], []
    for vid in data.table.video_ids:
        c = reader.clips(vid)
        x = np.stack([c["start_s"], c["end_s"]], 1)
        overlap = np.array([sum(max(0.0, min(e, te) - max(s, ts)) for ts, te in truth[vid]) for s, e in x])
        times.append(x)
        durations.append(max(reader.info(vid).duration, float(x[-1, 1])))
        relevant.append(overlap >= 0.5 * (x[:, 1] - x[:, 0]))
    return data, times, durations, truth, relevant


def auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Probability that a positive clip scores above a negative one (ties count half); nan without both."""
    pos, neg = scores[positive], scores[~positive]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    return float(((pos[:, None] > neg[None]).mean() + 0.5 * (pos[:, None] == neg[None]).mean()))


def measure(data, times, durations, truth, relevant, head: str, lam: float, seed: int, epochs: int) -> dict:
    """Train one head and localise its test videos as `gcf localize` does, by att (gated heads) and by evidence."""
    result = train(data, HeadConfig(name=head), recipe("default", lam=lam, seed=seed, epochs=epochs))
    t = data.table
    rel = [relevant[v] for v in data.test]
    row = {"top1": result.metrics["top1"]}
    for by in ("att", "evidence"):
        videos = [Localized(t.video_ids[v], int(t.labels[v]),
                            predict_features(result, t.video_ids[v], t.features[t.offsets[v]:t.offsets[v + 1]],
                                             times[v], durations[v], 0.5, by)) for v in data.test]
        if videos[0].pred.score is None:           # no gate: no att row
            continue
        summary = evaluate(videos, truth, "bench")
        scores = [x.pred.score for x in videos]
        row.update({"whole": summary["whole"]["tiou"], "whole_map": summary["whole"]["map"][1],
                    f"{by}_tiou": summary["intervals"]["tiou"], f"{by}_map": summary["intervals"]["map"][1],
                    f"{by}_auc": float(np.nanmean([auc(s, r) for s, r in zip(scores, rel)]))})
        if by == "att":
            flat, flat_rel = np.concatenate(scores), np.concatenate(rel)
            best = max(np.mean([union_tiou([(i.start, i.end) for i in score_intervals(x.pred.attention,
                                                                                      x.pred.clips, th)],
                                           truth[x.video]) for x in videos]) for th in GRID)
            row.update({"att_rel": float(flat[flat_rel].mean()), "att_irr": float(flat[~flat_rel].mean()),
                        "att_01": float(((flat < 0.1) | (flat > 0.9)).mean()), "att_best": float(best)})
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", choices=["features", "videos"], default="features")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--heads", nargs="+", default=list(HEADS))
    ap.add_argument("--lams", nargs="+", type=float, default=list(LAMBDAS))
    ap.add_argument("--workdir", help="Keep the synthetic videos and stores here (videos data) for reuse.")
    args = ap.parse_args()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="gcf-localize-"))
    workdir.mkdir(parents=True, exist_ok=True)
    sets = [feature_data(s) if args.data == "features" else video_data(s, workdir) for s in range(args.seeds)]
    data = sets[0][0]
    clips = np.diff(data.table.offsets)
    print(f"data {args.data}: {len(data.train)} train / {len(data.test)} test videos per seed, {clips.min()}-"
          f"{clips.max()} clips, {args.seeds} seeds, {args.epochs} epochs, threshold 0.5")
    keys = ["top1", "whole", "att_tiou", "att_auc", "att_rel", "att_irr", "att_01", "att_best", "evidence_tiou",
            "evidence_auc", "whole_map", "att_map", "evidence_map"]
    print("| head | lambda | " + " | ".join(keys) + " | s |")
    print("|" + " --- |" * (len(keys) + 3))
    runs = [(head, lam) for head in args.heads for lam in args.lams] + [("max-pool", 0.0)]
    for head, lam in runs:
        t0 = time.perf_counter()
        rows = [measure(*d, head, lam, seed, args.epochs) for seed, d in enumerate(sets)]
        mean = {k: np.mean([r[k] for r in rows]) if k in rows[0] else None for k in keys}
        print(f"| {head} | {lam:g} | " + " | ".join("-" if mean[k] is None else f"{mean[k]:.3f}" for k in keys)
              + f" | {time.perf_counter() - t0:.0f} |", flush=True)


if __name__ == "__main__":
    main()
