"""Decode a video into fixed-length clips: short-side resize inside the decoder, centre crop, loop padding.

decord 0.6.0 is the decoder: it resizes in FFmpeg's scaler before any full-size RGB frame exists and is fast. Its
CPU reader has one flaw that matters for long videos: while its decoder thread works, the reading loop keeps
pushing packets, so it reads (and keeps) every packet up to the end of the file ahead of decoding (measured:
a 166 MB file is fully in RAM after the first 128 frames; dmlc/decord issues 157, 197, 208). Its memory is the
compressed file plus ~1.5 KB per packet. So files whose read-ahead would pass `readahead_limit` are decoded
sequentially with PyAV (same FFmpeg, same in-scaler resize, one frame at a time), and peak memory does not
depend on the length of the video. Either way clips come window by window (`window` frames at a time).

Damaged frame data is concealed: where decord gives up, PyAV decodes the file, skipping the packets its decoder
rejects and repeating the frame before each one lost (`_StreamReader`). Every failure a broken file can cause at
the Python level surfaces as `VideoError`, whose message names the file and the decoder's reason. A `VideoError`
can also come in the middle of `iter_clips` (damage after the first frames): callers discard the clips they
already got for that video.
"""

from __future__ import annotations

import heapq
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import av
import decord
import numpy as np
from av.video.reformatter import VideoReformatter

from gcf.errors import GcfError
from gcf.sampling import check_sampling

# what decord, PyAV and the numpy conversion raise on broken files; DECORDError is not a RuntimeError
DECODER_ERRORS = (decord.DECORDError, av.FFmpegError, RuntimeError, OSError, ValueError, IndexError, AssertionError)
PACKET_OVERHEAD = 2048          # bytes decord keeps per read-ahead packet besides its data (measured ~1.5 KB)
REORDER = 8                     # frames the PyAV reader holds to put late ones (after damage) back in order
MAX_MISSING = 0.25              # a video with more of its frames undecodable fails, rather than hold frames long


class VideoError(GcfError):
    """A video that cannot be decoded; the message names the file and the decoder's reason."""


@dataclass(frozen=True)
class VideoMeta:
    """What the decoder reports about a video; duration = n_frames / fps."""

    n_frames: int
    fps: float
    duration: float
    width: int
    height: int


@dataclass(frozen=True)
class Clip:
    """One clip: frames uint8 [T, size, size, 3] RGB starting at `start_frame`, spanning [start_s, end_s)."""

    start_frame: int
    start_s: float
    end_s: float
    frames: np.ndarray


def probe(path: str | Path) -> VideoMeta:
    """Frame count, frame rate, duration and display size of a video; raises VideoError naming the file."""
    return index_video(path).meta


@dataclass(frozen=True)
class VideoIndex:
    """What PyAV's demuxer says of the first video stream, without decoding it (bar the first frame)."""

    meta: VideoMeta
    times: np.ndarray      # [n_frames] presentation time of each frame, seconds from the first
    pts: np.ndarray | None  # [n_frames] sorted packet pts (stream time base): frame positions; None without pts
    rotation: int          # quarter turns counter-clockwise that display the decoded frames (display matrix)
    seekable: bool         # a container decord seeks in frame-accurately (mp4/mov, matroska/webm, avi)


SEEKABLE = ("mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm", "avi")   # FFmpeg demuxers with a frame index


def index_video(path: str | Path) -> VideoIndex:
    """The frames a decoder outputs, from the packets of the first video stream: those an edit list discards do
    not count; times from their sorted pts (frame count / average rate when the stream has none). One pass over
    the file's packets: give it to iter_clips rather than indexing a video twice."""
    path = str(path)
    _check_file(path)
    try:
        with _open_av(path) as container:
            if not container.streams.video:
                raise _truncated(path) or VideoError(f"{path}: no video stream (audio only?); give a video file")
            stream = container.streams.video[0]
            single = len(container.streams.video) == 1            # decord may pick another video stream
            packets, pts, first = 0, [], None                      # counted, not kept: memory stays flat
            for packet in container.demux(stream):
                if packet.size:
                    packets += 1
                    if not packet.is_discard:
                        pts.append(packet.pts)
                if first is None:                                  # the stream decodes: its first frame
                    first = next(iter(_decoded([packet])), None)
            listed, rate = stream.frames, float(stream.average_rate or stream.guessed_rate or 0)
            fmt, base = container.format.name, float(stream.time_base or 0)
        if listed > packets:                                       # mp4/mov/avi headers list every frame
            raise VideoError(f"{path}: truncated or damaged: its header lists {listed} frames, the file holds "
                             f"{packets}; copy or download it again")
        if first is None:
            raise _truncated(path) or VideoError(f"{path}: no frame decodes; the file is damaged")
    except DECODER_ERRORS as e:
        raise _truncated(path) or VideoError(f"{path}: cannot open as video ({_clean(e)})") from None
    n = len(pts)
    if n == 0 or not rate > 0 or not np.isfinite(rate):
        raise VideoError(f"{path}: decoder reports {n} frames at {rate} fps; the file is damaged")
    pts = _ordered_pts(pts, base)
    if pts is None:                                     # no usable pts: frames in decoding order at the average rate
        times = np.arange(n) / rate
    else:
        times = (pts - pts[0]) * base
    step = float(np.median(np.diff(times))) if n > 1 and times[-1] > 0 else 1.0 / rate
    duration = float(times[-1]) + (step if step > 0 else 1.0 / rate)
    rotation = round((first.rotation or 0) / 90) % 4
    width, height = (first.height, first.width) if rotation % 2 else (first.width, first.height)
    meta = VideoMeta(n, rate, duration, int(width), int(height))
    return VideoIndex(meta, times, pts, rotation, fmt in SEEKABLE and single)


def _ordered_pts(pts: list[int | None], base: float, reorder: int = 16) -> np.ndarray | None:
    """The packets' pts sorted, when they place frames: every packet has one, no two are equal, and none arrives
    more than `reorder` places after its place in time (B-frame reordering is bounded by the decoder's 16-frame
    buffer, however long the frames last: a gap of seconds in a variable-rate recording is no restart; more is a
    timestamp restart, as in concatenated MPEG-TS segments). Else None."""
    if not base or None in pts:
        return None
    order = np.asarray(pts, np.int64)
    place = np.empty(len(order), np.int64)
    place[np.argsort(order, kind="stable")] = np.arange(len(order))
    if (np.arange(len(order)) - place).max() > reorder:
        return None
    pts = np.sort(order)
    return pts if (np.diff(pts) > 0).all() else None


def _truncated(path: str) -> VideoError | None:
    """The error for an ISO media file (ftyp first) whose moov box, the index that cameras and FFmpeg write last,
    is missing or runs past the end of the file (a copy or recording cut off); None for any other file."""
    try:
        with open(path, "rb") as f:
            end, at, kinds = os.fstat(f.fileno()).st_size, 0, []
            while at + 8 <= end:
                f.seek(at)
                head = f.read(16)
                size, kind = int.from_bytes(head[:4], "big"), head[4:8]
                if size == 1 and len(head) == 16:                # a 64-bit size follows the type
                    size = int.from_bytes(head[8:16], "big")
                if size < 8:                                     # 0: the box runs to the end of the file
                    break
                kinds.append(kind)
                at += size
    except OSError:                                              # unreadable: the decoder's error says why
        return None
    if kinds[:1] == [b"ftyp"] and (b"moov" not in kinds or (kinds[-1] == b"moov" and at > end)):
        return VideoError(f"{path}: truncated: its index (the MP4/MOV moov box, written last) is missing or cut "
                          "off; copy or download it again")
    return None


def _open_av(path: str) -> av.container.InputContainer:
    """PyAV's container; metadata tags that are not UTF-8 (Latin-1 titles of older tools) do not stop it."""
    return av.open(path, metadata_errors="replace")


def _decoded(packets: Iterable[av.Packet]) -> Iterator[av.VideoFrame]:
    """The packets' frames as FFmpeg's own player decodes them: a packet the decoder rejects (damaged data) is
    skipped and decoding goes on (the reader conceals the frames it cost)."""
    for packet in packets:
        try:
            yield from packet.decode()
        except av.InvalidDataError:
            continue


def clip_starts(n_frames: int, clip_len: int = 16, stride: int = 16, frame_step: int = 1) -> range:
    """Start frames of every clip: i * stride while the clip's clip_len * frame_step frames fit, and one (loop
    padded) clip for short videos."""
    return range(0, max(n_frames - clip_len * frame_step, 0) + 1, stride)


def resized_size(width: int, height: int, size: int) -> tuple[int, int]:
    """(width, height) after resizing the short side to `size` and keeping the aspect ratio."""
    if width >= height:
        return max(size, round(width * size / height)), size
    return size, max(size, round(height * size / width))


def iter_clips(path: str | Path, clip_len: int = 16, stride: int | None = None, size: int = 112, window: int = 128,
               threads: int = 1, readahead_limit: int = 64 << 20, index: VideoIndex | None = None,
               frame_step: int = 1) -> Iterator[Clip]:
    """Every clip of a video, short side resized (by the decoder) to `size` and centre cropped to size x size.
    A clip is `clip_len` frames, `frame_step` apart (PySlowFast's sampling rate, MMAction2's frame_interval),
    starting every `stride` frames (default clip_len * frame_step: clips side by side).

    `window`: the most frames decoded per step (memory bound; proportionally fewer, down to one clip, for frames
    wider than 16:9, whose resized size grows with their aspect ratio: a 32:9 panorama at 112 px is 398 px wide). `threads`: decoder threads (0 = auto; 1 by default because
    the pipeline runs one decoder per worker process). `readahead_limit`: bytes decord's read-ahead may take
    (file size + 2 KB per frame) before PyAV's sequential decoder is used instead. `index`: the video's
    index_video(), when the caller already has it.
    """
    path = str(path)
    stride = stride or clip_len * frame_step
    check_sampling(clip_len, stride, frame_step)
    index = index or index_video(path)
    meta = index.meta
    width, height = resized_size(meta.width, meta.height, size)
    try:
        readahead = os.path.getsize(path) + PACKET_OVERHEAD * meta.n_frames
    except OSError as e:                                  # vanished since probe
        raise VideoError(f"{path}: {e.strerror}") from None
    reader = None
    if index.seekable and index.rotation == 0 and readahead <= readahead_limit:
        try:
            reader = _DecordReader(path, width, height, threads)
        except VideoError:                                # e.g. a codec decord's FFmpeg lacks (AV1): PyAV has it
            reader = None
        if reader is not None and len(reader.reader) != meta.n_frames:   # decord counts edit-list frames
            reader = None
    reader = reader or _StreamReader(path, width, height, threads, index)
    crop = ((height - size) // 2, (width - size) // 2, size)
    starts = list(clip_starts(meta.n_frames, clip_len, stride, frame_step))
    frames = min(window, window * 16 * size * size // (9 * width * height))   # fewer of frames wider than 16:9
    per_window = max(1, frames // max(stride, clip_len * frame_step))
    for i in range(0, len(starts), per_window):
        try:
            clips = _window(reader, index, starts[i:i + per_window], clip_len, frame_step, crop)
        except VideoError:
            if not isinstance(reader, _DecordReader):
                raise
            reader = _StreamReader(path, width, height, threads, index)   # decord gives up on damage FFmpeg hides
            clips = _window(reader, index, starts[i:i + per_window], clip_len, frame_step, crop)
        yield from clips
        del clips                                          # not held while the next window decodes


def _window(reader: _DecordReader | _StreamReader, index: VideoIndex, starts: list[int], clip_len: int,
            frame_step: int, crop: tuple[int, int, int]) -> list[Clip]:
    """The clips starting at `starts`, from one decoder call; the decoded window is freed on return. A clip
    spans clip_len * frame_step frames: from its first frame's time to the next such span's (the video's end)."""
    top, left, size = crop
    meta, times = index.meta, index.times
    span = clip_len * frame_step
    wanted = (np.asarray(starts)[:, None] + np.arange(clip_len) * frame_step) % meta.n_frames   # loop padding
    unique = np.unique(wanted)
    frames = reader.read(unique)[:, top:top + size, left:left + size]
    end = lambda i: float(times[i]) if i < meta.n_frames else meta.duration   # noqa: E731
    return [Clip(start, float(times[start]), end(start + span), frames[idx])
            for start, idx in zip(starts, np.searchsorted(unique, wanted))]


class _DecordReader:
    """Frames by index through decord, resized to width x height by its scaler."""

    def __init__(self, path: str, width: int, height: int, threads: int):
        self.path, self.reader = path, _open(path, width, height, threads)

    def read(self, indices: np.ndarray) -> np.ndarray:
        """Frames at sorted `indices` as uint8 [N, H, W, 3]; a decoder error or a short read is a VideoError."""
        try:
            frames = self.reader.get_batch(indices.tolist()).asnumpy()
        except DECODER_ERRORS as e:
            raise VideoError(f"{self.path}: decoding frames {indices[0]}-{indices[-1]} failed ({_clean(e)})") from None
        if frames.shape[0] != len(indices):
            raise _short_read(self.path, frames.shape[0], indices)
        return frames


class _StreamReader:
    """Frames decoded one by one in order through PyAV, resized to width x height in FFmpeg's scaler (bilinear,
    as decord's scale filter: both readers give the same pixels to within rounding).

    Reads must ask for ascending indices, except that a window may repeat frames of the previous one
    (overlapping clips): those are kept from the previous window. Each decoded frame's position comes from its pts
    in the index, so a damaged packet the decoder skips costs its frame only: a missing frame is the one shown
    before it (the next one at the start), as a player shows it. Once more than MAX_MISSING of the video's frames
    are lost (counted as decoding goes, asked for or not), it is a VideoError. Without pts in the index, frames are
    placed in decoding order (a lost frame then shifts the ones after it).
    """

    def __init__(self, path: str, width: int, height: int, threads: int, index: VideoIndex):
        self.path, self.size, self.threads, self.index = path, (width, height), threads, index
        self.scaler = VideoReformatter()                    # one scaler context for all frames: 2.5x faster
        try:
            self.container = _open_av(path)
            stream = self.container.streams.video[0]
            stream.codec_context.thread_count = threads
            if threads != 1:
                stream.codec_context.thread_type = "AUTO"
            self.frames = self._positioned(_decoded(self.container.demux(stream)))
        except DECODER_ERRORS as e:
            raise VideoError(f"{path}: cannot open as video ({_clean(e)})") from None
        self.next, self.last, self.last_indices = 0, None, None
        self.behind, self.ahead, self.decoded = None, (-1, None), 0   # frames around the next index; count before

    def _positioned(self, frames: Iterator[av.VideoFrame]) -> Iterator[tuple[int, av.VideoFrame]]:
        """(frame index, frame) in ascending order; frames the index does not list (discarded) are left out."""
        pts = self.index.pts
        if pts is None:
            yield from enumerate(frames)
            return
        pending: list[tuple[int, int, av.VideoFrame]] = []    # a decoder recovering from damage can emit a frame
        for k, frame in enumerate(frames):                   # after a later one: REORDER frames put them back
            position = int(np.searchsorted(pts, frame.pts)) if frame.pts is not None else len(pts)
            if position < len(pts) and pts[position] == frame.pts:
                heapq.heappush(pending, (position, k, frame))
            if len(pending) > REORDER:
                yield heapq.heappop(pending)[::2]
        while pending:
            yield heapq.heappop(pending)[::2]

    def _frame(self, index: int) -> av.VideoFrame:
        """The decoded frame at `index`, or the nearest one decoded before it (after it at the start)."""
        while self.ahead is not None and self.ahead[0] < index:
            if self.ahead[1] is not None:
                self.decoded += 1
                if self.behind is None or self.ahead[0] > self.behind[0]:
                    self.behind = self.ahead
            self.ahead = next(self.frames, None)
        hit = self.ahead is not None and self.ahead[0] == index
        lost, n = index + 1 - self.decoded - hit, self.index.meta.n_frames    # of frames 0..index
        if lost > MAX_MISSING * n:
            raise VideoError(f"{self.path}: {lost} of its {n} frames do not decode; the file is damaged or "
                             "truncated")
        if hit:
            return self.ahead[1]
        if self.behind is None and self.ahead is None:
            raise VideoError(f"{self.path}: no frame decodes; the file is damaged")
        return (self.behind or self.ahead)[1]

    def read(self, indices: np.ndarray) -> np.ndarray:
        """Frames at sorted `indices` as uint8 [N, H, W, 3]; a decoder error or too many missing is a VideoError."""
        width, height = self.size
        out = np.empty((len(indices), height, width, 3), np.uint8)
        coded = (height, width) if self.index.rotation % 2 else (width, height)     # the size before the turn
        try:
            for k, index in enumerate(indices):
                if index < self.next:                     # overlap with the previous window
                    out[k] = self.last[np.searchsorted(self.last_indices, index)]
                    continue
                frame = self.scaler.reformat(self._frame(index), *coded, "rgb24", interpolation="BILINEAR",
                                             threads=self.threads)
                out[k] = np.rot90(frame.to_ndarray(), self.index.rotation)
                self.next = index + 1
        except DECODER_ERRORS as e:
            raise VideoError(f"{self.path}: decoding frames {indices[0]}-{indices[-1]} failed ({_clean(e)})") from None
        self.last, self.last_indices = out, indices
        return out


def _short_read(path: str, got: int, indices: np.ndarray) -> VideoError:
    """The error for a decoder that stopped before the frames its index promised."""
    return VideoError(f"{path}: decoder returned {got} of {len(indices)} frames from frame {indices[0]}; "
                      f"the file is probably truncated")


def _check_file(path: str) -> None:
    """VideoError unless `path` is a non-empty file."""
    if not os.path.isfile(path):
        raise VideoError(f"{path}: no such file")
    if os.path.getsize(path) == 0:
        raise VideoError(f"{path}: empty file (0 bytes)")


def _open(path: str, width: int = -1, height: int = -1, threads: int = 1) -> decord.VideoReader:
    """A decord reader (optionally resizing to width x height), or VideoError with the reason."""
    _check_file(path)
    try:
        return decord.VideoReader(path, ctx=decord.cpu(0), width=width, height=height, num_threads=threads)
    except DECODER_ERRORS as e:
        raise VideoError(f"{path}: cannot open as video ({_clean(e)})") from None


def _clean(error: BaseException) -> str:
    """The decoder's message without decord's timestamps, source locations and stack trace, and without
    FFmpeg's error number and the file name PyAV appends (the message already starts with the path)."""
    if isinstance(error, av.FFmpegError) and error.strerror:
        return error.strerror
    lines = str(error).strip().splitlines() or [type(error).__name__]
    return re.sub(r"\[\d\d:\d\d:\d\d\] \S+:\d+: ", "", lines[0]).strip() or type(error).__name__


