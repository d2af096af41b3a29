"""Find the videos to extract, with their labels and splits, from the layouts datasets ship in.

`discover(inputs)` accepts, mixed freely:

- a folder, scanned recursively for video files. `<class>/<video>` gives the label (UCF101, HMDB51 and Kinetics
  downloads); `<split>/<class>/<video>` (split = train, val/validation/validate, test) also gives the split, and
  `<split>/<video>` the split only. A `labels.csv` (`video,label[,split]`, as `gcf synth` writes) at the top of the
  folder overrides labels and splits; its `video` is the video id or the file stem.
- a single video file (id = file stem, no label).
- a CSV or list file: `path,label[,split]` rows (header optional; columns named path/video/file, label/class,
  split), or one path per line. Paths are relative to `root` (default: the list's folder) or absolute; a path
  without extension matches the one video file with that stem.
- UCF101 split files `trainlist0N.txt` (`Class/v_Class_gXX_cYY.avi 1`) and `testlist0N.txt` (no index), resolved
  against `root` (the `UCF-101` folder; default: the list's folder); `classInd.txt` next to them fixes the class
  order.
- HMDB51 split files `<class>_test_splitN.txt` (`video.avi 1|2|0`: train, test, not used; unused videos are left
  out), resolved as `root/<class>/<video>` (or `root/<video>`).
- Kinetics annotation CSVs (`label,youtube_id,time_start,time_end,split`, the label column absent for test sets):
  the file `<youtube_id>_<start:06d>_<end:06d>.<ext>` is looked up anywhere under `root` (`<split>/<label>/` or
  flat), and its video id is that stem (stable wherever the file sits).

Video ids are paths relative to the input root without extension (`class_0/vid_003`), the store's convention;
files in one folder that differ only in extension (`vid_003.mp4` and `vid_003.mkv`, a download fetched twice)
keep it (`class_0/vid_003.mkv`, `class_0/vid_003.mp4`), with a warning, so both are extracted.
Listed videos that are not on disk stay in the dataset (`Dataset.missing()`), so the pipeline records them as
failed ("no such file") instead of dropping them silently; a list none of whose videos exists is an error (the
root is wrong). Items are sorted by video id; a video id that occurs
twice is an error.
"""

from __future__ import annotations

import csv
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from gcf.errors import GcfError
from gcf.ids import VIDEO_EXTENSIONS, IdIndex, base_id

SPLITS = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
          "validate": "val", "test": "test", "testing": "test", "": ""}
UCF_LIST = re.compile(r"(train|test)list\d+\.txt$")
HMDB_LIST = re.compile(r"(.+)_test_split\d+\.txt$")

LIST_EXTENSIONS = frozenset({".csv", ".txt", ".lst", ".list", ".tsv"})   # a list, never a video

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VideoItem:
    """One video to extract: file path, store id, class name (None if unknown) and split ("" if none)."""

    path: str
    video_id: str
    label: str | None
    split: str = ""


@dataclass(frozen=True)
class Dataset:
    """The videos found, sorted by id, and the class names (label i of the store = class_names[i])."""

    items: list[VideoItem]
    class_names: tuple[str, ...]

    def label_index(self, label: str | None) -> int:
        """Index of a class name in class_names, -1 for an unknown (None) label."""
        return -1 if label is None else self.class_names.index(label)

    def missing(self) -> list[VideoItem]:
        """Listed videos whose file is not on disk (the pipeline records them as failed)."""
        return [item for item in self.items if not os.path.isfile(item.path)]


def discover(inputs: str | Path | Sequence[str | Path], root: str | Path | None = None) -> Dataset:
    """Videos, labels and splits from folders, video files, CSV/list files, UCF101/HMDB51 split files, Kinetics CSVs."""
    if isinstance(inputs, (str, Path)):
        inputs = [inputs]
    items: list[VideoItem] = []
    class_order: list[str] = []
    for given in inputs:
        path = Path(given)
        if path.is_dir():
            items += _from_folder(path)
        elif not path.is_file():
            raise GcfError(f"{path}: no such file or folder; give a video folder, a video, a CSV/list or split files")
        elif path.suffix.lower() in VIDEO_EXTENSIONS or not _is_text(path):   # a video of any container
            if path.suffix.lower() in LIST_EXTENSIONS:
                raise GcfError(f"{path}: not UTF-8 text; save the list as UTF-8 (e.g. iconv -f latin1 -t utf-8)")
            items.append(VideoItem(str(path), path.stem, None))
        else:
            base = Path(root) if root is not None else path.parent
            found, order = _from_file(path, base)
            if found and not any(os.path.isfile(item.path) for item in found):
                raise GcfError(f"{path}: none of its {len(found)} videos exists under {base} (e.g. {found[0].path}); "
                               f"give the folder the paths are relative to as the root (--root)")
            items += found
            class_order = class_order or order
    if not items:
        raise GcfError(f"{', '.join(map(str, inputs))}: no videos found "
                       f"(looked for {', '.join(sorted(VIDEO_EXTENSIONS))})")
    items.sort(key=lambda item: item.video_id)
    for a, b in zip(items, items[1:]):
        if a.video_id == b.video_id:
            raise GcfError(f"video id '{a.video_id}' occurs twice ({a.path} and {b.path}); give each video once "
                           f"(one split file per split, not several); for two files of one name in different "
                           f"folders give the folder holding both (ids are paths relative to it)")
    labels = {item.label for item in items if item.label is not None}
    if class_order and labels <= set(class_order):
        return Dataset(items, tuple(class_order))
    return Dataset(items, tuple(sorted(labels)))


def _from_folder(folder: Path) -> list[VideoItem]:
    """Every video under `folder`; labels and splits from the folder layout, then from folder/labels.csv."""
    by_id: dict[str, list[Path]] = {}
    for path in _scan(folder):
        by_id.setdefault(_video_id(path, folder), []).append(path)
    items = {}
    for base, paths in by_id.items():
        if len(paths) > 1:
            log.warning("%s: %d files differ only in extension (%s); all are extracted, as %s", folder / base,
                        len(paths), ", ".join(p.suffix for p in paths), ", ".join(base + p.suffix for p in paths))
        for path in paths:
            parts = path.relative_to(folder).parts
            label, split = (parts[0] if len(parts) > 1 else None), ""
            if len(parts) > 1 and parts[0].lower() in SPLITS:
                split, label = SPLITS[parts[0].lower()], (parts[1] if len(parts) > 2 else None)
            video_id = base if len(paths) == 1 else base + path.suffix
            if video_id in items:       # `a.mp4.avi` beside `a.mp4` and `a.mkv`
                raise GcfError(f"video id '{video_id}' occurs twice ({items[video_id].path} and {path}); "
                               f"rename one of the two files")
            items[video_id] = VideoItem(str(path), video_id, label, split)
    labels_csv = folder / "labels.csv"
    if labels_csv.is_file():
        _apply_labels(labels_csv, folder, items)
    return list(items.values())


def _apply_labels(labels_csv: Path, folder: Path, items: dict[str, VideoItem]) -> None:
    """Override labels/splits from a `video,label[,split]` CSV; rows naming no video on disk become missing items."""
    index = IdIndex(items)
    for line, row in _rows(labels_csv, ("video", "label", "split")):
        video, label, split = row["video"], row.get("label") or None, _split(row.get("split", ""), labels_csv, line)
        matches = index.match(video)
        if len({base_id(m) for m in matches}) > 1:
            raise GcfError(f"{labels_csv}:{line}: '{video}' matches {len(matches)} videos; use the video id "
                           f"(path relative to {folder}, e.g. {matches[0]})")
        for video_id in matches or [video]:
            path = items[video_id].path if matches else str(folder / video)
            items[video_id] = VideoItem(path, video_id, label, split)


def _is_text(path: Path) -> bool:
    """Whether a file reads as UTF-8 text without NUL bytes (a list or CSV), judged from its first 64 KiB."""
    with open(path, "rb") as f:
        head = f.read(1 << 16)
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as e:
        if e.start < len(head) - 3:          # not just a character cut at the end of the sample
            return False
    return b"\0" not in head


def _from_file(path: Path, base: Path) -> tuple[list[VideoItem], list[str]]:
    """Items listed in a file (format by name and header), and the class order it fixes (UCF101 classInd.txt)."""
    if UCF_LIST.match(path.name):
        return _from_ucf(path, base), _ucf_classes(path.parent / "classInd.txt")
    hmdb = HMDB_LIST.match(path.name)
    if hmdb:
        return _from_hmdb(path, base, hmdb.group(1)), []
    with open(path, newline="", encoding="utf-8-sig") as f:
        first = f.readline()
    if "youtube_id" in first:
        return _from_kinetics(path, base), []
    return _from_list(path, base), []


def _from_list(path: Path, base: Path) -> list[VideoItem]:
    """`path,label[,split]` rows (header optional) or one path per line (a file name may hold a comma)."""
    with open(path, encoding="utf-8-sig") as f:
        raw = f.read().splitlines()
    items = []
    for line, row in _rows(path, ("path", "label", "split")):
        video = _resolve(base, row["path"])
        if not video.is_file() and "," in raw[line - 1]:     # csv rows number as lines (no quoted line breaks)
            video, row = _comma_path(base, raw[line - 1], video, row)
        items.append(VideoItem(str(video), _video_id(video, base), row.get("label") or None,
                               _split(row.get("split", ""), path, line)))
    return items


def _comma_path(base: Path, text: str, video: Path, row: dict[str, str]) -> tuple[Path, dict[str, str]]:
    """An unquoted file name with commas (`my, video.mp4,walk`): the longest comma-joined start of the line that
    is a video file, the cells after it as label and split; else the row as parsed."""
    parts = text.split(",")
    for k in range(len(parts), 1, -1):
        whole = _resolve(base, ",".join(parts[:k]).strip())
        if whole.is_file():
            return whole, dict(zip(("label", "split"), (cell.strip() for cell in parts[k:])))
    return video, row


def _from_ucf(path: Path, root: Path) -> list[VideoItem]:
    """UCF101 trainlist/testlist: `Class/v_Class_gXX_cYY.avi [index]`, the class is the folder."""
    split = "train" if path.name.startswith("train") else "test"
    items = []
    for line in _lines(path):
        rel = line.split()[0]
        items.append(VideoItem(str(root / rel), _video_id(root / rel, root), rel.split("/")[0], split))
    return items


def _ucf_classes(class_ind: Path) -> list[str]:
    """Class names in classInd.txt order (`1 ApplyEyeMakeup`), or [] without the file."""
    if not class_ind.is_file():
        return []
    rows = [line.split() for line in _lines(class_ind)]
    return [name for _, name in sorted((int(index), name) for index, name in rows)]


def _from_hmdb(path: Path, root: Path, label: str) -> list[VideoItem]:
    """HMDB51 `<class>_test_splitN.txt`: `video.avi 1|2|0` = train, test, not used (left out)."""
    items = []
    for line_no, line in enumerate(_lines(path), 1):
        parts = line.rsplit(maxsplit=1)
        if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
            raise GcfError(f"{path}:{line_no}: expected 'video.avi 0|1|2', got '{line}'")
        name, flag = parts
        if flag == "0":
            continue
        video = root / label / name
        if not video.is_file() and (root / name).is_file():
            video = root / name
        items.append(VideoItem(str(video), _video_id(root / label / name, root), label,
                               "train" if flag == "1" else "test"))
    return items


def _from_kinetics(path: Path, root: Path) -> list[VideoItem]:
    """Kinetics `label,youtube_id,time_start,time_end,split`; files found by stem anywhere under root."""
    on_disk: dict[str, Path] = {}
    for video in _scan(root):
        on_disk.setdefault(video.stem, video)
    items = []
    for line, row in _rows(path, ("label", "youtube_id", "time_start", "time_end", "split"), header=True):
        try:
            stem = f"{row['youtube_id']}_{int(float(row['time_start'])):06d}_{int(float(row['time_end'])):06d}"
        except (KeyError, ValueError):
            raise GcfError(f"{path}:{line}: expected youtube_id,time_start,time_end columns with numbers") from None
        video = on_disk.get(stem, root / f"{stem}.mp4")
        items.append(VideoItem(str(video), stem, row.get("label") or None, _split(row.get("split", ""), path, line)))
    return items


def _rows(path: Path, columns: tuple[str, ...], header: bool | None = None) -> Iterable[tuple[int, dict[str, str]]]:
    """(line number, {column: value}) of a CSV; a first row naming the first column (or a synonym) is a header."""
    synonyms = {"path": {"path", "video", "file", "filename"}, "video": {"video", "path", "file", "filename"},
                "label": {"label", "class"}}
    with open(path, newline="", encoding="utf-8-sig") as f:
        rows = [(i, [cell.strip() for cell in row]) for i, row in enumerate(csv.reader(f), 1)
                if row and row[0].strip() and not row[0].lstrip().startswith("#")]
    if not rows:
        return []
    names = list(columns)
    if header or (header is None and rows[0][1][0].lower() in synonyms.get(columns[0], {columns[0]})):
        lower = [cell.lower() for cell in rows[0][1]]
        names = [next((c for c in columns if cell in synonyms.get(c, {c})), cell) for cell in lower]
        rows = rows[1:]
    return [(i, dict(zip(names, row))) for i, row in rows]


def _lines(path: Path) -> list[str]:
    """Non-empty lines of a text file, stripped."""
    with open(path, encoding="utf-8-sig") as f:
        return [line.strip() for line in f if line.strip()]


def _scan(folder: Path) -> list[Path]:
    """Video files under `folder` (recursive, following links, hidden entries skipped), sorted."""
    found, seen = [], set()
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:                       # a link loop
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        found += [Path(dirpath) / name for name in filenames
                  if not name.startswith(".") and Path(name).suffix.lower() in VIDEO_EXTENSIONS]
    return sorted(found)


def _resolve(base: Path, given: str) -> Path:
    """A listed path: absolute or relative to base; without a video extension, the one video file with that stem."""
    path = Path(given) if os.path.isabs(given) else base / given
    if path.suffix.lower() not in VIDEO_EXTENSIONS and not path.is_file():
        candidates = sorted(p for p in path.parent.glob(f"{path.name}.*") if p.suffix.lower() in VIDEO_EXTENSIONS)
        if len(candidates) == 1:
            return candidates[0]
    return path


def _video_id(path: Path, root: Path) -> str:
    """Path relative to root without extension ('/'-separated); the whole path for files outside root."""
    try:
        rel = path.relative_to(root)
    except ValueError:
        rel = path.relative_to(path.anchor) if path.is_absolute() else path
    rel = rel.with_suffix("") if rel.suffix.lower() in VIDEO_EXTENSIONS else rel
    return rel.as_posix()


def _split(value: str, path: Path, line: int) -> str:
    """Canonical split name (train, val, test or ""), or an error naming the file and line."""
    split = SPLITS.get(value.strip().lower())
    if split is None:
        raise GcfError(f"{path}:{line}: unknown split '{value}'; use train, val or test")
    return split
