"""Features in memory for training: splits (val carved from train when absent) and standardisation.

Batches (gcf.head.train.batches) are vectorised index gathers from the in-memory FeatureTable.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from gcf.errors import plural
from gcf.store import FeatureTable, open_store

SPLIT_NAMES = ("train", "val", "test")


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
    test split is carved from train; a missing val split is carved from train. Unlabelled videos and videos
    with NaN/Inf features are dropped (the latter with a note naming them).
    """
    splits = np.asarray(table.splits)
    usable, notes = table.labels >= 0, []
    if not usable.all():
        notes.append(f"left out {plural(int((~usable).sum()), 'unlabelled video')}")
    broken = usable & ~finite_videos(table)
    if broken.any():
        usable &= ~broken
        first = ", ".join(repr(table.video_ids[v]) for v in np.flatnonzero(broken)[:3])
        notes.append(f"left out {plural(int(broken.sum()), 'video')} with NaN/Inf features ({first}"
                     f"{', ...' if broken.sum() > 3 else ''}); re-extract them")
    pick = {s: np.flatnonzero((splits == s) & usable) for s in SPLIT_NAMES}
    train = np.flatnonzero(((splits == "train") | (splits == "")) & usable)
    val, test = pick["val"], pick["test"]
    if len(test) == 0 and len(val) > 0:
        test, val = val, val[:0]
        notes.append("test: the store's val split (it has no test split)")
    elif len(test) == 0:
        train, test = carve(train, table.labels, test_fraction, seed)
        stored = splits == "test"
        why = ("its test videos have NaN/Inf features" if (stored & (table.labels >= 0)).any()
               else "its test videos are unlabelled" if stored.any() else "the store has no test split")
        notes.append(f"test: {plural(len(test), 'video')} carved from train ({test_fraction:.0%}, at least one of every class "
                     f"with two or more), stratified, seed {seed} ({why})")
    if len(val) == 0:
        train, val = carve(train, table.labels, val_fraction, seed + 1)
        notes.append(f"val: {plural(len(val), 'video')} carved from train ({val_fraction:.0%}, at least one of every class "
                     f"with two or more), stratified, seed {seed + 1}")
    untrained = np.setdiff1d(table.labels[test], table.labels[train])
    if len(untrained):
        names = ", ".join(repr(class_names[c]) for c in untrained[:3]) + (", ..." if len(untrained) > 3 else "")
        count = f"{len(untrained)} class{'' if len(untrained) == 1 else 'es'}"
        notes.append(f"{count} in test with no training video ({names}): their test videos cannot be classified right")
    return Data(table, train, val, test, tuple(class_names), tuple(notes))


def finite_videos(table: FeatureTable, rows: int = 16384) -> np.ndarray:
    """Per video: are all its descriptors finite? Checked `rows` rows at a time (bounded memory)."""
    bad = np.zeros(len(table.features) + 1, dtype=np.int64)
    for s in range(0, len(table.features), rows):
        bad[s + 1:s + 1 + rows] = ~np.isfinite(table.features[s:s + rows]).all(1)
    bad = np.cumsum(bad)
    return bad[table.offsets[1:]] == bad[table.offsets[:-1]]


def split_ids(data: Data) -> dict[str, list[str]]:
    """The video ids of each split: what a run records so that eval and localize test on the same videos."""
    return {name: [data.table.video_ids[v] for v in getattr(data, name)] for name in SPLIT_NAMES}


def reuse_splits(data: Data, ids: dict[str, list[str]]) -> Data:
    """`data` split as a run recorded it (split_ids), so videos added to the store later are not tested on.

    When some of the run's test videos are not in the store (another store), the store's own test split is kept
    without the videos the run trained or validated on.
    """
    usable = np.concatenate([data.train, data.val, data.test])     # labelled, finite
    index = {data.table.video_ids[i]: int(i) for i in usable}
    present = set(data.table.video_ids)                             # a NaN video is left out, not "another store"
    if all(vid in present for vid in ids["test"]):
        picked = {n: np.sort(np.asarray([index[v] for v in ids[n] if v in index], dtype=np.int64))
                  for n in SPLIT_NAMES}
        new = len(index) - sum(map(len, picked.values()))
        note = f"splits: the run's ({len(picked['test'])} test videos)" + (
            f"; {plural(new, 'video')} added to the store since are in none" if new > 0 else "")
        kept = tuple(n for n in data.notes if not n.startswith(("test:", "val:")))   # not how splits were carved
        return replace(data, **picked, notes=(*kept, note))
    seen = np.asarray([index[v] for n in ("train", "val") for v in ids[n] if v in index], dtype=np.int64)
    test = np.setdiff1d(data.test, seen)
    missing = sum(vid not in present for vid in ids["test"])
    note = (f"test: the store's own test split ({plural(missing, 'test video')} of the run's not in this store)"
            + (f", without the {len(data.test) - len(test)} the run trained or validated on"
               if len(test) < len(data.test) else ""))
    return replace(data, test=test, notes=(*data.notes, note))


@dataclass(frozen=True)
class Standardizer:
    """Per-dimension feature standardisation fitted on the training clips: x -> (x - mean) / std."""

    mean: torch.Tensor   # [d] float32
    std: torch.Tensor    # [d] float32

    @classmethod
    def fit(cls, table: FeatureTable, videos: np.ndarray, rows: int = 8192) -> "Standardizer":
        """Mean and std over every clip of `videos`, in two passes of `rows` rows at a time (float64, so large
        offsets keep their small spread); a dimension constant up to float precision keeps std 1."""
        which = rows_of(table, videos)
        chunks = [which[s:s + rows] for s in range(0, len(which), rows)]
        mean = sum(table.features[c].astype(np.float64).sum(0) for c in chunks) / len(which)
        var = sum(np.square(table.features[c].astype(np.float64) - mean).sum(0) for c in chunks) / len(which)
        std = np.sqrt(var)
        std[std <= 1e-7 * np.maximum(1.0, np.abs(mean))] = 1.0     # per dimension, below float32 rounding: constant
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


def load_store(path: str, splits: dict[str, list[str]] | None = None) -> tuple[Data, dict, np.ndarray | None]:
    """Read a store into memory -> (Data, source description, backbone test-clip probabilities or None).

    Missing val/test splits are carved with seed 0 whatever the training seed, so runs of every seed are
    tested on the same videos. The source dict (store path, backbone, weights, feature_dim, class_names) goes
    into a run's config. The probabilities [test clips, K] are the softmax of the clip logits the backbone
    stored, present only when the store declares its logits' classes (extra["logits_classes"]) to be its class
    names; C-Clip and D-Clips then use them instead of a trained clip classifier. `splits` (a run's split_ids)
    replaces the store's splits by the run's (reuse_splits).
    """
    reader = open_store(path)
    meta = reader.meta
    table = reader.load()
    data = make_data(table, tuple(meta.class_names))
    if reader.failed:
        failed = f"left out {plural(len(reader.failed), 'video')} that failed at extraction (gcf store info {path})"
        data = replace(data, notes=(failed, *data.notes))
    if splits is not None:
        data = reuse_splits(data, splits)
    source = {"store": str(Path(path).resolve()), "backbone": meta.backbone, "weights": meta.weights,
              "feature_dim": meta.feature_dim, "class_names": list(meta.class_names)}
    probs = None
    if list(meta.extra.get("logits_classes") or []) == list(meta.class_names):
        logits = [reader.logits(table.video_ids[v]) for v in data.test]
        if all(x is not None for x in logits):
            probs = torch.from_numpy(np.concatenate(logits).astype(np.float32)).softmax(1).numpy()
    return data, source, probs
