"""`gcf store info/verify/import/export`: inspect, check, fill and dump feature stores (no torch import)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import click
import numpy as np

from gcf.errors import GcfError, plural
from gcf.ids import IdIndex
from gcf.store.backend import backend_for
from gcf.store.meta import SPLITS, StoreMeta, VideoInfo
from gcf.store.reader import StoreReader, open_store
from gcf.store.writer import StoreWriter


@click.group()
def store() -> None:
    """Inspect, check, import and export feature stores (.zarr or .h5)."""


def summary(r: StoreReader) -> dict:
    """What `gcf store info` reports, as JSON-able values."""
    n = np.array([r.n_clips(v) for v in r.videos], dtype=np.int64)
    m = r.meta
    splits: dict[str, int] = {}
    for v in r.videos:
        s = r.split(v) or "(none)"
        splits[s] = splits.get(s, 0) + 1
    return {
        "path": str(r.path), "format": backend_for(r.path).FORMAT,
        "schema_version": m.schema_version, "gcf_version": m.gcf_version, "created": m.created,
        "videos": len(r.videos), "clips": int(n.sum()),
        "clips_per_video": {"min": int(n.min()), "mean": round(float(n.mean()), 2), "max": int(n.max())}
        if len(n) else None,
        "feature_dim": m.feature_dim, "dtype": m.dtype, "classes": len(m.class_names),
        "class_names": list(m.class_names), "splits": splits, "failures": len(r.failed),
        "backbone": m.backbone, "weights": m.weights, "clip_len": m.clip_len,
        "frame_step": m.frame_step, "stride": m.stride,
        "input_size": m.input_size, "mean": list(m.mean), "std": list(m.std), "extra": m.extra,
        "size_bytes": backend_for(r.path).size(r.path),
    }


@store.command()
@click.argument("path", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
def info(path: str, as_json: bool) -> None:
    """Summarise a store: videos, clips, dim, classes, splits, failures, backbone, size on disk."""
    r = open_store(path)
    s = summary(r)
    if as_json:
        click.echo(json.dumps({**s, "failed": r.failed}, indent=2))
        return
    per = s["clips_per_video"]
    shown = [json.dumps(c, ensure_ascii=False) if "," in c or c != c.strip() else c for c in s["class_names"][:10]]
    classes = ", ".join(shown) + (" ..." if s["classes"] > 10 else "")      # a name with a comma is quoted
    click.echo(f"{s['path']} ({s['format']}, schema {s['schema_version']}, gcf {s['gcf_version']}, "
               f"created {s['created']})")
    click.echo(f"videos:    {s['videos']} ok, {s['failures']} failed")
    click.echo(f"clips:     {s['clips']}" + (f" ({per['min']}-{per['max']} per video, mean {per['mean']})"
                                             if per else ""))
    click.echo(f"features:  {s['feature_dim']}-d {s['dtype']}")
    click.echo(f"classes:   {s['classes']} ({classes})")
    click.echo("splits:    " + (", ".join(f"{k} {v}" for k, v in s["splits"].items()) or "-"))
    step = f", frame_step {s['frame_step']}" if s["frame_step"] > 1 else ""
    click.echo(f"backbone:  {s['backbone']} (weights {s['weights']}), clip_len {s['clip_len']}{step}, "
               f"stride {s['stride']}, input {s['input_size']}")
    click.echo(f"size:      {s['size_bytes'] / 2**20:.1f} MiB on disk")
    for vid, err in list(r.failed.items())[:5]:
        click.echo(f"failed:    {vid}: {err}")
    if len(r.failed) > 5:
        click.echo(f"failed:    ... {len(r.failed) - 5} more (`gcf store info {path} --json` lists them all)")


@store.command()
@click.argument("path", type=click.Path())
@click.option("--labels", type=click.Path(exists=True, dir_okay=False),
              help="CSV with a `video` column: report listed videos that are not in the store.")
def verify(path: str, labels: str | None) -> None:
    """Check a store: structure, shapes, NaN/Inf, leftovers of killed writers, missing videos. Exit 1 on damage."""
    backend = backend_for(path)
    r = open_store(path)
    damage, notes = backend.check(Path(path))
    if not damage:
        damage += r.check_values()
    if labels:
        expected = _read_labels(Path(labels), require_label=False)
        present = set(r.videos) | set(r.failed)
        index = IdIndex(present)
        missing = [v for v in expected if not index.match(v)]
        if missing:
            damage.append(f"{plural(len(missing), 'video')} listed in {labels} {'is' if len(missing) == 1 else 'are'} not in the store "
                          f"(e.g. {', '.join(missing[:5])}); rerun the extraction to add them")
    click.echo(f"{path}: {plural(len(r.videos), 'video')} ok, {len(r.failed)} failed, {len(r.parts)} part(s)")
    for line in notes:
        click.echo(f"note: {line}")
    for line in damage:
        click.echo(f"damage: {line}")
    if damage:
        click.echo(f"{path}: {len(damage)} problem(s) found")
        raise SystemExit(1)
    click.echo(f"{path}: ok")


@store.command(name="import")
@click.argument("folder", type=click.Path(exists=True, file_okay=False))
@click.option("--labels", required=True, type=click.Path(exists=True, dir_okay=False),
              help="CSV with columns video,label[,split]; video is the .npy file stem.")
@click.option("-o", "--out", required=True, type=click.Path(), help="Store to create or add to (.zarr or .h5).")
@click.option("--backbone", default="imported", show_default=True, help="Backbone name to record.")
@click.option("--weights", default="unknown", show_default=True, help="Weights identity to record (e.g. sha256).")
@click.option("--clip-len", default=16, show_default=True, type=click.IntRange(1),
              help="Frames per clip the features were made from.")
@click.option("--frame-step", default=1, show_default=True, type=click.IntRange(1),
              help="Frames between a clip's frames (8 for Slow R50's 8x8 clips); a clip spans clip length x step.")
@click.option("--stride", type=click.IntRange(1), help="Frames between clip starts [default: clip span].")
@click.option("--input-size", default=112, show_default=True, help="Crop size the backbone saw.")
@click.option("--fps", default=30.0, show_default=True, help="Frame rate used to derive clip times in seconds.")
@click.option("--dtype", type=click.Choice(["float16", "float32"]), default="float16", show_default=True)
@click.option("--overwrite", is_flag=True, help="Delete the store first if it exists.")
def import_(folder: str, labels: str, out: str, backbone: str, weights: str, clip_len: int, frame_step: int,
            stride: int | None, input_size: int, fps: float, dtype: str, overwrite: bool) -> None:
    """Import one .npy per video ([n_clips, d], as video_features writes) with a labels CSV into a store."""
    span = clip_len * frame_step
    stride = stride or span
    rows = _read_labels(Path(labels), require_label=True)
    files = _npy_files(Path(folder))
    dims = {}
    for vid, f in files.items():  # check everything cheap before writing anything
        if vid not in rows:
            raise GcfError(f"{labels}: no row for video {vid!r} ({f}); add a line `{vid},<label>,<split>`")
        dims[vid] = _npy_shape(f)
    d = next(iter(dims.values()))[1]
    for vid, shape in dims.items():
        if shape[1] != d:
            raise GcfError(f"{files[vid]}: shape {list(shape)} but other files have {d} features per clip; "
                           f"import features of one backbone into one store")
    class_names = _class_names({label for label, _ in rows.values() if label})
    extra = {"imported_from": str(Path(folder).resolve()), "fps_assumed": fps}
    existing = open_store(out) if Path(out).exists() and not overwrite else None
    retry: set[str] = set()
    stored_ok = set(existing.videos) if existing is not None else set()   # a set: stores hold millions of ids
    if existing is not None:                       # adding to a store: its classes and provenance stay
        stored, retry = existing.meta, set(existing.failed)     # a file fixed since it failed is imported now
        unknown = sorted({rows[vid][0] for vid in files if rows[vid][0]} - set(stored.class_names))
        if unknown:
            raise GcfError(f"{labels}: label(s) {', '.join(map(repr, unknown[:5]))} are not among the "
                           f"{len(stored.class_names)} classes of {out}; import into a new store, or import every "
                           f"video again with --overwrite")
        class_names, extra = stored.class_names, stored.extra
    meta = StoreMeta(backbone=backbone, weights=weights, clip_len=clip_len, stride=stride, input_size=input_size,
                     mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), feature_dim=d, class_names=class_names,
                     dtype=dtype, frame_step=frame_step, extra=extra)
    added, failed = 0, []
    with StoreWriter(out, meta, writer_id="import", overwrite=overwrite) as w:
        done, elsewhere = w.done() - retry, []
        for vid, f in files.items():
            if vid in done:
                source = existing.info(vid).source if vid in stored_ok else str(f)
                if source != str(f):
                    elsewhere.append(f"{vid} ({source}, not {f})")
                continue
            label, split = rows[vid]
            x = np.load(f, allow_pickle=False)
            n = len(x)
            starts = np.arange(n, dtype=np.int64) * stride
            times = np.stack([starts / fps, (starts + span) / fps], axis=1)
            n_frames = int(starts[-1]) + span
            info = VideoInfo(video_id=vid, source=str(f), label=class_names.index(label) if label else -1,
                             split=split, n_frames=n_frames, fps=fps, duration=n_frames / fps)
            try:
                w.add(info, x, starts, times)
                added += 1
            except GcfError as e:                  # NaN/Inf, float16 overflow: this file fails, the rest go on
                if vid not in retry:                   # still broken: its failure is on record already
                    w.add_failure(info, str(e))
                failed.append(str(e))
    already = len(files) - added - len(failed)
    click.echo(f"{out}: imported {added} of {plural(len(files), 'video')} ({already} already in the store, "
               f"{len(failed)} failed)")
    if elsewhere:
        click.echo(f"warning: {len(elsewhere)} video id(s) are in the store from other files and were kept: "
                   f"{'; '.join(elsewhere[:3])}; rename a file to import it as another video")
    for line in failed[:5]:
        click.echo(f"failed: {line}")
    if failed:
        click.echo(f"{len(failed)} file(s) recorded as failed (`gcf store info {out}` lists them): fix them and "
                   f"rerun the import, which adds them and skips the rest")
    if failed and not added and not already:
        raise SystemExit(1)


def _class_names(labels: set[str]) -> tuple[str, ...]:
    """Class names in index order: numerically when every label is an integer (Kinetics class ids: 2 before 10),
    else as text."""
    try:
        return tuple(sorted(labels, key=int))
    except ValueError:                             # a name, or a digit int() does not take (superscripts)
        return tuple(sorted(labels))


def _read_labels(path: Path, require_label: bool) -> dict[str, tuple[str, str]]:
    """video -> (label, split) from a CSV with columns video,label[,split]."""
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if "video" not in (reader.fieldnames or []) or (require_label and "label" not in reader.fieldnames):
            raise GcfError(f"{path}: needs a header with columns video,label[,split] (found "
                           f"{','.join(reader.fieldnames or [])}); add the header line")
        rows = {}
        for line, row in enumerate(reader, start=2):
            vid, split = (row["video"] or "").strip(), (row.get("split") or "").strip()
            if not vid:
                raise GcfError(f"{path}:{line}: empty video name; fill it in or delete the line")
            if split not in SPLITS:
                raise GcfError(f"{path}:{line}: unknown split {split!r} for {vid}; use train, val, test or "
                               f"leave it empty")
            if vid in rows:
                raise GcfError(f"{path}:{line}: video {vid!r} appears twice; keep one line per video")
            rows[vid] = ((row.get("label") or "").strip(), split)
    return rows


def _npy_files(folder: Path) -> dict[str, Path]:
    """video id (file stem) -> .npy path, for every .npy under folder."""
    files: dict[str, Path] = {}
    for f in sorted(folder.rglob("*.npy")):
        if f.stem in files:
            raise GcfError(f"{f}: same video name as {files[f.stem]}; video ids are file stems, rename one")
        files[f.stem] = f
    if not files:
        raise GcfError(f"{folder}: no .npy files found; point at the folder of per-video feature files")
    return dict(sorted(files.items()))


def _npy_shape(f: Path) -> tuple[int, int]:
    """Shape of a per-video feature file, read from its header; refuses anything but a float [n, d] array."""
    try:
        x = np.load(f, mmap_mode="r", allow_pickle=False)
    except ValueError:
        raise GcfError(f"{f}: not a numeric array (ragged or object arrays cannot be imported); save one "
                       f"float array [n_clips, d] per video") from None
    if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 1 or x.dtype.kind != "f":
        raise GcfError(f"{f}: {x.dtype} array of shape {list(x.shape)}; expected a float array [n_clips, d] "
                       f"with at least one clip")
    return x.shape


@store.command()
@click.argument("path", type=click.Path())
@click.option("-o", "--out", required=True, type=click.Path(dir_okay=False), help="Output .npz file.")
def export(path: str, out: str) -> None:
    """Write every ok video to one .npz: features, offsets, video_ids, labels, splits, clip times, metadata."""
    r = open_store(path)
    table = r.load()
    idx = r.entries(table.video_ids)
    start_frame, _ = r.gather("start_frame", idx, (), np.int64)
    times, _ = r.gather("times", idx, (2,), np.float64)
    arrays = {"features": table.features, "offsets": table.offsets, "video_ids": np.array(table.video_ids, dtype=str),
              "labels": table.labels, "splits": np.array(table.splits, dtype=str), "start_frame": start_frame,
              "start_s": times[:, 0], "end_s": times[:, 1], "class_names": np.array(r.meta.class_names, dtype=str),
              "failed_ids": np.array(list(r.failed), dtype=str),
              "failed_errors": np.array(list(r.failed.values()), dtype=str),
              "meta": np.array(json.dumps(summary(r)))}
    logits = [r.logits(v) for v in table.video_ids]
    if logits and all(x is not None and x.shape[1] == logits[0].shape[1] for x in logits):
        arrays["logits"] = np.concatenate(logits)
    with open(out, "wb") as f:
        np.savez(f, **arrays)
    click.echo(f"{out}: {plural(len(table), 'video')}, {plural(len(table.features), 'clip')}"
               + (" with logits" if "logits" in arrays else ""))
