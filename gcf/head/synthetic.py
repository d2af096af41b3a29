"""A feature-level synthesiser where averaging clips is misled: for choosing heads and recipes by measurement.

Each video of class y has a variable number of clips; a short contiguous segment of relevant clips carries
y's prototype plus a shared 'action' direction; most other clips are distractors that look like one OTHER
class (the scene), the rest pure noise. Averaging all clips therefore drifts towards the distractor class,
while a head that finds the relevant clips can read y. Features get a per-dimension scale and offset like
pooled ReLU activations, so standardisation matters.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gcf.head.data import Data, make_data
from gcf.store import FeatureTable, StoreMeta, StoreWriter, VideoInfo


@dataclass(frozen=True)
class SynthConfig:
    """Knobs of the synthetic feature store; amplitudes are in units of the per-dimension noise std."""

    classes: int = 10
    train_per_class: int = 200
    test_per_class: int = 50
    dim: int = 256
    min_clips: int = 8
    max_clips: int = 24
    min_relevant: int = 3
    max_relevant: int = 5
    signal: float = 3.0        # amplitude of the class prototype on relevant clips
    action: float = 1.5        # amplitude of the shared action direction on relevant clips
    distractor: float = 2.0    # amplitude of the other class's prototype on distractor clips
    noise_clips: float = 0.2   # fraction of non-relevant clips that are pure noise
    seed: int = 0


@dataclass(frozen=True)
class Synthetic:
    """A synthetic feature table (with per-video split names), class names and which clips are relevant."""

    table: FeatureTable
    class_names: tuple[str, ...]
    relevant: np.ndarray       # [N] bool, per clip

    def data(self, seed: int = 0) -> Data:
        """Train/val/test Data (val carved from train, as for a store without a val split)."""
        return make_data(self.table, self.class_names, seed=seed)


def synthesize(cfg: SynthConfig = SynthConfig()) -> Synthetic:
    """Draw a synthetic feature table (float16, like a store) from cfg, deterministically for cfg.seed."""
    rng = np.random.default_rng(cfg.seed)
    k, d = cfg.classes, cfg.dim
    basis = np.linalg.qr(rng.standard_normal((d, k + 1)))[0].T           # k class prototypes + action, orthonormal
    protos, action = basis[:k], basis[k]
    per_split = {"train": cfg.train_per_class, "test": cfg.test_per_class}
    labels = np.concatenate([np.tile(np.arange(k), n) for n in per_split.values()])
    splits = [s for s, n in per_split.items() for _ in range(n * k)]
    v = len(labels)
    n = rng.integers(cfg.min_clips, cfg.max_clips + 1, v)
    m = np.minimum(rng.integers(cfg.min_relevant, cfg.max_relevant + 1, v), n)
    start = (rng.random(v) * (n - m + 1)).astype(np.int64)
    other = (labels + rng.integers(1, k, v)) % k                         # the distractor class, never y
    offsets = np.concatenate([[0], np.cumsum(n)])
    video = np.repeat(np.arange(v), n)
    t = np.arange(offsets[-1]) - offsets[video]
    relevant = (t >= start[video]) & (t < start[video] + m[video])
    noise_only = ~relevant & (rng.random(len(t)) < cfg.noise_clips)
    x = rng.standard_normal((len(t), d))
    x += relevant[:, None] * (cfg.signal * protos[labels[video]] + cfg.action * action)
    x += (~relevant & ~noise_only)[:, None] * cfg.distractor * protos[other[video]]
    scale, shift = np.exp(rng.normal(0.0, 1.0, d)), rng.normal(2.0, 1.0, d)
    features = (x * scale + shift).astype(np.float16)
    table = FeatureTable(features, offsets.astype(np.int64), [f"v{i:05d}" for i in range(v)], labels.astype(np.int64),
                         splits)
    return Synthetic(table, tuple(f"class{c:02d}" for c in range(k)), relevant)


def write_store(path: str, synth: Synthetic, backbone: str = "synthetic", fps: float = 25.0) -> None:
    """Write a synthetic feature table as a real store on disk (16-frame non-overlapping clips at `fps`)."""
    t = synth.table
    meta = StoreMeta(backbone=backbone, weights="random", clip_len=16, stride=16, input_size=112,
                     mean=(0.45, 0.45, 0.45), std=(0.225, 0.225, 0.225), feature_dim=t.features.shape[1],
                     class_names=synth.class_names, dtype=str(t.features.dtype), extra={"synthetic": True})
    with StoreWriter(path, meta) as w:
        for v, vid in enumerate(t.video_ids):
            n = int(t.offsets[v + 1] - t.offsets[v])
            start = np.arange(n) * 16
            times = np.stack([start, start + 16], 1) / fps
            info = VideoInfo(vid, f"{vid}.mp4", int(t.labels[v]), t.splits[v], n * 16, fps, n * 16 / fps)
            w.add(info, t.features[t.offsets[v]:t.offsets[v + 1]], start, times)
