"""Store-wide metadata (StoreMeta), per-video metadata (VideoInfo) and the versioned store header."""

from __future__ import annotations

import dataclasses
import datetime
import json
from dataclasses import dataclass, field

from gcf import __version__
from gcf.errors import GcfError
from gcf.sampling import check_sampling

SCHEMA_VERSION = 2  # version 2 added frame_step; stores with frame_step 1 are still written as version 1
READABLE_VERSIONS = (1, 2)
SPLITS = ("train", "val", "test", "")
DTYPES = ("float16", "float32")


@dataclass(frozen=True)
class StoreMeta:
    """What produced the descriptors; written once when the store is created, checked by every writer."""

    backbone: str
    weights: str
    clip_len: int
    stride: int
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    feature_dim: int
    class_names: tuple[str, ...]
    dtype: str = "float16"
    extra: dict = field(default_factory=dict)
    frame_step: int = 1  # frames between a clip's frames (a clip spans clip_len * frame_step frames)
    # read back from the store only (0 and empty until then); not part of equality
    schema_version: int = field(default=0, compare=False)
    gcf_version: str = field(default=__version__, compare=False)
    created: str = field(default="", compare=False)


@dataclass(frozen=True)
class VideoInfo:
    """One video's identity and timing; `label` indexes class_names (-1 unknown), `split` is one of SPLITS."""

    video_id: str
    source: str
    label: int
    split: str
    n_frames: int
    fps: float
    duration: float


_WRITTEN_FIELDS = [f.name for f in dataclasses.fields(StoreMeta) if f.compare]


def _normalized(meta: StoreMeta) -> dict:
    """The compared fields as plain JSON values (tuples become lists)."""
    return json.loads(json.dumps({k: getattr(meta, k) for k in _WRITTEN_FIELDS}))


def schema_version(meta: StoreMeta) -> int:
    """The oldest schema that holds `meta`: a store with frame_step > 1 is version 2, so a gcf that predates
    frame steps refuses it instead of appending clips of consecutive frames; others stay version 1."""
    return 2 if meta.frame_step != 1 else 1


def make_header(meta: StoreMeta) -> dict:
    """The JSON header stored once per store: schema version, gcf version, creation time and the meta fields."""
    created = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    return {"schema_version": schema_version(meta), "gcf_version": __version__, "created": created,
            "meta": _normalized(meta)}


def meta_from_header(header: dict, where: str) -> StoreMeta:
    """Parse a stored header; refuses unknown schema versions with a GcfError naming the store."""
    version = header.get("schema_version")
    if version not in READABLE_VERSIONS:
        readable = " and ".join(str(v) for v in READABLE_VERSIONS)
        raise GcfError(f"{where}: store schema version {version}, but this gcf ({__version__}) reads versions "
                       f"{readable}; open it with the gcf that wrote it or re-extract into a new store")
    m = header["meta"]
    return StoreMeta(backbone=m["backbone"], weights=m["weights"], clip_len=int(m["clip_len"]),
                     stride=int(m["stride"]), input_size=int(m["input_size"]),
                     mean=tuple(float(x) for x in m["mean"]), std=tuple(float(x) for x in m["std"]),
                     feature_dim=int(m["feature_dim"]), class_names=tuple(m["class_names"]),
                     dtype=m["dtype"], extra=dict(m["extra"]), frame_step=int(m.get("frame_step", 1)),
                     schema_version=version,
                     gcf_version=header.get("gcf_version", ""), created=header.get("created", ""))


def check_meta(meta: StoreMeta, where: str) -> None:
    """Reject metadata the store cannot hold (bad dtype, dim, normalisation, blank or repeated class names, clips
    whose frames interleave)."""
    if meta.dtype not in DTYPES:
        raise GcfError(f"{where}: descriptor dtype {meta.dtype!r} is not supported; use one of {', '.join(DTYPES)}")
    if meta.feature_dim < 1 or len(meta.mean) != 3 or len(meta.std) != 3:
        raise GcfError(f"{where}: bad store metadata (feature_dim={meta.feature_dim}, mean={meta.mean}, "
                       f"std={meta.std}); feature_dim must be positive and mean/std have 3 values")
    blank = [i for i, name in enumerate(meta.class_names) if not str(name).strip()]
    twice = sorted({name for i, name in enumerate(meta.class_names) if name in meta.class_names[:i]})
    if blank or twice:
        what = f"class {blank[0]} has a blank name" if blank else f"class name {twice[0]!r} is given twice"
        raise GcfError(f"{where}: {what}; class names must be distinct and not blank (a blank label means "
                       "an unlabelled video)")
    try:
        check_sampling(meta.clip_len, meta.stride, meta.frame_step)
    except GcfError as e:
        raise GcfError(f"{where}: {e}") from None


def meta_mismatch(stored: StoreMeta, wanted: StoreMeta, where: str) -> GcfError | None:
    """A GcfError naming every field where `wanted` differs from the store's metadata, or None if they agree."""
    a, b = _normalized(stored), _normalized(wanted)
    diff = [k for k in _WRITTEN_FIELDS if a[k] != b[k]]
    if not diff:
        return None
    detail = "; ".join(f"{k} is {_short(a[k])} in the store but {_short(b[k])} here" for k in diff)
    return GcfError(f"{where}: this store was made with different settings ({detail}); "
                    f"write to a new store path, or pass --overwrite to delete this one and start again")


def _short(value) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."
