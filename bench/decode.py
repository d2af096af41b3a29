"""Decoding benchmark: (a) resize inside decord vs decode full size then resize; (b) peak memory vs video length.

    python bench/decode.py                  # writes its synthetic videos to a temp dir (the 1-hour one takes ~1 min)
    python bench/decode.py --workdir /tmp/gcf-bench --long-minutes 60

(a) decode-only clips/s of `iter_clips` (short side resized by decord's scaler, then centre crop) against decoding
    the same windows at full size with decord and resizing with torch (uint8 bilinear antialiased, its fastest
    path; one thread like the decoder), on UCF101-sized (320x240) and Kinetics-sized (640x360) videos; prints the gain.
(b) peak RSS (VmHWM) of a fresh process that runs iter_clips over a 10-second, a 1-minute and a 1-hour video
    (128x96); prints the ratios (memory must not grow with length, target about 1), and the 1-hour video forced
    through decord alone, whose read-ahead is why long files go through the streaming reader.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import decord
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gcf.extract.video import clip_starts, iter_clips, probe, resized_size  # noqa: E402
from gcf.synth import SynthSpec, make_video  # noqa: E402


def decode_resize_after(path: Path, size: int = 112, clip_len: int = 16, window: int = 128) -> int:
    """The alternative to iter_clips: full-size decode window by window, torch resize + centre crop; returns clips."""
    meta = probe(path)
    width, height = resized_size(meta.width, meta.height, size)
    top, left = (height - size) // 2, (width - size) // 2
    reader = decord.VideoReader(str(path), num_threads=1)
    starts = list(clip_starts(meta.n_frames, clip_len, clip_len))
    n = 0
    for i in range(0, len(starts), window // clip_len):
        group = starts[i:i + window // clip_len]
        frames = torch.from_numpy(reader.get_batch(list(range(group[0], group[-1] + clip_len))).asnumpy())
        x = torch.nn.functional.interpolate(frames.permute(0, 3, 1, 2), size=(height, width), mode="bilinear",
                                            antialias=True)          # uint8 in, uint8 out: torch's fastest path
        clips = x[:, :, top:top + size, left:left + size].permute(0, 2, 3, 1)
        clips = clips.reshape(len(group), clip_len, size, size, 3)
        n += len(clips)
    return n


def rate(fn, paths: list[Path], repeats: int = 3) -> tuple[float, float]:
    """Best clips per wall second and per CPU second (all threads) of `fn(path) -> clips` over all paths.

    CPU seconds are the steadier measure on a shared machine; decord's two threads count in both.
    """
    wall = cpu = 0.0
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        clips = sum(fn(p) for p in paths)
        wall = max(wall, clips / (time.perf_counter() - t))
        cpu = max(cpu, clips / (time.process_time() - c))
    return wall, cpu


def peak_rss_mb(path: Path, readahead_limit: int = 64 << 20) -> tuple[float, int]:
    """(peak RSS in MiB, clips) of a fresh process iterating over every clip of `path`.

    Reads VmHWM from /proc: getrusage's ru_maxrss survives exec on Linux, so in a child it would report this
    (torch-sized) parent's RSS at fork time instead of the child's own peak.
    """
    code = ("import re, sys; from gcf.extract.video import iter_clips; "
            "n = sum(1 for _ in iter_clips(sys.argv[1], readahead_limit=int(sys.argv[2]))); "
            "print(int(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1)) / 1024, n)")
    out = subprocess.run([sys.executable, "-c", code, str(path), str(readahead_limit)], cwd=REPO, check=True,
                         capture_output=True, text=True).stdout.split()
    return float(out[0]), int(out[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, help="where to write (and reuse) the test videos; default: a temp dir")
    parser.add_argument("--long-minutes", type=float, default=60.0)
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each speed-test video")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        work = args.workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)

        def video(name: str, seconds: float, width: int, height: int) -> Path:
            path = work / f"{name}_{width}x{height}_{seconds:g}s.mp4"
            if not path.exists():
                t = time.perf_counter()
                make_video(path, int(seconds * 25), label=0, classes=2, action=(0, int(seconds * 25) // 4),
                           seed=1, spec=SynthSpec(width=width, height=height))
                print(f"  wrote {path.name} in {time.perf_counter() - t:.1f}s")
            return path

        print("(a) decode-only clips/s, 16-frame clips cropped to 112 (single-threaded decode and resize)")
        for width, height in ((320, 240), (640, 360)):
            paths = [video(f"speed{i}", args.seconds, width, height) for i in range(2)]
            inside = rate(lambda p: sum(1 for _ in iter_clips(p)), paths)
            after = rate(decode_resize_after, paths)
            stream = rate(lambda p: sum(1 for _ in iter_clips(p, readahead_limit=0)), paths)
            print(f"  {width}x{height}: resize in decord {inside[0]:6.1f} clips/s ({inside[1]:6.1f}/CPU-s) | "
                  f"full-size decode + torch resize {after[0]:6.1f} clips/s ({after[1]:6.1f}/CPU-s) | "
                  f"gain {inside[0] / after[0]:.2f}x wall, {inside[1] / after[1]:.2f}x CPU | "
                  f"PyAV streaming path {stream[0]:6.1f} clips/s ({stream[1]:6.1f}/CPU-s)")

        print("(b) peak RSS of a fresh process running iter_clips over a whole video (128x96)")
        short, minute = video("short", 10, 128, 96), video("minute", 60, 128, 96)
        long = video("long", args.long_minutes * 60, 128, 96)
        (rss_short, n_short), (rss_minute, _), (rss_long, n_long) = map(peak_rss_mb, (short, minute, long))
        rss_decord, _ = peak_rss_mb(long, readahead_limit=1 << 62)
        print(f"  10 s ({n_short} clips): {rss_short:.1f} MiB | 1 min: {rss_minute:.1f} MiB | "
              f"{args.long_minutes:g} min ({n_long} clips): {rss_long:.1f} MiB")
        print(f"  ratio {args.long_minutes:g} min / 10 s: {rss_long / rss_short:.3f} (target about 1); "
              f"{args.long_minutes:g} min / 1 min: {rss_long / rss_minute:.3f}")
        print(f"  the same {args.long_minutes:g} min through decord alone (its read-ahead keeps every packet): "
              f"{rss_decord:.1f} MiB, {rss_decord / rss_short:.2f}x the 10 s video")


if __name__ == "__main__":
    main()
