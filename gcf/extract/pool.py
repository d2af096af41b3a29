"""Decoder worker processes: each decodes one video at a time into shared memory; a crash fails only that video.

The main process owns everything: it gives each worker its own pipe and its own shared-memory block of `slots`
windows (`window` clips each), assigns videos to a worker explicitly (so it always knows which video a worker
holds), and reads results with `multiprocessing.connection.wait` over pipes and process sentinels. A worker that
dies (a decoder segfault or abort) costs the video it was decoding, reported as "decoder crashed (signal N, NAME)";
the videos queued behind it go back to the queue and a fresh worker takes over its shared memory. There
is no pool-wide lock or shared queue that a dying process could leave broken, which is why this is not a
ProcessPoolExecutor.

Frames travel as uint8 through shared memory and only small messages through the pipes, so IPC costs one copy
per clip (the consumer's, into its batch). Memory is bounded by workers x slots x window clips, whatever the
length of the videos. This module imports no torch.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time
from collections import deque
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.shared_memory import SharedMemory
from typing import Iterable, NamedTuple

import numpy as np

from gcf.errors import GcfError

# a worker killed by one of these was stopped with the run (Ctrl-C, scancel, kill), not crashed by its video
STOP_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM, signal.SIGHUP})


@dataclass(frozen=True)
class DecodeConfig:
    """What workers cut (clip length, stride, crop size, frame step) and their buffers: `slots` windows of `window`
    clips."""

    clip_len: int = 16
    stride: int = 16
    size: int = 112
    frame_step: int = 1
    window: int = 8
    slots: int = 4
    nice: int = 10        # workers yield the CPU to the backbone's threads, and decode in the time they leave
    stall_s: float = 600  # a worker silent this long while it could work is hung: killed, its video failed


class Task(NamedTuple):
    """A video to decode; `key` is the caller's, echoed in every event about this video."""

    key: int
    path: str


class Started(NamedTuple):
    key: int
    meta: object                      # gcf.extract.video.VideoMeta


class Clips(NamedTuple):
    """Consecutive clips of one video: frames uint8 [n, T, S, S, 3], a view valid until `release()` or `events()`."""

    key: int
    frames: np.ndarray
    start_frames: list[int]
    times: list[tuple[float, float]]


class Done(NamedTuple):
    key: int


class Failed(NamedTuple):
    key: int
    error: str


Event = Started | Clips | Done | Failed


@dataclass(eq=False)
class _Worker:
    """One worker seat: its shared memory (kept across restarts), its current process and pipe, its videos."""

    shm: SharedMemory
    frames: np.ndarray                # [slots, window, T, S, S, 3] view of shm
    proc: mp.process.BaseProcess | None = None
    conn: Connection | None = None
    tasks: deque = field(default_factory=deque)   # assigned Tasks, the first is being decoded
    ready: bool = False
    active: float = 0.0               # when it last reported, or got work or slots (time.monotonic)
    stalled: bool = False             # killed by us for hanging


class DecoderPool:
    """`workers` decoder processes fed video by video: `submit` tasks, then read `events()` while `busy`."""

    def __init__(self, workers: int, config: DecodeConfig):
        self.config = config
        # videos assigned to a worker at once: enough to fill every slot (a slot holds clips of one video) while
        # the main process is busy, so a worker never idles for lack of work
        self.prefetch = config.slots + 1
        self.stopped = False              # a worker was killed by a stop signal: the run is being stopped
        self._ctx = mp.get_context("spawn")   # a fresh interpreter: no inherited locks, threads or file handles
        self._pending: deque[Task] = deque()
        self._held: list[tuple[_Worker, int]] = []
        self._workers: list[_Worker] = []        # seats with a live process
        self._retired: list[_Worker] = []        # seats whose process was stopped with the run
        shape = (config.slots, config.window, config.clip_len, config.size, config.size, 3)
        for _ in range(workers):
            shm = SharedMemory(create=True, size=int(np.prod(shape)))
            self._workers.append(_Worker(shm, np.ndarray(shape, np.uint8, buffer=shm.buf)))
            self._spawn(self._workers[-1], busy_slots=())

    def __enter__(self) -> DecoderPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close(graceful=exc[0] is None)

    @property
    def busy(self) -> bool:
        """Whether any video is waiting or being decoded."""
        return bool(self._pending) or any(w.tasks for w in self._workers)

    def submit(self, tasks: Iterable[Task]) -> None:
        """Queue videos; each goes to a worker as one has room."""
        self._pending.extend(tasks)
        self._dispatch()

    def events(self, timeout: float | None = None) -> list[Event]:
        """The workers' reports, in order per video, waiting at most `timeout` seconds for the first."""
        self.release()
        by_handle = {}
        for w in self._workers:
            by_handle[w.conn] = by_handle[w.proc.sentinel] = w
        out: list[Event] = []
        for w in {id(w): w for w in map(by_handle.get, wait(list(by_handle), timeout))}.values():
            if not self._drain(w, out) or not w.proc.is_alive():
                self._drain(w, out)       # whatever it sent before dying
                self._bury(w, out)
        self._dispatch()
        now = time.monotonic()
        for w in self._workers:
            if w.tasks and not w.stalled and now - w.active > self.config.stall_s:
                w.stalled = True          # its sentinel fires on a later call: _bury reports the stall
                w.proc.kill()
        return out

    def close(self, graceful: bool = True) -> None:
        """Stop the workers (asking them first when `graceful`, else at once) and free the shared memory."""
        for w in self._workers:
            if graceful:
                _send(w.conn, ("stop",))
            else:
                w.proc.terminate()
        for w in self._workers:
            w.proc.join(5 if graceful else 1)
            if w.proc.is_alive():
                w.proc.kill()
                w.proc.join()
            w.conn.close()
        for w in self._workers + self._retired:
            w.frames = None
            try:
                w.shm.close()
            except BufferError:           # a caller still holds a Clips view: the mapping goes with it
                pass
            w.shm.unlink()
        self._workers, self._retired, self._held = [], [], []

    def _spawn(self, w: _Worker, busy_slots: Iterable[int]) -> None:
        """Start a worker process on seat `w`; slots still held by the consumer stay off its free list."""
        free = [s for s in range(self.config.slots) if s not in set(busy_slots)]
        ours, theirs = self._ctx.Pipe()
        w.proc = self._ctx.Process(target=_worker_main, args=(theirs, w.shm.name, self.config, free),
                                   name="gcf-decoder", daemon=True)
        w.proc.start()
        theirs.close()
        w.conn, w.ready, w.stalled, w.active = ours, False, False, time.monotonic()

    def _dispatch(self) -> None:
        """Hand queued videos to workers with room, least loaded first."""
        for w in sorted(self._workers, key=lambda w: len(w.tasks)):
            while self._pending and len(w.tasks) < self.prefetch:
                if not w.tasks:
                    w.active = time.monotonic()
                task = self._pending.popleft()
                w.tasks.append(task)
                _send(w.conn, ("task", task))     # a dead worker is noticed by its sentinel

    def release(self) -> None:
        """Give the slots behind the Clips returned so far back to their workers (their views become invalid)."""
        for w, slot in self._held:
            if w in self._workers:
                _send(w.conn, ("free", slot))
                w.active = time.monotonic()
        self._held = []

    def _drain(self, w: _Worker, out: list[Event]) -> bool:
        """Turn every message waiting on a worker's pipe into events; False once the pipe is broken."""
        try:
            while w.conn.poll():
                kind, *body = w.conn.recv()
                w.active = time.monotonic()
                if kind == "ready":
                    w.ready = True
                elif kind == "started":
                    out.append(Started(*body))
                elif kind == "clips":
                    key, slot, starts, times = body
                    out.append(Clips(key, w.frames[slot, :len(starts)], starts, times))
                    self._held.append((w, slot))
                else:                     # done or failed: the worker goes on with its next video
                    w.tasks.popleft()
                    out.append(Done(*body) if kind == "done" else Failed(*body))
        except (EOFError, OSError):
            return False
        return True

    def _bury(self, w: _Worker, out: list[Event]) -> None:
        """A worker died: fail the video it was decoding, requeue the others, restart it unless the run stops."""
        w.proc.join()
        code = w.proc.exitcode
        w.conn.close()
        tasks = list(w.tasks)
        w.tasks.clear()
        if w.stalled:
            if tasks:
                out.append(Failed(tasks.pop(0).key, f"decoder stalled (no progress for {self.config.stall_s:g} "
                                                     f"s; killed)"))
        elif code < 0 and -code in STOP_SIGNALS:
            self.stopped = True
        elif not w.ready:
            raise GcfError(f"a decoder worker died while starting ({_exit_reason(code)}); see the error above")
        elif tasks:
            out.append(Failed(tasks.pop(0).key, f"decoder crashed ({_exit_reason(code)})"))
        self._pending.extendleft(reversed(tasks))
        if self.stopped:
            self._workers.remove(w)
            self._retired.append(w)
        else:
            self._spawn(w, busy_slots=[s for h, s in self._held if h is w])


def _exit_reason(code: int) -> str:
    """'signal 11, SIGSEGV' or 'exit code 1'."""
    if code >= 0:
        return f"exit code {code}"
    try:
        return f"signal {-code}, {signal.Signals(-code).name}"
    except ValueError:
        return f"signal {-code}"


def _send(conn: Connection, msg: tuple) -> None:
    """Send to a worker that may have died; its death is handled where its sentinel fires."""
    try:
        conn.send(msg)
    except OSError:
        pass


# -- worker side ------------------------------------------------------------------------------------------------

def _worker_main(conn: Connection, shm_name: str, config: DecodeConfig, free: list[int]) -> None:
    """Decode assigned videos clip by clip into free slots; leave Ctrl-C to the main process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from gcf.extract.video import index_video, iter_clips

    os.nice(config.nice)

    shm = SharedMemory(name=shm_name)
    c = config
    frames = np.ndarray((c.slots, c.window, c.clip_len, c.size, c.size, 3), np.uint8, buffer=shm.buf)
    tasks: deque[Task] = deque()
    free = list(free)

    def receive() -> None:
        kind, *body = conn.recv()
        if kind == "task":
            tasks.append(body[0])
        elif kind == "free":
            free.append(body[0])
        else:
            raise SystemExit(0)

    try:
        conn.send(("ready",))
        os.dup2(os.open(os.devnull, os.O_WRONLY), 2)   # decoder chatter would break the progress bar; errors
        while True:                                      # reach the store and the summary as VideoError text
            while not tasks or conn.poll():
                receive()
            task = tasks.popleft()
            slot = None
            try:
                index = index_video(task.path)
                conn.send(("started", task.key, index.meta))
                starts, times = [], []
                for clip in iter_clips(task.path, c.clip_len, c.stride, c.size, index=index, frame_step=c.frame_step):
                    if slot is None:
                        while not free:
                            receive()
                        slot = free.pop()
                    frames[slot, len(starts)] = clip.frames
                    starts.append(clip.start_frame)
                    times.append((clip.start_s, clip.end_s))
                    if len(starts) == c.window:
                        conn.send(("clips", task.key, slot, starts, times))
                        slot, starts, times = None, [], []
                if starts:
                    conn.send(("clips", task.key, slot, starts, times))
                    slot = None
                conn.send(("done", task.key))
            except (EOFError, ConnectionError, SystemExit):
                raise
            except Exception as e:        # VideoError, or anything else the decoder raised: this video only
                if slot is not None:
                    free.append(slot)
                message = str(e) if isinstance(e, GcfError) else f"{task.path}: {type(e).__name__}: {e}"
                conn.send(("failed", task.key, message))
    except (EOFError, ConnectionError, SystemExit):   # the main process stopped us or is gone
        pass
    finally:
        del frames
        shm.close()
