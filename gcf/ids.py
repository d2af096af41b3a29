"""Video ids, the store's key for a video: a path relative to the input root without its extension, which a
folder's files that differ only in extension keep (`walk/a.mkv`, `walk/a.mp4`). `IdIndex` says which ids a
labels.csv row names, the same way for `gcf extract` and `gcf store verify` (no torch, no decoder imported)."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Iterable

VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv",
                              ".3gp", ".3g2", ".ogv", ".ts", ".mts", ".m2ts", ".vob", ".mxf", ".dv", ".asf", ".f4v",
                              ".gif"})


def base_id(video_id: str) -> str:
    """The id without a video extension: what the id of a file would be were it alone in its folder."""
    path = PurePosixPath(video_id)
    return str(path.with_suffix("")) if path.suffix.lower() in VIDEO_EXTENSIONS else video_id


class IdIndex:
    """Which ids a labels.csv row's `video` names, looked up in dicts built once (Kinetics lists 650k rows)."""

    def __init__(self, ids: Iterable[str]):
        self.ids = set(ids)
        self.by_base: dict[str, list[str]] = {}
        self.by_stem: dict[str, list[str]] = {}
        for video_id in sorted(self.ids):
            base = base_id(video_id)
            self.by_base.setdefault(base, []).append(video_id)
            self.by_stem.setdefault(base.rsplit("/", 1)[-1], []).append(video_id)

    def match(self, name: str) -> list[str]:
        """That id; else the ids it is the base of (`walk/a` -> `walk/a.mkv`, `walk/a.mp4`); else, for a name
        with a video extension, the id without it (`walk/b.mp4` -> `walk/b`); else the ids whose file stem it
        is. Ids from different folders mean the name is ambiguous (the caller decides)."""
        if name in self.ids:
            return [name]
        if name in self.by_base:
            return list(self.by_base[name])
        bare = base_id(name)
        if bare in self.ids:
            return [bare]
        return list(self.by_stem.get(name) or self.by_stem.get(bare, []))
