"""ClipDataset: a torch Dataset of (clips [C, d], mask [C], label, video_id) over a store or a loaded table."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from gcf.errors import GcfError
from gcf.store.meta import SPLITS
from gcf.store.reader import FeatureTable, StoreReader
from gcf.store.select import POLICIES, clip_indices


class ClipDataset(Dataset):
    """Videos of a store (reads each video on access) or of a FeatureTable (in memory), one split or all.

    select: "uniform" (paper), "random" (augmentation; deterministic per seed, epoch and index, whatever the
    number of DataLoader workers; call set_epoch each epoch) or "all" (C = the video's clip count: batch with
    collate_clips). See gcf.store.select for the policies.
    """

    def __init__(self, source: StoreReader | FeatureTable, clips: int = 10, select: str = "uniform",
                 split: str | None = None, seed: int = 0):
        if select not in POLICIES:
            raise GcfError(f"unknown clip selection {select!r}; use one of {', '.join(POLICIES)}")
        if split is not None and split not in SPLITS:
            raise GcfError(f"unknown split {split!r}; use train, val, test, '' or no split filter")
        self.source, self.clips, self.select, self.seed, self.epoch = source, clips, select, seed, 0
        if isinstance(source, FeatureTable):
            keep = [i for i, s in enumerate(source.splits) if split is None or s == split]
            self.video_ids = [source.video_ids[i] for i in keep]
            self._rows = keep
            self.labels = [int(source.labels[i]) for i in keep]
        else:
            self.video_ids = [v for v in source.videos if split is None or source.split(v) == split]
            self.labels = [source.label(v) for v in self.video_ids]

    def set_epoch(self, epoch: int) -> None:
        """Draw different random clips each epoch (select="random")."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.video_ids)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, int, str]:
        if isinstance(self.source, FeatureTable):
            r = self._rows[i]
            feats = self.source.features[self.source.offsets[r]:self.source.offsets[r + 1]]
        else:
            feats = self.source.features(self.video_ids[i])
        rng = np.random.default_rng([self.seed, self.epoch, i]) if self.select == "random" else None
        idx, mask = clip_indices([len(feats)], self.clips, self.select, rng)
        x = torch.from_numpy(feats[idx[0]].astype(np.float32))
        return x, torch.from_numpy(mask[0]), self.labels[i], self.video_ids[i]


def collate_clips(batch: list) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[str]]:
    """Stack items into x [B, C, d], mask [B, C], labels [B], ids, zero-padding to the longest (select="all")."""
    C = max(x.shape[0] for x, *_ in batch)
    d = batch[0][0].shape[1]
    x = torch.zeros(len(batch), C, d)
    mask = torch.zeros(len(batch), C, dtype=torch.bool)
    for b, (clips, m, _, _) in enumerate(batch):
        x[b, :len(clips)] = clips
        mask[b, :len(m)] = m
    return x, mask, torch.tensor([y for _, _, y, _ in batch], dtype=torch.long), [v for *_, v in batch]
