"""Features in memory for training: splits (val carved from train when absent) and standardisation.

Batches (gcf.head.train.batches) are vectorised index gathers from the in-memory FeatureTable.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from gcf.store import FeatureTable, open_store


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
    kept, carved = [videos[:0]], [videos[:0]]
    for c in np.unique(labels[videos]):
        members = rng.permutation(videos[labels[videos] == c])
        take = 0 if len(members) < 2 else max(1, int(round(fraction * len(members))))
        carved.append(members[:take])
        kept.append(members[take:])
    return np.sort(np.concatenate(kept)), np.sort(np.concatenate(carved))


def make_data(table: FeatureTable, class_names: tuple[str, ...], seed: int = 0, val_fraction: float = 0.1,
              test_fraction: float = 0.2) -> Data:
    """Assign videos to train/val/test from table.splits ("" counts as train), carving what is missing.

    Without a test split the store's val split becomes the test split, and without either a stratified
    test split is carved from train; a missing val split is carved from train. Unlabelled videos are dropped.
    """
    splits = np.asarray(table.splits)
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

    def to(self, device: torch.device | str) -> "Standardizer":
        """The same standardisation on `device` (batches are standardised where the head runs)."""
        return Standardizer(self.mean.to(device), self.std.to(device))

    def __call__(self, x: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Descriptors of any float dtype -> a new standardised float32 tensor (the input is left as it is)."""
        return torch.as_tensor(x).float().sub(self.mean).div_(self.std)


def rows_of(table: FeatureTable, videos: np.ndarray) -> np.ndarray:
    """Feature rows of every clip of `videos`, video after video."""
    start, counts = table.offsets[videos], table.offsets[videos + 1] - table.offsets[videos]
    first = np.repeat(np.cumsum(counts) - counts, counts)
    return np.repeat(start, counts) + np.arange(counts.sum()) - first


def clip_table(table: FeatureTable) -> FeatureTable:
    """The same features with every clip as a one-clip video labelled like its video (for clip classifiers).

    Video v's clips become videos rows_of(table, [v]) of the returned table.
    """
    counts = np.diff(table.offsets)
    return FeatureTable(table.features, np.arange(counts.sum() + 1), list(np.repeat(table.video_ids, counts)),
                        np.repeat(table.labels, counts), list(np.repeat(table.splits, counts)))


def load_store(path: str) -> tuple[Data, dict, np.ndarray | None]:
    """Read a store into memory -> (Data, source description, backbone test-clip probabilities or None).

    Missing val/test splits are carved with seed 0 whatever the training seed, so runs of every seed are
    tested on the same videos. The source dict (store path, backbone, weights, feature_dim, class_names) goes
    into a run's config. The probabilities [test clips, K] are the softmax of the clip logits the backbone
    stored, present only when the store declares its logits' classes (extra["logits_classes"]) to be its class
    names; C-Clip and D-Clips then use them instead of a trained clip classifier.
    """
    reader = open_store(path)
    meta = reader.meta
    table = reader.load()
    data = make_data(table, tuple(meta.class_names))
    source = {"store": str(Path(path).resolve()), "backbone": meta.backbone, "weights": meta.weights,
              "feature_dim": meta.feature_dim, "class_names": list(meta.class_names)}
    probs = None
    if list(meta.extra.get("logits_classes") or []) == list(meta.class_names):
        logits = [reader.logits(table.video_ids[v]) for v in data.test]
        if all(x is not None for x in logits):
            probs = torch.from_numpy(np.concatenate(logits).astype(np.float32)).softmax(1).numpy()
    return data, source, probs
