"""The feature store: per-clip descriptors and per-video metadata on disk (Zarr v3 or HDF5); see docs/store.md.

The torch-based ClipDataset is imported on first use, so `gcf store ...` never imports torch.
"""

from gcf.store.backend import remove_store
from gcf.store.meta import SCHEMA_VERSION, SPLITS, StoreMeta, VideoInfo
from gcf.store.reader import FeatureTable, StoreReader, open_store
from gcf.store.select import clip_indices, select_clips
from gcf.store.writer import StoreWriter

__all__ = ["SCHEMA_VERSION", "SPLITS", "ClipDataset", "FeatureTable", "StoreMeta", "StoreReader", "StoreWriter",
           "VideoInfo", "clip_indices", "collate_clips", "open_store", "remove_store", "select_clips"]


def __getattr__(name: str):
    if name in ("ClipDataset", "collate_clips"):
        from gcf.store import dataset
        return getattr(dataset, name)
    raise AttributeError(f"module 'gcf.store' has no attribute {name!r}")
