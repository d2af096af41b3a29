"""Synthetic action videos: real mp4 files whose class shows only in a few clips, for tests, demos and benchmarks.

Each video is a dark background with a drifting grey grating and small grey squares bouncing around (distractor
motion, the same for every class). During one random sub-interval a large object appears and moves through the
centre of the frame: its colour (hue), shape and motion direction depend on the class. A video-level model must
find those clips; even a 3D-CNN with random weights separates the classes there, because they differ in colour.

Layout written by `make_dataset` / `gcf synth OUT`:

    OUT/class_0/vid_000.mp4 ...        one folder per class
    OUT/labels.csv                     video,label,split   (video = path relative to OUT without extension)
    OUT/segments.csv                   video,start,end      (seconds of the class-specific action)
"""

from __future__ import annotations

import colorsys
import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import av
import click
import numpy as np

from gcf.errors import GcfError, plural


@dataclass(frozen=True)
class SynthSpec:
    """Frame size, rate and length range of synthetic videos."""

    width: int = 128
    height: int = 96
    fps: int = 25
    clip_len: int = 16
    min_clips: int = 4          # video length: uniform in [min_clips, max_clips] clips plus 0..clip_len-1 frames
    max_clips: int = 12
    codec: str = "auto"         # "auto" (libx264 if PyAV has it, else mpeg4), "libx264" or "mpeg4"


@dataclass(frozen=True)
class VideoPlan:
    """Everything that defines one synthetic video; its frames are a pure function of this."""

    n_frames: int
    label: int | None           # class index, None for distractors only
    classes: int
    action: tuple[int, int]     # [start, end) frame interval of the class-specific motion
    seed: int


def pick_codec(codec: str = "auto") -> str:
    """The encoder to use: libx264 when PyAV's FFmpeg has it, else mpeg4 (always built in)."""
    if codec != "auto":
        return codec
    return "libx264" if "libx264" in av.codecs_available else "mpeg4"


def class_style(label: int, classes: int) -> tuple[np.ndarray, int, tuple[float, float]]:
    """Colour (RGB float), shape id and unit motion direction of class `label` out of `classes`."""
    rgb = np.array(colorsys.hsv_to_rgb(label / classes, 0.9, 1.0)) * 255.0
    angle = 2.0 * math.pi * label / classes + math.pi / 4
    return rgb, label % 4, (math.cos(angle), math.sin(angle))


def shape_mask(shape: int, size: int) -> np.ndarray:
    """Boolean [size, size] mask: 0 square, 1 disc, 2 ring, 3 cross."""
    r = (np.arange(size) - (size - 1) / 2) / (size / 2)
    y, x = np.meshgrid(r, r, indexing="ij")
    d = np.hypot(x, y)
    if shape == 0:
        return np.ones((size, size), bool)
    if shape == 1:
        return d <= 1.0
    if shape == 2:
        return (d <= 1.0) & (d >= 0.55)
    return (np.abs(x) <= 0.3) | (np.abs(y) <= 0.3)


def render(plan: VideoPlan, width: int, height: int) -> Iterator[np.ndarray]:
    """Yield the plan's frames as uint8 [height, width, 3] RGB."""
    rng = np.random.default_rng(plan.seed)
    short = min(width, height)
    # background: dark low-saturation base colour plus a drifting grey grating
    base = rng.uniform(30, 70) + rng.uniform(-8, 8, size=3)
    theta = rng.uniform(0, 2 * math.pi)
    freq = rng.uniform(1 / 32, 1 / 16)
    speed = rng.uniform(0.3, 1.0)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    phase0 = (xs * math.cos(theta) + ys * math.sin(theta)) * freq
    # distractors: small grey squares bouncing with constant speed
    n_dis = int(rng.integers(3, 6))
    dsize = rng.integers(max(2, short // 16), max(3, short // 8), size=n_dis)
    dpos = rng.uniform(0, 1, size=(n_dis, 2)) * [width, height]
    dvel = rng.uniform(-2.5, 2.5, size=(n_dis, 2))
    dgrey = rng.uniform(110, 220, size=n_dis)
    # the class object: centred, moving from -amp to +amp along the class direction during the action
    if plan.label is not None:
        rgb, shape, (ux, uy) = class_style(plan.label, plan.classes)
        rgb = np.clip(rgb * rng.uniform(0.9, 1.0), 0, 255)
        size = int(round(0.45 * short * rng.uniform(0.9, 1.1)))
        mask = shape_mask(shape, size)
        cx, cy = width / 2 + rng.uniform(-0.03, 0.03) * short, height / 2 + rng.uniform(-0.03, 0.03) * short
        amp = 0.2 * short
    a0, a1 = plan.action
    for t in range(plan.n_frames):
        grating = 14.0 * np.sin(2 * math.pi * (phase0 - speed * freq * t))
        frame = np.clip(base + grating[..., None], 0, 255)
        for i in range(n_dis):
            p = (dpos[i] + dvel[i] * t) % (2 * np.array([width, height]))           # bounce = fold the path
            p = np.where(p > [width, height], 2 * np.array([width, height]) - p, p)
            x0, y0, s = int(p[0] - dsize[i] / 2), int(p[1] - dsize[i] / 2), int(dsize[i])
            frame[max(y0, 0):max(y0 + s, 0), max(x0, 0):max(x0 + s, 0)] = dgrey[i]
        if plan.label is not None and a0 <= t < a1:
            f = (t - a0) / max(a1 - a0 - 1, 1) * 2 - 1                               # -1 .. 1 over the action
            x0 = int(round(cx + f * amp * ux - size / 2))
            y0 = int(round(cy + f * amp * uy - size / 2))
            _paste(frame, mask, rgb, x0, y0)
        yield frame.astype(np.uint8)


def _paste(frame: np.ndarray, mask: np.ndarray, rgb: np.ndarray, x0: int, y0: int) -> None:
    """Paint `rgb` where `mask` is true, top-left corner at (x0, y0), clipped to the frame."""
    h, w = frame.shape[:2]
    s = mask.shape[0]
    fy0, fx0, fy1, fx1 = max(y0, 0), max(x0, 0), min(y0 + s, h), min(x0 + s, w)
    if fy0 >= fy1 or fx0 >= fx1:
        return
    m = mask[fy0 - y0:fy1 - y0, fx0 - x0:fx1 - x0]
    frame[fy0:fy1, fx0:fx1][m] = rgb


def write_video(path: str | Path, frames: Iterable[np.ndarray], fps: int, codec: str = "auto",
                faststart: bool = False) -> str:
    """Encode uint8 RGB frames to mp4 (yuv420p; single-threaded, so the bytes are reproducible); returns the codec."""
    codec = pick_codec(codec)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    container = av.open(str(path), "w", options={"movflags": "+faststart"} if faststart else {})
    try:
        stream = None
        for frame in frames:
            if stream is None:
                stream = container.add_stream(codec, rate=fps)
                stream.height, stream.width = frame.shape[:2]
                stream.pix_fmt = "yuv420p"
                stream.codec_context.thread_count = 1
                if codec == "libx264":
                    stream.options = {"preset": "veryfast", "crf": "20"}
                else:
                    stream.codec_context.bit_rate = 8 * frame.shape[0] * frame.shape[1] * fps // 20
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        if stream is None:
            raise GcfError(f"{path}: no frames to write")
        for packet in stream.encode():
            container.mux(packet)
    finally:
        container.close()
    return codec


def make_video(path: str | Path, n_frames: int, label: int | None = None, classes: int = 1,
               action: tuple[int, int] | None = None, seed: int = 0, spec: SynthSpec = SynthSpec(),
               faststart: bool = False) -> Path:
    """Write one synthetic video of `n_frames` frames; class `label` moves during `action` (default: no action)."""
    if spec.width % 2 or spec.height % 2:
        raise GcfError(f"synth size {spec.width}x{spec.height}: width and height must be even (yuv420p)")
    plan = VideoPlan(n_frames, label, classes, action or (0, 0), seed)
    write_video(path, render(plan, spec.width, spec.height), spec.fps, spec.codec, faststart)
    return Path(path)


def plan_video(label: int, classes: int, seed: int, spec: SynthSpec) -> VideoPlan:
    """Random length and action interval (one to three clips, at most half the video) of one dataset video."""
    rng = np.random.default_rng(seed)
    n_clips = int(rng.integers(spec.min_clips, spec.max_clips + 1))
    n_frames = n_clips * spec.clip_len + int(rng.integers(0, spec.clip_len))
    longest = max(min(3 * spec.clip_len, n_frames // 2), 1)
    length = int(rng.integers(min(spec.clip_len, longest), longest + 1))
    start = int(rng.integers(0, n_frames - length + 1))
    return VideoPlan(n_frames, label, classes, (start, start + length), seed)


def split_of(index: int, per_class: int, seed: int, label: int) -> str:
    """Stratified 60/20/20 train/val/test: a seeded permutation of each class's videos."""
    order = np.random.default_rng([seed, label, 1]).permutation(per_class)
    rank = int(np.flatnonzero(order == index)[0])
    n_val = n_test = int(round(0.2 * per_class))
    if rank < n_test:
        return "test"
    return "val" if rank < n_test + n_val else "train"


def make_dataset(out: str | Path, classes: int, per_class: int, seed: int = 0,
                 spec: SynthSpec = SynthSpec()) -> list[Path]:
    """Write `classes` x `per_class` videos under OUT/<class>/, plus labels.csv and segments.csv; returns the paths."""
    if classes < 1 or per_class < 1:
        raise GcfError(f"synth: --classes ({classes}) and --per-class ({per_class}) must be at least 1")
    if not 1 <= spec.min_clips <= spec.max_clips:
        raise GcfError(f"synth: need 1 <= min clips ({spec.min_clips}) <= max clips ({spec.max_clips})")
    out = Path(out)
    cw, vw = len(str(classes - 1)), max(3, len(str(per_class - 1)))
    paths, labels, segments = [], [], []
    for label in range(classes):
        name = f"class_{label:0{cw}d}"
        for i in range(per_class):
            video = f"{name}/vid_{i:0{vw}d}"
            plan_seed = int(np.random.SeedSequence([seed, label, i]).generate_state(1)[0])
            plan = plan_video(label, classes, plan_seed, spec)
            paths.append(make_video(out / f"{video}.mp4", plan.n_frames, label, classes, plan.action, plan.seed, spec))
            labels.append((video, name, split_of(i, per_class, seed, label)))
            segments.append((video, round(plan.action[0] / spec.fps, 6), round(plan.action[1] / spec.fps, 6)))
    _write_csv(out / "labels.csv", ("video", "label", "split"), labels)
    _write_csv(out / "segments.csv", ("video", "start", "end"), segments)
    return paths


def _write_csv(path: Path, header: tuple[str, ...], rows: list[tuple]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


@click.command()
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--classes", default=5, show_default=True, help="Number of classes.")
@click.option("--per-class", default=6, show_default=True, help="Videos per class.")
@click.option("--seed", default=0, show_default=True, help="Same seed, same videos.")
@click.option("--width", default=SynthSpec.width, show_default=True)
@click.option("--height", default=SynthSpec.height, show_default=True)
@click.option("--fps", default=SynthSpec.fps, show_default=True)
@click.option("--min-clips", default=SynthSpec.min_clips, show_default=True, help="Shortest video, in 16-frame clips.")
@click.option("--max-clips", default=SynthSpec.max_clips, show_default=True, help="Longest video, in 16-frame clips.")
@click.option("--codec", type=click.Choice(["auto", "libx264", "mpeg4"]), default="auto", show_default=True)
def synth(out: str, classes: int, per_class: int, seed: int, width: int, height: int, fps: int,
          min_clips: int, max_clips: int, codec: str) -> None:
    """Write a synthetic action dataset: OUT/<class>/<video>.mp4, OUT/labels.csv and OUT/segments.csv."""
    spec = SynthSpec(width=width, height=height, fps=fps, min_clips=min_clips, max_clips=max_clips, codec=codec)
    paths = make_dataset(out, classes, per_class, seed, spec)
    click.echo(f"wrote {plural(len(paths), 'video')} ({pick_codec(codec)}, {width}x{height}, {fps} fps) "
               f"and labels.csv, segments.csv to {out}")
