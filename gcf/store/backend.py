"""Pick the storage backend by path suffix, and delete stores."""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType

from gcf.errors import GcfError

ZARR_SUFFIXES = (".zarr",)
H5_SUFFIXES = (".h5", ".hdf5")


def backend_for(path: str | os.PathLike) -> ModuleType:
    """The backend module for a store path: `.zarr` -> Zarr v3 directory, `.h5`/`.hdf5` -> HDF5 file."""
    suffix = Path(path).suffix.lower()
    if suffix in ZARR_SUFFIXES:
        from gcf.store import zarr_backend
        return zarr_backend
    if suffix in H5_SUFFIXES:
        from gcf.store import h5_backend
        return h5_backend
    raise GcfError(f"{path}: unknown store type; name the store NAME.zarr (Zarr v3 directory) or NAME.h5 (HDF5)")


def remove_store(path: str | os.PathLike) -> bool:
    """Delete a gcf store (for --overwrite); returns False if nothing was there. Refuses to delete anything
    that is not a gcf store."""
    path = Path(path)
    backend = backend_for(path)
    if not path.exists():
        return False
    backend.read_header(path)  # raises "not a gcf feature store" for anything else
    backend.remove(path)
    return True
