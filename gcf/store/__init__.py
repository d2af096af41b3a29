"""The feature store: per-clip descriptors and per-video metadata on disk (Zarr v3 or HDF5)."""
