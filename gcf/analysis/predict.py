"""A trained run applied to new videos: the run's head on clips extracted exactly as its store's were.

The store meta says how the run's features were made (backbone, weights, options, norm, clip length, stride, crop
size); `store_backbone` rebuilds that backbone (a checkpoint whose sha256 still matches, or the store's seeded
random weights), `video_clips` cuts and describes one video in-process, and `head_outputs` runs the head on every
clip: videos with more clips than the head's C are covered by several passes of C clips, one per equal segment at
a different phase (the distribution the head was trained on), logits and each clip's att averaged over passes.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from gcf.errors import GcfError
from gcf.head.run import Run, load_run
from gcf.head.train import Result
from gcf.store import StoreMeta, open_store

GATED_HEADS = ("gcf", "gcf-clipgate", "attention-only")   # heads whose att is a per-clip sigmoid gate in [0, 1]


@dataclass(frozen=True)
class Model:
    """A loaded run and the meta of the store its features came from: what predict, localize and explain need."""

    run: Run
    meta: StoreMeta
    store: Path

    @property
    def head(self) -> Result:
        return self.run.head

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.run.class_names

    @property
    def gated(self) -> bool:
        return is_gated(self.head)

    def check_score(self, by: str) -> None:
        """GcfError when intervals are asked `by` "att" of a head without a per-clip gate (att in [0, 1])."""
        name = self.head.head_cfg.name
        if by != "att":
            return
        if name == "attention-pool":
            why = "its attention is a softmax over the clips (it sums to 1), not a per-clip gate in [0, 1]"
        elif not self.gated:
            why = "it has no clip attention"
        else:
            return
        raise GcfError(f"{self.run.path}: head {name!r} has no att to threshold: {why}; use --by evidence, or a "
                       f"run trained with --head {' or '.join(GATED_HEADS[:2])}")


def is_gated(head: Result) -> bool:
    """Whether the head's att is a per-clip sigmoid gate that thresholds into intervals."""
    return head.head_cfg.name in GATED_HEADS


def open_model(run: str | Path, store: str | Path | None = None) -> Model:
    """Load run directory `run` and the meta of its store (`store` overrides the path the run recorded)."""
    path = Path(run)
    if not (path / "config.json").is_file():
        raise GcfError(f"{path}: not a gcf run (no config.json); give a directory written by `gcf train-head`")
    try:
        loaded = load_run(path)
        recorded = loaded.config["store"]
    except (KeyError, TypeError, ValueError) as e:
        raise GcfError(f"{path / 'config.json'}: not a gcf run config ({type(e).__name__}: {e}); "
                       "give a directory written by `gcf train-head`") from e
    store = Path(store or recorded)
    if not store.exists():
        raise GcfError(f"{store}: the run's feature store is not there (moved or deleted); pass --store with "
                       "the store the run was trained on")
    meta = open_store(store).meta
    for key, ours in (("backbone", meta.backbone), ("feature_dim", meta.feature_dim),
                      ("class_names", list(meta.class_names))):
        if loaded.config.get(key) != ours:
            raise GcfError(f"{store}: {key} differs from the run's ({path / 'config.json'}); "
                           "give the store the run was trained on")
    return Model(loaded, meta, store)


WEIGHTS_DIR = "~/.cache/gcf/weights"   # where `gcf extract` looks for published checkpoints (env GCF_WEIGHTS)


def store_backbone(meta: StoreMeta, weights: str | None = None, device: str = "cpu",
                   weights_dir: str = WEIGHTS_DIR) -> torch.nn.Module:
    """The backbone that made the store's features, with the same weights: `weights` (a checkpoint file or
    "random") must be what the store recorded; None takes them from the store: its seeded random weights, or the
    checkpoint it recorded (extra["weights_path"]) or the published file in `weights_dir`, whichever has the
    store's sha256."""
    from gcf.extract import build_backbone
    from gcf.extract.backbones import weights_identity

    extra = meta.extra
    if weights is None:
        weights = "random" if meta.weights == "random" else _store_checkpoint(meta, weights_dir)
    if weights == "random":
        if meta.weights != "random":
            raise GcfError(f"--weights random: the store's features come from a checkpoint (sha256 "
                           f"{meta.weights[:12]}...), not random weights; give that checkpoint with --weights PATH")
        if "weights_seed" not in extra:
            raise GcfError("the store was made with random weights but did not record their seed; re-extract it "
                           "with this gcf, or give --weights PATH")
    elif not Path(weights).is_file():
        raise GcfError(f"{weights}: no such checkpoint file; give --weights with the checkpoint the store was "
                       "extracted with")
    elif weights_identity(weights) != meta.weights:
        raise GcfError(f"{weights}: is not the checkpoint the store was extracted with (its sha256 differs from "
                       f"the store's {meta.weights[:12]}...); give that checkpoint with --weights")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*RANDOM weights")   # the CLI says it once, plainly
        model = build_backbone(meta.backbone, weights, num_classes=extra.get("num_classes"), norm=extra.get("norm"),
                               seed=int(extra.get("weights_seed") or 0), **dict(extra.get("backbone_options") or {}))
    if not (np.allclose(model.spec.norm.mean, meta.mean) and np.allclose(model.spec.norm.std, meta.std)):
        raise GcfError(f"backbone {meta.backbone}: its input normalisation {model.spec.norm.name} differs from the "
                       "store's mean/std; re-extract the store with this gcf")
    for p in model.parameters():
        p.requires_grad_(False)
    return model.to(device).eval()


def _store_checkpoint(meta: StoreMeta, weights_dir: str) -> str:
    """The checkpoint file a store was extracted with: its recorded path or the published file, by sha256."""
    from gcf.extract.backbones import weights_identity
    from gcf.extract.backbones.registry import REGISTRY

    recorded = meta.extra.get("weights_path")
    entry = REGISTRY.get(meta.backbone)
    published = Path(weights_dir).expanduser() / entry.checkpoint if entry and entry.checkpoint else None
    for path in (recorded, published):
        if path and Path(path).is_file() and weights_identity(path) == meta.weights:
            return str(path)
    sha = meta.weights[:12]
    if recorded and Path(recorded).is_file():
        raise GcfError(f"{recorded}: changed since the store was extracted (its sha256 differs from the store's "
                       f"{sha}...); give the store's checkpoint with --weights PATH")
    where = f"the published {published}" if published else "a published file"
    raise GcfError(f"the store was extracted with the checkpoint of sha256 {sha}..., which is neither a path it "
                   f"recorded nor {where}; give it with --weights PATH")


@dataclass(frozen=True)
class VideoClips:
    """One video's clip descriptors [n, d] (float32), clip times [n, 2] (start_s, end_s), duration and frame rate."""

    path: str
    features: np.ndarray
    times: np.ndarray
    duration: float
    fps: float


def video_clips(model: torch.nn.Module, meta: StoreMeta, path: str | Path, batch_size: int = 16) -> VideoClips:
    """Every clip of a video, cut and described as the store's were; a VideoError (GcfError) names a broken file."""
    from gcf.extract.video import index_video, iter_clips

    device = next(model.parameters()).device
    features, times, batch = [], [], []

    def flush() -> None:
        x = model.spec.normalize(torch.from_numpy(np.stack(batch)).to(device))
        with torch.inference_mode():
            features.append(model.descriptor(x).float().cpu().numpy())
        batch.clear()

    index = index_video(path)
    for clip in iter_clips(path, meta.clip_len, meta.stride, meta.input_size, threads=0, index=index,
                           frame_step=meta.frame_step):
        batch.append(clip.frames)
        times.append((clip.start_s, clip.end_s))
        if len(batch) == batch_size:
            flush()
    if batch:
        flush()
    return VideoClips(str(path), np.concatenate(features), np.asarray(times, np.float64), index.meta.duration,
                      index.meta.fps)


def passes(n: int, clips: int) -> np.ndarray:
    """Clip indices [P, clips] covering all n clips: pass k takes one clip per equal segment at phase k.

    Together the P = ceil(n / clips) passes sample the grid (i + 0.5) * n / (P * clips), whose step is at most one
    clip, so every clip is in at least one pass; each pass is in temporal order, like training's selection. A
    video of fewer clips is loop-padded to C (0, 1, ..., n-1, 0, ...), as training and evaluation pad it.
    """
    if n <= clips:
        return (np.arange(clips) % n)[None]
    p = math.ceil(n / clips)
    grid = ((np.arange(p * clips) + 0.5) * n / (p * clips)).astype(np.int64)
    return grid.reshape(clips, p).T


def head_outputs(head: Result, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The head on every clip of one video: features [n, d] raw float32 -> (logits [K], att [n] or None).

    Standardised with the run's statistics; differentiable in `features` (3D Grad-CAM builds on it).
    """
    std = head.standardizer
    x = (features - std.mean) / std.std
    idx = torch.from_numpy(passes(len(x), head.head_cfg.clips))
    head.head.eval()
    out = head.head(x[idx], torch.ones(idx.shape, dtype=torch.bool))
    if out.att is None:
        return out.logits.mean(0), None
    flat = idx.flatten()
    counts = torch.bincount(flat, minlength=len(x)).to(out.att.dtype)
    att = torch.zeros(len(x), dtype=out.att.dtype).index_add(0, flat, out.att.flatten()) / counts
    return out.logits.mean(0), att


def head_gradient(head: Result, features: np.ndarray, target: int | None = None):
    """(logits [K], att [n] or None, d y^m / d v [n, d]) of the head on every clip, m = `target` or the predicted
    class; y^m is its logit (averaged over the passes), v the raw descriptors."""
    v = torch.from_numpy(np.asarray(features, np.float32)).requires_grad_(True)
    with torch.enable_grad():
        logits, att = head_outputs(head, v)
        logits[int(logits.argmax()) if target is None else target].backward()
    return logits.detach(), None if att is None else att.detach(), v.grad


def clip_evidence(head: Result, features: np.ndarray, grad: torch.Tensor) -> np.ndarray:
    """Per-clip evidence for the class whose gradient `grad` is: e_i = sum_k dy/dv_ik (v_ik - mean_k), rescaled
    to [0, 1] within the video (min to 0, max to 1; all ones when every clip is equal).

    Grad-CAM at the clip level: with A pooled into v_i, sum over a clip of eq. 14's weighted map is
    sum_k dy/dv_ik v_ik; measured here from the average training clip (the run's standardisation mean), so what
    every clip shares does not count.
    """
    v = torch.from_numpy(np.asarray(features, np.float32))
    e = (grad * (v - head.standardizer.mean)).sum(1).numpy()
    span = float(e.max() - e.min())
    return (e - e.min()) / span if span > 0 else np.ones_like(e)


@dataclass(frozen=True)
class Interval:
    """[start, end) seconds and its score (mean over its clips of the score that made it)."""

    start: float
    end: float
    score: float


def score_intervals(score: np.ndarray, clips: np.ndarray, threshold: float) -> list[Interval]:
    """Runs of consecutive clips with score > threshold -> merged intervals; clips [n, 2] are (start_s, end_s)."""
    above = np.concatenate([[False], np.asarray(score) > threshold, [False]])
    edges = np.flatnonzero(above[1:] != above[:-1])            # run starts and (exclusive) ends, alternating
    return [Interval(float(clips[a, 0]), float(clips[b - 1, 1]), float(np.mean(score[a:b])))
            for a, b in zip(edges[::2], edges[1::2])]


@dataclass(frozen=True)
class Prediction:
    """What the run says about one video: class probabilities, per-clip att (None without a gate) and evidence,
    and the intervals where the score named by `by` ("att" or "evidence") passes the threshold."""

    video: str
    probs: np.ndarray                  # [K]
    attention: np.ndarray | None       # [n]
    evidence: np.ndarray               # [n] in [0, 1], for the top class
    clips: np.ndarray                  # [n, 2] start_s, end_s
    intervals: list[Interval] | None   # None: by="att" on a head without a gate
    duration: float
    by: str

    @property
    def score(self) -> np.ndarray | None:
        """The per-clip score the intervals come from."""
        return self.attention if self.by == "att" else self.evidence

    def top(self, k: int) -> list[tuple[int, float]]:
        """The k most probable classes as (index, probability)."""
        order = np.argsort(-self.probs, kind="stable")[:k]
        return [(int(i), float(self.probs[i])) for i in order]

    def to_json(self, class_names: tuple[str, ...], k: int) -> dict:
        """{"video", "top": [{"label", "prob"}], "attention", "evidence", "clips", "intervals", "by"}."""
        rnd = lambda x: round(float(x), 6)  # noqa: E731
        return {"video": self.video,
                "top": [{"label": class_names[i], "prob": rnd(p)} for i, p in self.top(k)],
                "attention": None if self.attention is None else [rnd(a) for a in self.attention],
                "evidence": [rnd(e) for e in self.evidence],
                "clips": [[rnd(s), rnd(e)] for s, e in self.clips],
                "intervals": None if self.intervals is None else [[rnd(i.start), rnd(i.end)] for i in self.intervals],
                "by": self.by}


def predict_features(head: Result, video: str, features: np.ndarray, clips: np.ndarray, duration: float,
                     threshold: float, by: str = "evidence") -> Prediction:
    """A trained head on one video's clip descriptors [n, d] (raw, any float dtype) and times [n, 2]."""
    logits, att, grad = head_gradient(head, features)
    evidence = clip_evidence(head, features, grad)
    att = att.numpy() if att is not None and is_gated(head) else None
    score = evidence if by == "evidence" else att
    intervals = None if score is None else score_intervals(score, clips, threshold)
    return Prediction(video, logits.softmax(0).numpy(), att, evidence, clips, intervals, duration, by)


def plot_timeline(pred: Prediction, class_names: tuple[str, ...], threshold: float, path: str | Path) -> None:
    """att and evidence per clip over time (a step per clip), the threshold, the intervals shaded; title: top class."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 2.6))
    for iv in pred.intervals or []:
        ax.axvspan(iv.start, iv.end, color="tab:orange", alpha=0.25, lw=0)
    for name, values, colour in (("att", pred.attention, "tab:blue"), ("evidence", pred.evidence, "tab:red")):
        if values is None:
            continue
        for (s, e), a in zip(pred.clips, values):
            ax.plot([s, e], [a, a], color=colour, lw=2)
        ax.plot(pred.clips.mean(1), values, "o", color=colour, ms=3, label=name)
    ax.axhline(threshold, color="grey", ls="--", lw=1)
    ax.set_xlim(0, max(pred.duration, float(pred.clips[:, 1].max())))
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("time (s)")
    ax.legend(loc="upper right", fontsize=7)
    label, prob = pred.top(1)[0]
    ax.set_title(f"{Path(pred.video).name}: {class_names[label]} ({prob:.2f}); "
                 f"intervals with {pred.by} > {threshold:g} shaded", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
