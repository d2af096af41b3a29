"""Stage one: every clip of every video through a 3D-CNN backbone, one pooled descriptor per clip, into the store.

Decoder worker processes (gcf.extract.pool) cut videos into uint8 clips while the main process runs the backbone
on batches that mix clips of many videos; a video is written to the store (one atomic `StoreWriter.add`) as soon
as its last clip has been through the backbone. Re-running the same command skips every video the store already
holds (ok or failed): Ctrl-C loses only the videos in flight, a kill -9 also those finished since the store's
last commit (`commit_seconds`).
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import logging
import math
import os
import signal
import sys
import threading
import time
import warnings
from collections import deque
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import torch

from gcf.errors import GcfError, plural
from gcf.extract import backbone_spec, build_backbone, check_geometry
from gcf.extract.inputs import VideoItem, discover
from gcf.extract.pool import Clips, DecodeConfig, DecoderPool, Done, Failed, Started, Task
from gcf.sampling import check_sampling
from gcf.store import StoreMeta, StoreReader, StoreWriter, VideoInfo, open_store, remove_store

log = logging.getLogger("gcf.extract")

WINDOW = 8              # clips per worker message (one shared-memory slot)
IDLE_S = 0.05           # no clip for this long: run the partial batch rather than let its clips wait


def default_workers() -> int:
    """Decoder processes: the cores this process may use (SLURM/taskset aware) less one for the main, 1 to 16."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 2
    return max(1, min(16, cores - 1))


@dataclass(frozen=True)
class ExtractConfig:
    """Everything `gcf extract` does; None means the backbone's own value (clip_len, frame_step, size) or
    clip_len * frame_step (stride: clips side by side)."""

    inputs: tuple[str, ...]
    backbone: str
    weights: str                                  # checkpoint file, or "random" (seeded by `seed`)
    output: str = "features.zarr"
    root: str | None = None                       # where relative paths in list/split files point
    options: tuple[tuple[str, Any], ...] = ()     # backbone builder options, e.g. (("width", 0.5),)
    norm: str | None = None                       # input convention override (gcf.extract.backbones.norm)
    seed: int = 0
    clip_len: int | None = None
    frame_step: int | None = None                 # frames between a clip's frames
    stride: int | None = None
    size: int | None = None
    batch_size: int = 32
    workers: int = field(default_factory=default_workers)
    device: str = "cpu"
    dtype: str = "float16"                        # descriptors in the store
    logits: bool = False                          # also store the backbone classifier's clip logits
    shard: tuple[int, int] = (0, 1)               # (I, N): this process does the videos of shard I of N
    overwrite: bool = False
    commit_seconds: float = 60.0                  # the store commits finished videos at least this often
    progress: bool = True                         # a progress bar; False: log lines only


@dataclass
class ExtractSummary:
    """What one run did; `failed` holds this run's failures, `earlier_failed` those recorded by earlier runs."""

    store: str
    selected: int = 0
    ok: int = 0
    skipped: int = 0
    clips: int = 0
    seconds: float = 0.0
    failed: dict[str, str] = field(default_factory=dict)
    earlier_failed: dict[str, str] = field(default_factory=dict)
    interrupted: bool = False

    @property
    def clips_per_s(self) -> float:
        return self.clips / self.seconds if self.seconds > 0 else 0.0

    def exit_code(self, strict: bool = False) -> int:
        """0 when every video is ok or recorded as failed; 1 when nothing could be extracted, or on any failure
        with `strict`; 130 when interrupted."""
        if self.interrupted:
            return 130
        failures = len(self.failed) + len(self.earlier_failed)
        if failures and self.ok + self.skipped - len(self.earlier_failed) == 0:
            return 1
        return 1 if strict and failures else 0

    def report(self) -> str:
        """The final summary, several lines."""
        lines = [f"{plural(self.selected, 'video')}: {self.ok} extracted, {len(self.failed)} failed, {self.skipped} skipped "
                 f"(already in the store); {plural(self.clips, 'clip')} in {self.seconds:.1f} s ({self.clips_per_s:.1f} clips/s)",
                 f"store: {self.store}"]
        if self.failed:
            lines.append("failed:")
            lines += [f"  {vid}: {error}" for vid, error in sorted(self.failed.items())]
        if self.earlier_failed:
            lines.append(f"{plural(len(self.earlier_failed), 'more video')} failed in earlier runs "
                         f"(gcf store info {self.store}; --overwrite retries everything)")
        return "\n".join(lines)


def extract(config: ExtractConfig) -> ExtractSummary:
    """Run stage one as configured: discover, shard, skip what the store holds, extract the rest."""
    g = geometry(config, backbone_spec(config.backbone, norm=config.norm, **dict(config.options)))
    check_geometry(config.backbone, g.clip_len, g.size, **dict(config.options))
    slots = max(2, math.ceil(2 * config.batch_size / (config.workers * WINDOW)))
    with DecoderPool(config.workers, DecodeConfig(g.clip_len, g.stride, g.size, g.frame_step, WINDOW, slots)) as pool:
        # the workers start up while the videos are found and the backbone loads
        dataset = discover(list(config.inputs), root=config.root)
        items = select_shard(dataset.items, *config.shard)
        model = load_backbone(config)
        if model.spec.num_classes == 0:
            if config.logits:
                raise GcfError(f"{config.weights}: a backbone-only file (no classifier) gives no clip logits; leave "
                               "out --logits, or give a checkpoint with its classifier")
            log.warning("%s: a backbone-only file (no classifier): descriptors only", config.weights)
        spec = model.spec
        if spec.weights != "random" and (g.clip_len, g.size) != (spec.clip_len, spec.input_size):
            log.warning("note: %s's weights were trained on %d-frame clips of %d px; these clips are %d frames of "
                        "%d px, so the descriptors differ from what the network learnt on (leave out --clip-len / "
                        "--size for its own)", spec.name, spec.clip_len, spec.input_size, g.clip_len, g.size)
        meta = store_meta(model.spec, config, dataset.class_names)
        if config.overwrite:
            remove_store(config.output)
        summary = ExtractSummary(store=config.output, selected=len(items))
        with StoreWriter(config.output, meta, flush_seconds=config.commit_seconds) as writer:
            done = writer.done()
            todo = [item for item in items if item.video_id not in done]
            summary.skipped = len(items) - len(todo)
            if todo:
                _Run(config, model, meta, writer, todo, dataset.class_names, summary).run(pool)
    if summary.skipped:
        store = open_store(config.output)
        summary.earlier_failed = {i.video_id: store.failed[i.video_id] for i in items
                                  if i.video_id in store.failed and i.video_id not in summary.failed}
        _warn_other_files(store, [i for i in items if i.video_id in done])
    return summary


def _warn_other_files(store: StoreReader, skipped: list[VideoItem]) -> None:
    """Warn when a skipped video's id is in the store from another file that still exists: two videos, one id
    (IMG_0001.MOV of two camera folders given one after the other), the second never extracted."""
    clashes = [(item, source) for item in skipped if os.path.isfile(item.path)
               and (source := store.info(item.video_id).source) != item.path and os.path.isfile(source)
               and not os.path.samefile(source, item.path)]
    if clashes:
        item, source = clashes[0]
        log.warning("%d skipped videos are other files than the ones the store holds under their ids (first: %s "
                    "is id '%s', stored from %s) and were not extracted; give the folder holding both (ids are "
                    "paths relative to it) or a list file, or extract into another store", len(clashes), item.path,
                    item.video_id, source)


class Geometry(NamedTuple):
    """How clips are cut: `clip_len` frames `frame_step` apart, one every `stride` frames, `size` px square."""

    clip_len: int
    frame_step: int
    stride: int
    size: int


def geometry(config: ExtractConfig, spec: Any) -> Geometry:
    """The configured values, else the backbone's (stride: clip length x frame step, clips side by side); a
    GcfError for overlapping clips whose frames interleave."""
    clip_len, frame_step = config.clip_len or spec.clip_len, config.frame_step or spec.frame_step
    stride = config.stride or clip_len * frame_step
    check_sampling(clip_len, stride, frame_step)
    return Geometry(clip_len, frame_step, stride, config.size or spec.input_size)


def select_shard(items: list[VideoItem], index: int, count: int) -> list[VideoItem]:
    """The videos of shard `index` of `count`: a stable hash of the video id, so the split does not depend on
    which other videos exist and N processes (or machines) never do the same video."""
    if not 0 <= index < count:
        raise GcfError(f"--shard {index}/{count}: need 0 <= I < N")
    return [item for item in items if _shard_of(item.video_id, count) == index]


def _shard_of(video_id: str, count: int) -> int:
    return int.from_bytes(hashlib.sha256(video_id.encode()).digest()[:8], "big") % count


def load_backbone(config: ExtractConfig) -> torch.nn.Module:
    """The configured backbone in eval mode; random weights are announced loudly (and their seed recorded)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = build_backbone(config.backbone, config.weights, norm=config.norm, seed=config.seed,
                               **dict(config.options))
    for w in caught:
        log.warning("WARNING: %s", w.message)
    return model


def store_meta(spec: Any, config: ExtractConfig, class_names: tuple[str, ...]) -> StoreMeta:
    """Store-wide metadata: what a reader needs to know how the descriptors were made, and to remake them."""
    g = geometry(config, spec)
    extra = {"norm": spec.norm.name, "value_range": spec.norm.value_range, "channel_order": spec.norm.channel_order,
             "num_classes": spec.num_classes, "logits": config.logits, "backbone_options": dict(spec.options)}
    if spec.seed is not None:
        extra["weights_seed"] = spec.seed
    return StoreMeta(backbone=spec.name, weights=spec.weights, clip_len=g.clip_len, stride=g.stride,
                     input_size=g.size, frame_step=g.frame_step,
                     mean=tuple(spec.norm.mean), std=tuple(spec.norm.std), feature_dim=spec.feature_dim,
                     class_names=tuple(class_names), dtype=config.dtype, extra=extra)


class Output(NamedTuple):
    """Backbone results for a batch: the caller's key of each row, descriptors [n, d], logits [n, K] or None."""

    keys: list
    descriptors: np.ndarray
    logits: np.ndarray | None


class BackboneRunner:
    """Batches uint8 clips, normalises them on the device and runs the backbone: descriptors (and logits).

    3D convolutions and batches are channels_last_3d on every device. On CUDA also: pinned batch buffers, non-blocking
    copies, bf16 (else fp16) autocast, and one batch kept in flight so the CPU assembles the next batch while the
    GPU runs this one. A batch that runs out of memory is run again in halves (a Video Swin at 32x224 needs
    ~0.65 GB per clip), down to one clip at a time, and the run goes on at that size.
    """

    def __init__(self, model: torch.nn.Module, batch_size: int, clip_len: int, size: int,
                 device: str | torch.device = "cpu", logits: bool = False):
        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda"
        self.batch_size, self.logits = batch_size, logits
        self.chunk = batch_size                  # clips per backbone call: halved while a batch runs out of memory
        self.shape = (clip_len, size, size, 3)
        # channels-last on CPU too: oneDNN's 3D convolutions run 2x faster than on NCDHW tensors (bench/README.md)
        self.model = model.eval().to(self.device)
        for m in self.model.modules():           # 5-D weights only: transformers' 2-D patch convs stay as they are
            if isinstance(m, torch.nn.Conv3d):
                m.to(memory_format=torch.channels_last_3d)
        self.amp = contextlib.nullcontext()
        if self.cuda:
            torch.backends.cudnn.benchmark = True
            amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
            self.amp = torch.autocast("cuda", dtype=amp_dtype)
        self._spare: list[torch.Tensor] = []
        self._buf: torch.Tensor | None = None   # the batch being filled
        self._keys: list = []
        self._ready: deque = deque()             # full batches: (buffer, keys)
        self._inflight: deque = deque()          # launched: (cuda event | None, buffer, keys, descriptors, logits)

    def add(self, frames: np.ndarray, key: Any) -> None:
        """Copy clips uint8 [n, T, S, S, 3] of one video (`key`) into the batch buffers; `run` computes them."""
        i = 0
        while i < len(frames):
            if self._buf is None:
                self._buf = self._spare.pop() if self._spare else torch.empty(
                    (self.batch_size, *self.shape), dtype=torch.uint8, pin_memory=self.cuda)
            n = len(self._keys)
            k = min(self.batch_size - n, len(frames) - i)
            self._buf[n:n + k].numpy()[...] = frames[i:i + k]
            self._keys += [key] * k
            i += k
            if len(self._keys) == self.batch_size:
                self._ready.append((self._buf, self._keys))
                self._buf, self._keys = None, []

    def run(self, partial: bool = False) -> list[Output]:
        """Run every full batch (and with `partial` the one being filled, and wait for all); return finished ones."""
        if partial and self._keys:
            self._ready.append((self._buf, self._keys))
            self._buf, self._keys = None, []
        out = []
        while self._ready:
            self._launch(*self._ready.popleft())
            while len(self._inflight) > (0 if partial or not self.cuda else 1):
                out.append(self._collect())
        while partial and self._inflight:
            out.append(self._collect())
        return out

    def _launch(self, buf: torch.Tensor, keys: list) -> None:
        n = len(keys)
        if self.cuda:   # a partial batch runs padded to a power of two: cuDNN autotunes a few shapes, not B
            n = min(self.batch_size, 1 << (n - 1).bit_length())
        x = buf[:n]     # rows past len(keys) hold stale clips; their results are dropped in _collect
        with torch.inference_mode():
            if self.cuda:
                x = x.to(self.device, non_blocking=True)
            v, z = self._forward(x)
            event = None
            if self.cuda:
                v, z = _to_host(v), (_to_host(z) if z is not None else None)
                event = torch.cuda.Event()
                event.record(torch.cuda.current_stream(self.device))   # the stream of cuda:N, not of cuda:0
        self._inflight.append((event, buf, keys, v, z))

    def _forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Descriptors (and logits) of uint8 clips x, `self.chunk` clips at a time: when a batch does not fit in
        the device's memory, the chunk is halved (for the rest of the run) and the batch run again."""
        while True:
            try:
                parts = [self._chunk(x[i:i + self.chunk]) for i in range(0, len(x), self.chunk)]
                break
            except RuntimeError as e:                  # torch.OutOfMemoryError is one, as CPU allocation failures
                if not _out_of_memory(e):
                    raise
                if self.cuda:
                    torch.cuda.empty_cache()
                if self.chunk == 1:
                    said = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
                    raise GcfError(f"{self.model.spec.name}: one clip ({self.shape[0]} frames of {self.shape[1]} px) "
                                   f"does not fit in the memory of {self.device} ({said}); free memory there, or use "
                                   "another device (or a smaller --size or --clip-len, where the backbone takes "
                                   "them)") from None
                self.chunk //= 2
                log.warning("out of memory on %s: running the backbone %d clips at a time (--batch-size %d "
                            "avoids the retries)", self.device, self.chunk, self.chunk)
        v = torch.cat([p[0] for p in parts])
        return v, (torch.cat([p[1] for p in parts]) if self.logits else None)

    def _chunk(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        x = self.model.spec.normalize(x).contiguous(memory_format=torch.channels_last_3d)   # already is: no copy
        with self.amp:
            v = self.model.descriptor(x)
            z = self.model.classify(v) if self.logits else None
        return v.float(), (z.float() if z is not None else None)

    def _collect(self) -> Output:
        event, buf, keys, v, z = self._inflight.popleft()
        if event is not None:
            event.synchronize()
        self._spare.append(buf)
        n = len(keys)
        return Output(keys, v[:n].numpy(), z[:n].numpy() if z is not None else None)


ALLOCATOR_FAILURES = ("CUDA out of memory", "CUDA error: out of memory", "can't allocate memory",
                      "MPS backend out of memory", "HIP out of memory", "CUDNN_STATUS_NOT_ENOUGH_MEMORY",
                      "CUBLAS_STATUS_ALLOC_FAILED")


def _out_of_memory(error: RuntimeError) -> bool:
    """Whether a RuntimeError is an allocation failure (torch's OutOfMemoryError, or an allocator's message)."""
    return isinstance(error, torch.OutOfMemoryError) or any(m in str(error) for m in ALLOCATOR_FAILURES)


def _to_host(t: torch.Tensor) -> torch.Tensor:
    """Start a copy of a device tensor into pinned host memory (complete once the stream reaches it)."""
    host = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
    host.copy_(t, non_blocking=True)
    return host


@dataclass
class _Video:
    """A video being extracted: what the decoder said about it and the clip results gathered so far."""

    item: VideoItem
    meta: Any = None
    start_frames: list = field(default_factory=list)
    times: list = field(default_factory=list)
    descriptors: list = field(default_factory=list)
    logits: list = field(default_factory=list)
    decoded: bool = False

    @property
    def complete(self) -> bool:
        return self.decoded and sum(len(d) for d in self.descriptors) == len(self.start_frames)


class _Run:
    """One extraction run over `todo`: the decode -> backbone -> store loop, progress and stop handling."""

    def __init__(self, config: ExtractConfig, model: torch.nn.Module, meta: StoreMeta, writer: StoreWriter,
                 todo: list[VideoItem], class_names: tuple[str, ...], summary: ExtractSummary):
        self.config, self.meta, self.writer, self.todo, self.summary = config, meta, writer, todo, summary
        self.class_names = class_names
        self.runner = BackboneRunner(model, config.batch_size, meta.clip_len, meta.input_size, config.device,
                                     config.logits)
        self.videos: dict[int, _Video] = {}
        self.progress = _Progress(len(todo), config.progress)

    def run(self, pool: DecoderPool) -> None:
        """Decode, batch, run and write until every video is done or a stop is asked for."""
        c = self.config
        log.info("extracting %d videos (%d already in the store) with %d decoder workers on %s",
                 len(self.todo), self.summary.skipped, c.workers, c.device)
        start = time.perf_counter()
        with _StopRequest() as stop, self.progress:
            pool.submit(Task(i, item.path) for i, item in enumerate(self.todo))
            try:
                while pool.busy and not (stop.requested or pool.stopped):
                    got = self._take(pool.events(IDLE_S))
                    pool.release()                   # slots back to the workers before the backbone runs
                    self._finish(self.runner.run(partial=not got))
                if not (stop.requested or pool.stopped):
                    self._finish(self.runner.run(partial=True))
            finally:
                self.summary.seconds = time.perf_counter() - start
            if stop.requested or pool.stopped:
                self.summary.interrupted = True
                pool.close(graceful=False)

    def _take(self, events: list) -> bool:
        """Apply decoder events: clips go into the backbone's batch; failures go to the store. True if any."""
        for ev in events:
            video = self.videos.get(ev.key)
            if isinstance(ev, Started):
                self.videos[ev.key] = _Video(self.todo[ev.key], ev.meta)
            elif isinstance(ev, Clips):
                if video is not None:
                    video.start_frames += ev.start_frames
                    video.times += ev.times
                    self.runner.add(ev.frames, ev.key)
            elif isinstance(ev, Done) and not video.start_frames:
                self._fail(ev.key, f"{video.item.path}: the decoder gave no clips")
            elif isinstance(ev, Done):
                video.decoded = True
                self._write_if_complete(ev.key)
            elif isinstance(ev, Failed):
                self._fail(ev.key, ev.error)
        return bool(events)

    def _finish(self, outputs: list[Output]) -> None:
        """Hand backbone results to their videos; write every video that is now complete."""
        for out in outputs:
            row = 0
            for key, group in itertools.groupby(out.keys):
                n = len(list(group))
                video = self.videos.get(key)
                if video is not None:            # None: the video failed meanwhile, its clips are dropped
                    video.descriptors.append(out.descriptors[row:row + n])
                    if out.logits is not None:
                        video.logits.append(out.logits[row:row + n])
                    self._write_if_complete(key)
                row += n

    def _write_if_complete(self, key: int) -> None:
        video = self.videos[key]
        if not video.complete:
            return
        n = len(video.start_frames)
        try:
            self.writer.add(self._info(video.item, video.meta), np.concatenate(video.descriptors),
                            np.asarray(video.start_frames, np.int64), np.asarray(video.times, np.float64).reshape(n, 2),
                            np.concatenate(video.logits) if video.logits else None)
        except GcfError as e:                    # e.g. NaN/Inf descriptors: this video fails, the run goes on
            self._fail(key, str(e))
            return
        del self.videos[key]
        self.summary.ok += 1
        self.summary.clips += n
        self.progress.video(n)

    def _fail(self, key: int, error: str) -> None:
        video = self.videos.pop(key, None)
        item = self.todo[key]
        self.writer.add_failure(self._info(item, video.meta if video else None), error)
        self.summary.failed[item.video_id] = error
        log.warning("failed: %s: %s", item.video_id, error)
        self.progress.video(0, failed=True)

    def _info(self, item: VideoItem, meta: Any) -> VideoInfo:
        label = -1 if item.label is None else self.class_names.index(item.label)
        n, fps, duration = (meta.n_frames, meta.fps, meta.duration) if meta is not None else (0, 0.0, 0.0)
        return VideoInfo(item.video_id, item.path, label, item.split, n, fps, duration)


class _Progress:
    """A tqdm bar (videos, clips/s, failures, ETA) on a terminal; else (or with `bar=False`, i.e. --quiet) a log
    line every 30 seconds, which is what a batch job's log file wants."""

    def __init__(self, total: int, bar: bool):
        self.total, self.bar = total, bar and sys.stderr.isatty()
        self.videos = self.clips = self.failed = 0
        self.start = self.last_log = time.perf_counter()
        self._tqdm = None

    def __enter__(self) -> _Progress:
        if self.bar:
            from tqdm import tqdm
            self._tqdm = tqdm(total=self.total, unit="video", dynamic_ncols=True, smoothing=0.05)
        return self

    def __exit__(self, *exc) -> None:
        if self._tqdm is not None:
            self._tqdm.close()

    def video(self, clips: int, failed: bool = False) -> None:
        self.videos += 1
        self.clips += clips
        self.failed += failed
        now = time.perf_counter()
        rate = self.clips / max(now - self.start, 1e-9)
        if self._tqdm is not None:
            self._tqdm.set_postfix_str(f"{rate:.1f} clips/s, {self.failed} failed", refresh=False)
            self._tqdm.update(1)
        elif now - self.last_log >= 30 or self.videos == self.total:
            self.last_log = now
            eta = (now - self.start) / self.videos * (self.total - self.videos)
            log.info("%d/%d videos, %d clips, %.1f clips/s, %d failed, ETA %s", self.videos, self.total,
                     self.clips, rate, self.failed, time.strftime("%H:%M:%S", time.gmtime(eta)))


class _StopRequest:
    """Ctrl-C or SIGTERM asks the run to stop after the current batch; a second one stops it at once."""

    def __enter__(self) -> _StopRequest:
        self.requested = False
        self._old = {}
        if threading.current_thread() is threading.main_thread():
            self._old = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._old.items():
            signal.signal(s, handler)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        log.warning("stopping after the current batch (%s again to stop at once)", signal.Signals(signum).name)
