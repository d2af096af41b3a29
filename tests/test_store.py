"""Feature store round trips on both backends: every field, variable clip counts, chunk boundaries, joins."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import zarr

from gcf.store import (FeatureTable, StoreMeta, StoreWriter, VideoInfo, open_store, remove_store,
                       select_clips)

BACKENDS = [".zarr", ".h5"]
META = StoreMeta(backbone="resnext101", weights="ab" * 32, clip_len=16, stride=16, input_size=112,
                 mean=(0.434, 0.405, 0.378), std=(0.152, 0.149, 0.157), feature_dim=8,
                 class_names=("jump", "run", "swim"), extra={"norm": "kinetics", "logits_classes": 5})


def clip_video(i: int, n: int, split: str = "train", dim: int = 8, logits: bool = True):
    """Arguments of StoreWriter.add for a synthetic video i with n clips."""
    rng = np.random.default_rng(i)
    info = VideoInfo(f"cls/v{i}", f"/data/cls/v{i}.mp4", i % 3, split, n * 16 + 3, 29.97, (n * 16 + 3) / 29.97)
    starts = np.arange(n) * 16
    times = np.stack([starts / 29.97, (starts + 16) / 29.97], axis=1)
    return info, rng.standard_normal((n, dim)).astype(np.float32), starts, times, \
        (rng.standard_normal((n, 5)) * 3 if logits else None)


def _header_version(path) -> int:
    if path.suffix == ".zarr":
        return zarr.open_group(path, mode="r").attrs["gcf_store"]["schema_version"]
    import h5py, json
    with h5py.File(path, "r") as f:
        return json.loads(f.attrs["gcf_store"])["schema_version"]


@pytest.mark.parametrize("suffix", BACKENDS)
def test_frame_step_store_is_schema_2_and_reads_back(tmp_path, suffix):
    """A store of strided clips is written as schema 2 (a gcf before frame steps refuses it); step 1 stays 1."""
    strided = dataclasses.replace(META, clip_len=8, stride=64, frame_step=8)
    for meta, version in ((META, 1), (strided, 2)):
        path = tmp_path / f"s{version}{suffix}"
        with StoreWriter(path, meta) as w:
            w.add(*clip_video(0, 3))
        assert _header_version(path) == version
        r = open_store(path)
        assert r.meta == meta and r.meta.schema_version == version and r.meta.frame_step == meta.frame_step
        with StoreWriter(path, meta) as w:  # a second writer of the same settings appends to it
            w.add(*clip_video(1, 2))
        assert sorted(open_store(path).videos) == ["cls/v0", "cls/v1"]


@pytest.mark.parametrize("suffix", BACKENDS)
def test_round_trip_every_field(tmp_path, suffix):
    path = tmp_path / f"s{suffix}"
    counts = [1, 3, 7, 2, 5, 11, 4]
    with StoreWriter(path, META, chunk_rows=4) as w:  # small chunks: videos straddle chunk boundaries
        for i, n in enumerate(counts):
            w.add(*clip_video(i, n, split=("train", "val", "test", "")[i % 4], logits=i % 2 == 0))
        w.add_failure(VideoInfo("cls/broken", "/data/cls/broken.mp4", 1, "train", 0, 0.0, 0.0), "moov atom not found")
    r = open_store(path)
    assert r.meta == META and r.meta.schema_version == 1 and r.meta.created and r.meta.gcf_version
    assert r.videos == [f"cls/v{i}" for i in range(len(counts))]
    assert r.failed == {"cls/broken": "moov atom not found"}
    assert r.info("cls/broken").source == "/data/cls/broken.mp4"
    for i, n in enumerate(counts):
        info, x, starts, times, logits = clip_video(i, n, split=("train", "val", "test", "")[i % 4], logits=i % 2 == 0)
        vid = info.video_id
        assert r.info(vid) == info and r.label(vid) == i % 3 and r.split(vid) == info.split
        np.testing.assert_array_equal(r.features(vid), x.astype(np.float16))
        assert r.features(vid).dtype == np.float16 and r.n_clips(vid) == n
        c = r.clips(vid)
        np.testing.assert_array_equal(c["start_frame"], starts)
        np.testing.assert_allclose(c["start_s"], times[:, 0])
        np.testing.assert_allclose(c["end_s"], times[:, 1])
        if logits is None:
            assert r.logits(vid) is None
        else:
            np.testing.assert_array_equal(r.logits(vid), logits.astype(np.float16))
    table = r.load()
    assert isinstance(table, FeatureTable) and len(table) == len(counts)
    assert table.offsets.tolist() == np.concatenate([[0], np.cumsum(counts)]).tolist()
    np.testing.assert_array_equal(table.features, np.concatenate([r.features(v) for v in r.videos]))
    assert table.labels.tolist() == [i % 3 for i in range(len(counts))]
    val = r.load(split="val")
    assert val.video_ids == ["cls/v1", "cls/v5"] and val.splits == ["val", "val"]
    np.testing.assert_array_equal(val.features, np.concatenate([r.features("cls/v1"), r.features("cls/v5")]))
    with pytest.raises(KeyError, match="failed"):
        r.features("cls/broken")
    with pytest.raises(KeyError, match="not in store"):
        r.features("cls/nope")


def test_float32_store_and_zarr_library_reads_it(tmp_path):
    path = tmp_path / "s.zarr"
    meta = dataclasses.replace(META, dtype="float32")
    with StoreWriter(path, meta, chunk_rows=3) as w:
        for i in range(4):
            w.add(*clip_video(i, 2 + i))
    r = open_store(path)
    assert r.features("cls/v3").dtype == np.float32
    # the store is plain Zarr v3: the zarr library reads the same rows and the header
    g = zarr.open_group(path, mode="r")
    assert g.attrs["gcf_store"]["schema_version"] == 1
    (part,) = list(g["parts"].group_keys())
    n = sum(2 + i for i in range(4))
    np.testing.assert_array_equal(g["parts"][part]["features"][:n], r.load().features)


@pytest.mark.parametrize("suffix", BACKENDS)
def test_rows_are_committed_in_chunks_and_timed_flushes(tmp_path, suffix):
    path = tmp_path / f"s{suffix}"
    w = StoreWriter(path, META, chunk_rows=5)
    w.add(*clip_video(0, 3))
    assert open_store(path).videos == []          # buffered, not committed yet
    w.add(*clip_video(1, 3))                      # 6 rows >= one chunk: v0 committed (v1 straddles: zarr)
    assert "cls/v0" in open_store(path).videos
    w.flush()
    assert open_store(path).videos == ["cls/v0", "cls/v1"]
    w.flush_seconds = 0.0                         # every add now commits at once
    w.add(*clip_video(2, 2))
    assert open_store(path).videos == ["cls/v0", "cls/v1", "cls/v2"]
    w.close()
    r = open_store(path)
    for i, n in enumerate([3, 3, 2]):
        np.testing.assert_array_equal(r.features(f"cls/v{i}"), clip_video(i, n)[1].astype(np.float16))


@pytest.mark.parametrize("suffix", BACKENDS)
def test_writers_join_and_resume_with_done(tmp_path, suffix):
    path = tmp_path / f"s{suffix}"
    with StoreWriter(path, META, writer_id="gpu0") as w:
        w.add(*clip_video(0, 2))
        w.add_failure(clip_video(1, 1)[0], "decoder error")
    with StoreWriter(path, META, writer_id="gpu1") as w:
        assert w.done() == {"cls/v0", "cls/v1"}
        w.add(*clip_video(2, 4))
        assert w.done() == {"cls/v0", "cls/v1", "cls/v2"}
    r = open_store(path)
    assert r.videos == ["cls/v0", "cls/v2"] and list(r.failed) == ["cls/v1"]


@pytest.mark.parametrize("suffix", BACKENDS)
def test_duplicate_ids_across_writers_resolve_deterministically(tmp_path, suffix):
    path = tmp_path / f"s{suffix}"
    info, x, starts, times, _ = clip_video(0, 3)
    with StoreWriter(path, META, writer_id="b") as w:
        w.add_failure(info, "transient error")
        w.add(*clip_video(5, 1))
    with StoreWriter(path, META, writer_id="c") as w:
        w.add(info, x + 1, starts, times)
    with StoreWriter(path, META, writer_id="a") as w:
        w.add(info, x, starts, times)
        w.add_failure(clip_video(5, 1)[0], "late failure")
    r = open_store(path)
    # ok beats failed; among ok copies the part that sorts first ("a") wins
    assert sorted(r.videos) == ["cls/v0", "cls/v5"] and r.failed == {}
    np.testing.assert_array_equal(r.features("cls/v0"), x.astype(np.float16))
    assert len(r.load()) == 2


@pytest.mark.parametrize("suffix", BACKENDS)
def test_remove_and_overwrite(tmp_path, suffix):
    path = tmp_path / f"s{suffix}"
    with StoreWriter(path, META) as w:
        w.add(*clip_video(0, 2))
    with StoreWriter(path, META, overwrite=True) as w:
        assert w.done() == set()
        w.add(*clip_video(1, 2))
    assert open_store(path).videos == ["cls/v1"]
    assert remove_store(path) is True
    assert not path.exists() and not (tmp_path / f"s{suffix}.parts").exists()
    assert remove_store(path) is False


def test_select_clips_from_a_loaded_store(tmp_path):
    path = tmp_path / "s.zarr"
    with StoreWriter(path, META) as w:
        for i, n in enumerate([2, 12, 5]):
            w.add(*clip_video(i, n))
    table = open_store(path).load()
    x, mask = select_clips(table, [0, 1, 2], clips=4)
    assert x.shape == (3, 4, 8) and x.dtype == np.float32 and mask.all()
    f0 = table.features[0:2].astype(np.float32)
    np.testing.assert_array_equal(x[0], f0[[0, 1, 0, 1]])           # loop padding
    np.testing.assert_array_equal(x[1], table.features[2:14][[1, 4, 7, 10]].astype(np.float32))
    x, mask = select_clips(table, [0, 2], clips=None, policy="all")
    assert x.shape == (2, 5, 8) and mask.sum(1).tolist() == [2, 5] and (x[0, 2:] == 0).all()
