"""Clip selection policies and the torch ClipDataset over a real store."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_store import META, clip_video
from torch.utils.data import DataLoader

from gcf.errors import GcfError
from gcf.store import ClipDataset, StoreWriter, clip_indices, collate_clips, open_store, select_clips

COUNTS = [3, 12, 1, 10, 25, 7]


@pytest.fixture(scope="module")
def reader(tmp_path_factory):
    path = tmp_path_factory.mktemp("ds") / "s.zarr"
    with StoreWriter(path, META) as w:
        for i, n in enumerate(COUNTS):
            w.add(*clip_video(i, n, split="val" if i == 3 else "train"))
    return open_store(path)


def test_uniform_spreads_and_loop_pads():
    idx, mask = clip_indices([18, 10, 3, 1], clips=10)
    assert idx[0].tolist() == [0, 2, 4, 6, 8, 9, 11, 13, 15, 17]     # centres of 10 equal segments
    assert idx[1].tolist() == list(range(10))
    assert idx[2].tolist() == [0, 1, 2, 0, 1, 2, 0, 1, 2, 0]         # loop padding (paper 4.1)
    assert idx[3].tolist() == [0] * 10
    assert mask.all()


def test_all_pads_to_longest_with_mask():
    idx, mask = clip_indices([2, 5], clips=None, policy="all")
    assert mask.tolist() == [[True, True, False, False, False], [True] * 5]
    assert idx[1].tolist() == [0, 1, 2, 3, 4] and (idx[0, 2:] == 0).all()


def test_random_is_sorted_subset_or_looped_and_seeded():
    n = np.array([30, 10, 4, 25])
    a, mask = clip_indices(n, 8, "random", np.random.default_rng(7))
    b, _ = clip_indices(n, 8, "random", np.random.default_rng(7))
    c, _ = clip_indices(n, 8, "random", np.random.default_rng(8))
    assert (a == b).all() and not (a == c).all() and mask.all()
    for row, k in zip(a, n):
        if k >= 8:
            assert (np.diff(row) > 0).all() and row.max() < k       # distinct, sorted, real clips
        else:
            assert ((row - row[0]) % k == np.arange(8) % k).all()   # loop padding from a random start
    draws = np.stack([clip_indices([30], 8, "random", np.random.default_rng(s))[0][0] for s in range(200)])
    assert set(np.unique(draws)) == set(range(30))                   # every clip can be drawn


def test_unknown_policy():
    with pytest.raises(GcfError, match="unknown clip selection 'center'"):
        clip_indices([3], 4, "center")


def test_dataset_items_match_store(reader):
    ds = ClipDataset(reader, clips=4, select="uniform", split="train")
    assert len(ds) == 5 and "cls/v3" not in ds.video_ids
    x, mask, label, vid = ds[0]
    assert vid == "cls/v0" and label == 0 and x.dtype == torch.float32 and x.shape == (4, 8)
    f = reader.features("cls/v0").astype(np.float32)
    assert torch.equal(x, torch.from_numpy(f[[0, 1, 2, 0]])) and mask.all()
    val = ClipDataset(reader, clips=4, split="val")
    assert val.video_ids == ["cls/v3"] and val[0][2] == 0


def test_dataset_on_table_equals_dataset_on_reader(reader):
    a = ClipDataset(reader, clips=6, select="random", seed=3)
    b = ClipDataset(reader.load(), clips=6, select="random", seed=3)
    for i in range(len(a)):
        assert torch.equal(a[i][0], b[i][0]) and a[i][2:] == b[i][2:]


def test_random_dataset_is_deterministic_per_seed_and_epoch(reader):
    ds = ClipDataset(reader, clips=5, select="random", seed=0)
    first = [ds[i][0] for i in range(len(ds))]
    assert all(torch.equal(x, ds[i][0]) for i, x in enumerate(first))
    ds.set_epoch(1)
    assert not all(torch.equal(x, ds[i][0]) for i, x in enumerate(first))
    ds.set_epoch(0)
    in_workers = [x for batch in DataLoader(ds, batch_size=2, num_workers=2) for x in batch[0]]
    assert all(torch.equal(x, y) for x, y in zip(first, in_workers))


def test_all_policy_collates_with_mask(reader):
    ds = ClipDataset(reader, select="all")
    x, mask, labels, ids = next(iter(DataLoader(ds, batch_size=3, collate_fn=collate_clips)))
    assert x.shape == (3, 12, 8) and mask.sum(1).tolist() == [3, 12, 1]
    assert (x[0, 3:] == 0).all() and labels.tolist() == [0, 1, 2] and ids == ["cls/v0", "cls/v1", "cls/v2"]
    np.testing.assert_array_equal(x[1].numpy(), reader.features("cls/v1").astype(np.float32))


def test_select_clips_matches_dataset(reader):
    table = reader.load()
    x, mask = select_clips(table, np.arange(len(table)), clips=10, policy="uniform")
    ds = ClipDataset(table, clips=10)
    for i in range(len(table)):
        assert torch.equal(torch.from_numpy(x[i]), ds[i][0])
