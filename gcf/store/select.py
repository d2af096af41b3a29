"""Which clips a model sees: index arithmetic for a whole batch at once (no per-video Python loop).

Policies:
  uniform  the paper's: C clips at the centres of C equal segments of the video; a video with fewer than C
           clips is loop-padded (clips 0, 1, ..., n-1, 0, 1, ... repeated cyclically, paper section 4.1)
  random   training augmentation: a random sorted subset of C distinct clips; fewer than C: loop padding
           from a random start clip
  all      every clip; the batch is padded to its longest video and `mask` marks the real clips
With uniform and random every position holds a real clip (loop padding repeats clips), so the mask is all true.
"""

from __future__ import annotations

import numpy as np

from gcf.errors import GcfError

POLICIES = ("uniform", "random", "all")


def clip_indices(n_clips, clips: int | None, policy: str = "uniform",
                 rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-video clip indices [B, C] and mask [B, C] for videos with n_clips [B] (each >= 1) clips."""
    n = np.asarray(n_clips, dtype=np.int64).reshape(-1, 1)
    if policy == "all":
        pos = np.arange(int(n.max()) if len(n) else 0)
        mask = pos < n
        return np.where(mask, pos, 0), mask
    if policy not in POLICIES:
        raise GcfError(f"unknown clip selection {policy!r}; use one of {', '.join(POLICIES)}")
    if not clips or clips < 1:
        raise GcfError(f"clip selection {policy!r} needs clips >= 1 (got {clips})")
    pos = np.arange(clips)
    if policy == "uniform":
        spread = (2 * pos + 1) * n // (2 * clips)
        loop = pos % n
    else:
        rng = rng if rng is not None else np.random.default_rng()
        width = max(clips, int(n.max()) if len(n) else 0)
        keys = rng.random((len(n), width))
        keys[np.arange(width) >= n] = np.inf            # only real clips can be drawn
        spread = np.sort(np.argsort(keys, axis=1)[:, :clips], axis=1)
        loop = (rng.integers(0, n) + pos) % n
    idx = np.where(n >= clips, spread, loop)
    return idx, np.ones(idx.shape, dtype=bool)


def select_clips(table, video_indices, clips: int | None = 10, policy: str = "uniform",
                 rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Batch from a FeatureTable: x float32 [B, C, d] and mask bool [B, C] for the videos `video_indices`."""
    v = np.asarray(video_indices, dtype=np.int64)
    start = table.offsets[v]
    idx, mask = clip_indices(table.offsets[v + 1] - start, clips, policy, rng)
    x = table.features[start[:, None] + idx].astype(np.float32)
    x[~mask] = 0.0
    return x, mask
