"""Features in memory for training: splits (val carved from train when absent), standardisation, clip batches.

Batches are built by vectorised index gathering from the in-memory FeatureTable, never item by item.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch


@dataclass(frozen=True)
class FeatureTable:
    """All clip descriptors of a set of videos: video v owns rows offsets[v]:offsets[v+1] of features."""

    features: np.ndarray      # [N, d] float16 or float32
    offsets: np.ndarray       # [V + 1] int64
    video_ids: list[str]
    labels: np.ndarray        # [V] int64, -1 when unknown


def select_clips(table: FeatureTable, videos: np.ndarray, clips: int, policy: str,
                 rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Gather `clips` descriptors of each video in temporal order -> (x [B, C, d], mask [B, C]).

    "uniform": centres of C equal segments; "random": a random clip in each of C equal segments (TSN-style
    augmentation); "all": every clip, C = longest video. Videos shorter than C give all their clips, the rest
    is masked (padded positions repeat the last clip and must be ignored through the mask).
    """
    start = table.offsets[videos]
    n = table.offsets[videos + 1] - start
    if policy == "all":
        clips = int(n.max())
    j = np.arange(clips)
    if policy == "random":
        pos = ((j + rng.random((len(videos), clips))) * n[:, None] / clips).astype(np.int64)
    else:
        pos = ((j + 0.5) * n[:, None] / clips).astype(np.int64)
    short = n[:, None] < clips
    pos = np.where(short, np.minimum(j, n[:, None] - 1), pos)
    mask = ~short | (j < n[:, None])
    return table.features[start[:, None] + pos], mask


@dataclass(frozen=True)
class Data:
    """A FeatureTable with split membership (video indices) and the class names: what training reads."""

    table: FeatureTable
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    class_names: tuple[str, ...]
    notes: tuple[str, ...] = field(default=())   # how the splits were made, e.g. "val: 10% of train"


def carve(videos: np.ndarray, labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified, seeded split of `videos` -> (kept, carved): round(fraction * n) per class, at least 1 of n >= 2."""
    rng = np.random.default_rng(seed)
    kept, carved = [], []
    for c in np.unique(labels[videos]):
        members = rng.permutation(videos[labels[videos] == c])
        take = 0 if len(members) < 2 else max(1, int(round(fraction * len(members))))
        carved.append(members[:take])
        kept.append(members[take:])
    return np.sort(np.concatenate(kept)), np.sort(np.concatenate(carved))


def make_data(table: FeatureTable, splits: list[str], class_names: tuple[str, ...], seed: int = 0,
              val_fraction: float = 0.1, test_fraction: float = 0.2) -> Data:
    """Assign videos to train/val/test from per-video split names ("" counts as train), carving what is missing.

    Without a test split the store's val split becomes the test split, and without either a stratified
    test split is carved from train; a missing val split is carved from train. Unlabelled videos are dropped.
    """
    splits = np.asarray(splits)
    labelled = table.labels >= 0
    pick = {s: np.flatnonzero((splits == s) & labelled) for s in ("train", "val", "test")}
    train = np.flatnonzero(((splits == "train") | (splits == "")) & labelled)
    val, test, notes = pick["val"], pick["test"], []
    if len(test) == 0 and len(val) > 0:
        test, val = val, val[:0]
        notes.append("test: the store's val split (it has no test split)")
    elif len(test) == 0:
        train, test = carve(train, table.labels, test_fraction, seed)
        notes.append(f"test: {test_fraction:.0%} of train, stratified, seed {seed} (the store has no test split)")
    if len(val) == 0:
        train, val = carve(train, table.labels, val_fraction, seed + 1)
        notes.append(f"val: {val_fraction:.0%} of train, stratified, seed {seed + 1}")
    return Data(table, train, val, test, tuple(class_names), tuple(notes))


@dataclass(frozen=True)
class Standardizer:
    """Per-dimension feature standardisation fitted on the training clips: x -> (x - mean) / std."""

    mean: torch.Tensor   # [d] float32
    std: torch.Tensor    # [d] float32

    @classmethod
    def fit(cls, table: FeatureTable, videos: np.ndarray) -> "Standardizer":
        """Mean and std over every clip of `videos`; a constant dimension keeps std 1."""
        rows = rows_of(table, videos)
        total = np.zeros(table.features.shape[1]), np.zeros(table.features.shape[1])
        for chunk in np.array_split(rows, max(1, len(rows) // 65536)):
            x = table.features[chunk].astype(np.float64)
            total = total[0] + x.sum(0), total[1] + (x * x).sum(0)
        mean = total[0] / len(rows)
        std = np.sqrt(np.maximum(total[1] / len(rows) - mean * mean, 0.0))
        std[std < 1e-6 * max(1.0, float(np.abs(mean).max()))] = 1.0
        return cls(torch.as_tensor(mean, dtype=torch.float32), torch.as_tensor(std, dtype=torch.float32))

    @classmethod
    def identity(cls, dim: int) -> "Standardizer":
        return cls(torch.zeros(dim), torch.ones(dim))

    def __call__(self, x: np.ndarray) -> torch.Tensor:
        """Gathered descriptors (any float dtype) -> standardised float32 tensor."""
        return (torch.from_numpy(x).float() - self.mean) / self.std


def rows_of(table: FeatureTable, videos: np.ndarray) -> np.ndarray:
    """Feature rows of every clip of `videos`, video after video."""
    start, counts = table.offsets[videos], table.offsets[videos + 1] - table.offsets[videos]
    first = np.repeat(np.cumsum(counts) - counts, counts)
    return np.repeat(start, counts) + np.arange(counts.sum()) - first


def clip_table(table: FeatureTable) -> FeatureTable:
    """The same features with every clip as a one-clip video labelled like its video (for clip classifiers).

    Video v's clips become videos rows_of(table, [v]) of the returned table.
    """
    labels = np.repeat(table.labels, np.diff(table.offsets))
    return FeatureTable(table.features, np.arange(len(labels) + 1), [], labels)


def load_store(path: str, seed: int = 0) -> tuple[Data, dict, np.ndarray | None]:
    """Read a store into memory -> (Data with carved splits, source description, backbone test-clip probabilities).

    The source dict (store path, backbone, weights, feature_dim, class_names) goes into a run's config. The
    probabilities [test clips, K] are the softmax of the clip logits the backbone stored, present only when the
    backbone's classes are the store's classes; C-Clip and D-Clips then use them instead of a trained classifier.
    """
    from gcf.store import open_store

    reader = open_store(path)
    meta = reader.meta
    table = reader.load()
    data = make_data(table, [reader.split(v) for v in table.video_ids], tuple(meta.class_names), seed=seed)
    source = {"store": str(Path(path).resolve()), "backbone": meta.backbone, "weights": meta.weights,
              "feature_dim": meta.feature_dim, "class_names": list(meta.class_names)}
    probs = None
    if list(meta.extra.get("logits_classes") or []) == list(meta.class_names):
        logits = [reader.logits(table.video_ids[v]) for v in data.test]
        if all(x is not None for x in logits):
            probs = torch.from_numpy(np.concatenate(logits).astype(np.float32)).softmax(1).numpy()
    return data, source, probs
