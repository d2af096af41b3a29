"""`gcf extract` end to end on real synthetic videos, damaged copies of them and a file that really crashes decord.

A tiny backbone (resnet18 at width 0.25, 32 px crops, random weights) keeps every run to a few seconds; the
numbers it produces are checked against the same backbone run directly, video by video.
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest
from conftest import REPO, run_gcf

from gcf.errors import GcfError
from gcf.extract.inputs import discover
from gcf.extract.pipeline import select_shard
from gcf.store import open_store
from gcf.synth import make_video

TINY = ("--backbone", "resnet18", "--option", "width=0.25", "--size", "32", "--weights", "random",
        "--batch-size", "8", "--quiet")


def frame_count(path: Path) -> int:
    """Frames in a video, counted by decoding it with PyAV (independent of decord)."""
    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0))


def crashing_copy(src: Path, dst: Path) -> Path:
    """A copy whose first `stts` entry claims 2^32-1 frames: decord's index allocation throws std::bad_alloc and
    the process aborts (SIGABRT) on open. Run under RLIMIT_AS (see `run_limited`) so it aborts on any machine."""
    data = bytearray(src.read_bytes())
    at = data.find(b"stts") + 12                   # type, version/flags, entry count, then the first sample count
    data[at:at + 4] = struct.pack(">I", 0xFFFFFFFF)
    dst.write_bytes(bytes(data))
    return dst


def run_limited(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run gcf with 16 GiB of address space, less than the tens of GB decord asks for to index the crashing copy."""
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (16 << 30, 16 << 30))
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "gcf", *map(str, args)], cwd=cwd, env=env, preexec_fn=limit,
                          capture_output=True, text=True, timeout=300)


def tiny_model():
    """The backbone of TINY, built here: seed 0 gives the same random weights as the CLI's runs."""
    from gcf.extract import build_backbone

    with pytest.warns(UserWarning, match="RANDOM weights"):
        return build_backbone("resnet18", "random", seed=0, width=0.25)


def direct_descriptors(path: Path) -> np.ndarray:
    """The tiny backbone run on one video's clips directly: no workers, no batching across videos, no store."""
    import torch

    from gcf.extract.video import iter_clips

    model = tiny_model()
    frames = np.stack([c.frames for c in iter_clips(path, 16, 16, 32)])
    with torch.inference_mode():
        return model.descriptor(model.spec.normalize(frames)).numpy()


@pytest.fixture(scope="session")
def short_video(tmp_path_factory) -> Path:
    """A 10-frame video: shorter than one clip."""
    from gcf.synth import make_video

    return make_video(tmp_path_factory.mktemp("short") / "short.mp4", 10, seed=3)


@pytest.fixture(scope="session")
def reference(synth_videos, short_video, tmp_path_factory) -> Path:
    """One uninterrupted run over the synth videos and the short one, into the default store of its folder."""
    cwd = tmp_path_factory.mktemp("reference")
    run_gcf("extract", *TINY, "--logits", synth_videos, short_video, cwd=cwd)
    return cwd / "features.zarr"


def assert_same_store(a: Path, b: Path) -> None:
    ra, rb = open_store(a), open_store(b)
    assert sorted(ra.videos) == sorted(rb.videos) and ra.failed == rb.failed
    for vid in ra.videos:
        np.testing.assert_allclose(ra.features(vid).astype(np.float32), rb.features(vid).astype(np.float32),
                                   rtol=2e-3, atol=2e-3, err_msg=vid)
        np.testing.assert_array_equal(ra.clips(vid)["start_frame"], rb.clips(vid)["start_frame"])


def test_clips_times_labels_and_features(reference, synth_videos, short_video):
    store = open_store(reference)
    dataset = discover([synth_videos])
    assert sorted(store.videos) == sorted([i.video_id for i in dataset.items] + ["short"]) and not store.failed
    assert store.meta.backbone == "resnet18" and store.meta.weights == "random"
    assert store.meta.extra["weights_seed"] == 0 and store.meta.extra["norm"] == "kinetics"
    assert store.meta.class_names == dataset.class_names and store.meta.input_size == 32
    for item in dataset.items + [discover([short_video]).items[0]]:
        n_frames, info = frame_count(Path(item.path)), store.info(item.video_id)
        n = max(1, n_frames // 16)
        clips = store.clips(item.video_id)
        assert info.n_frames == n_frames and store.features(item.video_id).shape == (n, 128)
        np.testing.assert_array_equal(clips["start_frame"], np.arange(n) * 16)
        np.testing.assert_allclose(clips["start_s"], np.arange(n) * 16 / info.fps)
        np.testing.assert_allclose(clips["end_s"], np.minimum((np.arange(n) + 1) * 16 / info.fps, n_frames / info.fps))
        assert store.label(item.video_id) == dataset.label_index(item.label)
        assert store.split(item.video_id) == item.split
        assert store.logits(item.video_id).shape == (n, store.meta.extra["num_classes"])
        direct = direct_descriptors(Path(item.path))
        np.testing.assert_allclose(store.features(item.video_id).astype(np.float32), direct,
                                   rtol=2e-3, atol=2e-3 * np.abs(direct).max(), err_msg=item.video_id)


def damaged_copies(src: Path, folder: Path) -> set[str]:
    """Zero-byte, truncated, non-video and mid-file damaged copies of `src` in `folder`; the ids that must fail."""
    folder.mkdir(exist_ok=True)
    data = src.read_bytes()
    (folder / "empty.mp4").write_bytes(b"")
    (folder / "truncated.mp4").write_bytes(data[:len(data) // 3])
    (folder / "text.mp4").write_text("this is not a video\n" * 100)
    mid = len(data) // 2                        # may decode with concealed errors or fail: either way, no stop
    (folder / "damaged.mp4").write_bytes(data[:mid] + bytes(4000) + data[mid + 4000:])
    return {"empty", "truncated", "text"}


def test_bad_files_are_recorded_and_the_run_goes_on(synth_videos, tmp_path):
    videos = tmp_path / "videos"
    good = sorted(synth_videos.rglob("*.mp4"))[:2]
    must_fail = damaged_copies(good[0], videos)
    for src in good:
        shutil.copy(src, videos / src.name)
    (videos / "labels.csv").write_text("video,label\n" + "".join(f"{p.stem},a\n" for p in good) + "vanished,a\n")
    proc = run_gcf("extract", *TINY, videos, cwd=tmp_path)
    store = open_store(tmp_path / "features.zarr")
    assert {p.stem for p in good} <= set(store.videos) <= {p.stem for p in good} | {"damaged"}
    assert must_fail | {"vanished"} <= set(store.failed)
    assert "empty file" in store.failed["empty"] and "no such file" in store.failed["vanished"]
    assert "text.mp4" in store.failed["text"] and "truncated.mp4" in store.failed["truncated"]
    for vid, error in store.failed.items():
        assert error and f"  {vid}: {error}" in proc.stdout
    assert run_gcf("extract", *TINY, "--strict", videos, cwd=tmp_path, check=False).returncode == 1


def test_nothing_extracted_exits_non_zero(synth_videos, tmp_path):
    must_fail = damaged_copies(sorted(synth_videos.rglob("*.mp4"))[0], tmp_path / "bad")
    (tmp_path / "bad" / "damaged.mp4").unlink()
    proc = run_gcf("extract", *TINY, tmp_path / "bad", "-o", "bad.h5", cwd=tmp_path, check=False)
    assert proc.returncode == 1 and set(open_store(tmp_path / "bad.h5").failed) == must_fail
    again = run_gcf("extract", *TINY, tmp_path / "bad", "-o", "bad.h5", cwd=tmp_path, check=False)
    assert again.returncode == 1 and "3 more videos failed in earlier runs" in again.stdout


def test_a_header_listing_missing_frames_fails_as_truncated(synth_videos, tmp_path):
    """The crashing copy made decord abort on open (std::bad_alloc); PyAV's index refuses it first. Run under
    RLIMIT_AS so that, were the index to let it through, decord aborts instead of taking the machine's memory."""
    videos = tmp_path / "videos"
    videos.mkdir()
    sources = sorted(synth_videos.rglob("*.mp4"))[:2]
    crashing_copy(sources[0], videos / "a_crash.mp4")
    for src in sources:
        shutil.copy(src, videos / src.name)
    proc = run_limited("extract", *TINY, "--workers", "1", videos, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    store = open_store(tmp_path / "features.zarr")
    (why,) = store.failed.values()
    assert list(store.failed) == ["a_crash"] and "truncated or damaged: its header lists 4294967295 frames" in why
    assert sorted(store.videos) == sorted(p.stem for p in sources)


def test_a_killed_decoder_fails_only_its_video(synth_videos, tmp_path):
    """A worker killed while it decodes a video (a decoder crash, the kernel's OOM killer): that video is failed
    with the signal, the videos queued behind it on the same worker are requeued, a fresh worker takes over."""
    videos = tmp_path / "videos"
    videos.mkdir()
    long = make_video(videos / "a_long.mp4", 3000, seed=1)        # open for ~0.3 s: long enough to be caught
    sources = sorted(synth_videos.rglob("*.mp4"))[:3]
    for src in sources:
        shutil.copy(src, videos / src.name)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-m", "gcf", "extract", *map(str, TINY), "--workers", "1", str(videos)],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        killed, deadline = None, time.monotonic() + 120
        while killed is None and time.monotonic() < deadline and proc.poll() is None:
            for pid in children(proc.pid):
                if has_open(pid, long):                              # this worker is decoding a_long now
                    os.kill(pid, signal.SIGKILL)
                    killed = pid
            time.sleep(0.002)
        out, err = proc.communicate(timeout=300)
    finally:
        proc.kill()                                                  # a failed assertion leaves nothing running
    assert killed is not None, "the worker never opened a_long.mp4"
    assert proc.returncode == 0, err
    store = open_store(tmp_path / "features.zarr")
    assert store.failed == {"a_long": "decoder crashed (signal 9, SIGKILL)"}
    assert sorted(store.videos) == sorted(p.stem for p in sources)


def has_open(pid: int, path: Path) -> bool:
    """Does process `pid` hold `path` open?"""
    try:
        return any(os.readlink(fd) == str(path) for fd in Path(f"/proc/{pid}/fd").iterdir())
    except OSError:                                   # the process or one of its descriptors went away
        return False


def children(pid: int) -> set[int]:
    """Process ids whose parent is `pid`."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.add(int(stat.parent.name))
    return found


def start_and_stop(args: list, cwd: Path, store: Path, sig: int) -> subprocess.CompletedProcess:
    """Start `gcf extract`, send `sig` once the store holds one committed video; return the finished process."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-m", "gcf", "extract", *map(str, args)], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if (store / "parts").is_dir() and open_store(store).videos:
            break
        time.sleep(0.02)
    workers = children(proc.pid)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    for _ in range(200):                           # orphaned workers notice the dead pipe and leave
        if not any(Path(f"/proc/{p}").exists() for p in workers):
            break
        time.sleep(0.05)
    assert not any(Path(f"/proc/{p}").exists() for p in workers), "decoder workers outlived the main process"
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_resume_after_kill_9_gives_the_same_store(reference, synth_videos, short_video, tmp_path):
    store = tmp_path / "features.zarr"
    args = [*TINY, "--batch-size", "2", "--workers", "1", "--commit-every", "0", synth_videos, short_video]
    killed = start_and_stop(args, tmp_path, store, signal.SIGKILL)
    assert killed.returncode == -signal.SIGKILL
    after_kill = len(open_store(store).videos)
    assert 1 <= after_kill < len(open_store(reference).videos)
    resumed = run_gcf("extract", *args, cwd=tmp_path)
    assert f"{after_kill} skipped" in resumed.stdout
    assert_same_store(reference, store)


def test_ctrl_c_stops_cleanly_and_says_how_to_resume(reference, synth_videos, short_video, tmp_path):
    store = tmp_path / "features.zarr"
    args = [*TINY, "--batch-size", "2", "--workers", "1", "--commit-every", "0", synth_videos, short_video]
    stopped = start_and_stop(args, tmp_path, store, signal.SIGINT)
    assert stopped.returncode == 130 and "run the same command again to resume" in stopped.stderr
    assert not open_store(store).failed
    run_gcf("extract", *args, cwd=tmp_path)
    assert_same_store(reference, store)


def test_shards_fill_one_store_together(reference, synth_videos, short_video, tmp_path):
    items = discover([synth_videos, short_video]).items
    halves = [select_shard(items, i, 2) for i in range(2)]
    assert all(halves) and sorted(i.video_id for h in halves for i in h) == sorted(i.video_id for i in items)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    procs = [subprocess.Popen([sys.executable, "-m", "gcf", "extract", *TINY, "--logits", "--shard", f"{i}/2",
                               str(synth_videos), str(short_video)], cwd=tmp_path, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    for i, p in enumerate(procs):
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        assert f"{len(halves[i])} videos: {len(halves[i])} extracted" in out
    assert_same_store(reference, tmp_path / "features.zarr")


def test_overwrite_redoes_everything_and_deletes_only_stores(synth_videos, tmp_path):
    one = sorted(synth_videos.rglob("*.mp4"))[0]
    run_gcf("extract", *TINY, one, "-o", "f.h5", cwd=tmp_path)
    again = run_gcf("extract", *TINY, one, "-o", "f.h5", cwd=tmp_path)
    assert "1 video: 0 extracted, 0 failed, 1 skipped" in again.stdout
    redone = run_gcf("extract", *TINY, one, "-o", "f.h5", "--overwrite", cwd=tmp_path)
    assert "1 video: 1 extracted, 0 failed, 0 skipped" in redone.stdout
    assert open_store(tmp_path / "f.h5").videos == [one.stem]
    (tmp_path / "notes.h5").write_text("precious")
    refused = run_gcf("extract", *TINY, one, "-o", "notes.h5", "--overwrite", cwd=tmp_path, check=False)
    assert refused.returncode == 2 and (tmp_path / "notes.h5").read_text() == "precious"
    sharded = run_gcf("extract", *TINY, one, "-o", "f.h5", "--overwrite", "--shard", "0/2", cwd=tmp_path,
                      check=False)
    assert sharded.returncode == 2 and "--overwrite" in sharded.stderr


def test_user_errors_are_one_line(synth_videos, tmp_path):
    bad = run_gcf("extract", "--backbone", "nope", "--weights", "random", synth_videos, cwd=tmp_path, check=False)
    assert bad.returncode == 2 and "unknown backbone" in bad.stderr
    small = run_gcf("extract", "--backbone", "shufflenet", "--weights", "random", "--clip-len", "4", synth_videos,
                    cwd=tmp_path, check=False)   # its last 2x3x3 pooling needs more frames than 4 leave
    assert small.returncode == 2 and small.stderr.count("\n") == 1
    assert "shufflenet cannot take 4-frame clips of 112x112 px" in small.stderr and "Traceback" not in small.stderr
    assert not (tmp_path / "features.zarr").exists()


def test_frame_step_samples_every_nth_frame_and_is_recorded(synth_videos, tmp_path):
    import torch

    from gcf.extract import build_backbone
    from gcf.extract.video import iter_clips

    one = sorted(synth_videos.rglob("*.mp4"))[0]
    args = ("--backbone", "slow_r50", "--option", "width=0.125", "--weights", "random", "--size", "32",
            "--clip-len", "4", "--quiet")
    run_gcf("extract", *args, "--frame-step", "4", one, cwd=tmp_path)
    store = open_store(tmp_path / "features.zarr")
    assert (store.meta.clip_len, store.meta.frame_step, store.meta.stride) == (4, 4, 16)   # side by side
    n_frames, info = frame_count(one), store.info(one.stem)
    n = n_frames // 16
    np.testing.assert_array_equal(store.clips(one.stem)["start_frame"], np.arange(n) * 16)
    np.testing.assert_allclose(store.clips(one.stem)["end_s"], (np.arange(n) + 1) * 16 / info.fps)
    with pytest.warns(UserWarning, match="RANDOM weights"):
        model = build_backbone("slow_r50", "random", width=0.125)
    frames = np.stack([c.frames for c in iter_clips(one, 4, size=32, frame_step=4)])
    with torch.inference_mode():
        direct = model.descriptor(model.spec.normalize(frames)).numpy()
    np.testing.assert_allclose(store.features(one.stem).astype(np.float32), direct, rtol=2e-3,
                               atol=2e-3 * np.abs(direct).max())
    default = run_gcf("extract", *args, one, "-o", "default.h5", cwd=tmp_path)      # the backbone's own step: 8
    assert open_store(tmp_path / "default.h5").meta.frame_step == 8, default.stderr
    bad = run_gcf("extract", *args, "--frame-step", "4", "--stride", "6", one, "-o", "bad.h5", cwd=tmp_path,
                  check=False)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "multiple of the frame step" in bad.stderr
    assert not (tmp_path / "bad.h5").exists()


def test_slowfast_extracts_with_the_fusion_and_frames_its_file_implies(synth_videos, tmp_path):
    import warnings

    import torch

    from gcf.extract import build_backbone
    from gcf.extract.video import iter_clips

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        source = build_backbone("slowfast_r50", "random", width=0.125, lateral_norm=False, sampling="stride")
    torch.save({"meta": {"mmaction2_version": "1.2.0"}, "state_dict": source.state_dict()}, tmp_path / "sf.pth")
    one = sorted(synth_videos.rglob("*.mp4"))[0]
    args = ("--backbone", "slowfast_r50", "--option", "width=0.125", "--weights", tmp_path / "sf.pth", "--size", "32",
            "--clip-len", "16", "--quiet", one)
    run_gcf("extract", *args, cwd=tmp_path)
    meta = open_store(tmp_path / "features.zarr").meta
    assert (meta.clip_len, meta.frame_step, meta.feature_dim, meta.extra["norm"]) == (16, 2, 288, "imagenet")
    assert meta.extra["backbone_options"] == {"width": 0.125, "sampling": "stride", "lateral_norm": False,
                                              "fusion_kernel": 7}      # MMAction2's fusion, recorded
    frames = np.stack([c.frames for c in iter_clips(one, 16, size=32, frame_step=2)])
    model = build_backbone("slowfast_r50", tmp_path / "sf.pth", width=0.125)      # its convention: imagenet
    with torch.inference_mode():
        direct = model.descriptor(model.spec.normalize(frames)).numpy()
    features = open_store(tmp_path / "features.zarr").features(one.stem).astype(np.float32)
    np.testing.assert_allclose(features, direct, rtol=2e-3, atol=2e-3 * np.abs(direct).max())
    again = run_gcf("extract", *args, cwd=tmp_path)                                 # same file, same options
    assert again.returncode == 0 and open_store(tmp_path / "features.zarr").features(one.stem).shape == features.shape


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not __import__("torch").cuda.is_available(), reason="no CUDA device"))])
def test_backbone_runner_keeps_each_clip_with_its_video(device):
    import torch

    from gcf.extract.pipeline import BackboneRunner

    model = tiny_model()
    rng = np.random.default_rng(0)
    videos = {key: rng.integers(0, 256, (n, 16, 32, 32, 3), dtype=np.uint8) for key, n in enumerate([5, 1, 9, 3])}
    with torch.inference_mode():
        want = {k: model.descriptor(model.spec.normalize(v)).numpy() for k, v in videos.items()}
    runner = BackboneRunner(model, batch_size=4, clip_len=16, size=32, device=device, logits=True)
    outputs = []
    for key, frames in videos.items():
        runner.add(frames, key)
        outputs += runner.run()
    outputs += runner.run(partial=True)
    got = {k: [] for k in videos}
    for out in outputs:
        assert len(out.keys) == len(out.descriptors) == len(out.logits)
        for key, v in zip(out.keys, out.descriptors):
            got[key].append(v)
    tol = 1e-4 if device == "cpu" else 3e-2                 # bf16 autocast on CUDA
    for key, v in want.items():
        np.testing.assert_allclose(np.stack(got[key]), v, rtol=tol, atol=tol * np.abs(v).max())


def test_a_batch_that_runs_out_of_memory_is_run_in_halves(caplog):
    import torch

    from gcf.extract.pipeline import BackboneRunner

    model = tiny_model()
    descriptor, calls = model.descriptor, []

    def limited(x):                                   # a device with room for 2 clips at a time
        calls.append(len(x))
        if len(x) > 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return descriptor(x)

    frames = np.random.default_rng(0).integers(0, 256, (7, 16, 32, 32, 3), dtype=np.uint8)
    with torch.inference_mode():
        want = descriptor(model.spec.normalize(frames)).numpy()
    model.descriptor = limited
    runner = BackboneRunner(model, batch_size=8, clip_len=16, size=32, logits=True)
    runner.add(frames, "v")
    out = runner.run(partial=True)
    np.testing.assert_allclose(np.concatenate([o.descriptors for o in out]), want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
    assert calls == [7, 4, 2, 2, 2, 1] and runner.chunk == 2 and "running the backbone 2 clips at a time" in caplog.text
    model.descriptor = lambda x: (_ for _ in ()).throw(torch.OutOfMemoryError("CUDA out of memory"))
    runner.add(frames[:1], "w")
    with pytest.raises(GcfError, match=r"one clip \(16 frames of 32 px\) does not fit in the memory of cpu "
                                       r"\(CUDA out of memory\)"):
        runner.run(partial=True)
    other = BackboneRunner(model, batch_size=8, clip_len=16, size=32)
    model.descriptor = lambda x: (_ for _ in ()).throw(RuntimeError("index out of memory-mapped range"))
    other.add(frames, "u")                            # not an allocator's message: raised as it is, not halved
    with pytest.raises(RuntimeError, match="memory-mapped"):
        other.run(partial=True)
    assert other.chunk == 8


def decoder_pids() -> list[int]:
    """Decoder workers started by this (test) process."""
    return [p for p in children(os.getpid()) if b"spawn_main" in Path(f"/proc/{p}/cmdline").read_bytes()]


def test_a_hung_decoder_is_killed_and_only_its_video_fails(synth_videos):
    from gcf.extract.pool import DecodeConfig, DecoderPool, Done, Failed, Task

    paths = [str(p) for p in sorted(synth_videos.rglob("*.mp4"))[:2]]
    reports = []
    with DecoderPool(1, DecodeConfig(size=32, stall_s=1.0)) as pool:
        for pid in decoder_pids():
            os.kill(pid, signal.SIGSTOP)            # frozen before it gets any work: as hung as a decoder gets
        pool.submit(Task(i, p) for i, p in enumerate(paths))
        while pool.busy:
            reports += [ev for ev in pool.events(0.1) if isinstance(ev, (Done, Failed))]
            pool.release()
    assert reports[0] == Failed(0, "decoder stalled (no progress for 1 s; killed)")
    assert reports[1:] == [Done(1)]             # the video queued behind it went to the fresh worker


def test_a_file_of_another_folder_with_a_stored_id_is_named_not_silently_skipped(tmp_path):
    """IMG_0001.MOV from two camera folders, given one after the other: one id; the second is said to be skipped."""
    first = make_video(tmp_path / "100APPLE" / "IMG_0001.mp4", 20, seed=1)
    second = make_video(tmp_path / "101APPLE" / "IMG_0001.mp4", 20, seed=2)
    run_gcf("extract", *TINY, first, cwd=tmp_path)
    again = run_gcf("extract", *TINY, second, cwd=tmp_path)
    assert "1 skipped (already in the store)" in again.stdout
    assert (f"1 skipped videos are other files than the ones the store holds under their ids (first: {second} is "
            f"id 'IMG_0001', stored from {first})") in again.stderr
    assert "other files" not in run_gcf("extract", *TINY, first, cwd=tmp_path).stderr     # a plain resume
    both = run_gcf("extract", *TINY, first, second, "-o", "both.zarr", cwd=tmp_path, check=False)
    assert both.returncode == 2 and "give the folder holding both" in both.stderr
