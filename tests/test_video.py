import fractions
import re
import shutil

import av
import numpy as np
import pytest

from gcf.errors import GcfError
from gcf.extract.video import VideoError, clip_starts, iter_clips, probe
from gcf.synth import SynthSpec, make_video, pick_codec, write_video

# both decoders: decord (the default for files whose read-ahead fits) and PyAV streaming (long videos)
READERS = pytest.mark.parametrize("limit", [64 << 20, 0], ids=["decord", "stream"])

def pyav_frames(path):
    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


@pytest.fixture(scope="module")
def square(tmp_path_factory):
    """A 112x112 video of 70 frames: no resize needed at size 112, so decoded frames must equal PyAV's exactly."""
    return make_video(tmp_path_factory.mktemp("sq") / "sq.mp4", 70, label=2, classes=4, action=(10, 60), seed=5,
                      spec=SynthSpec(width=112, height=112))


def test_every_clip_of_every_video(synth_videos):
    for path in sorted(synth_videos.rglob("*.mp4")):
        meta = probe(path)
        assert (meta.width, meta.height, meta.fps) == (128, 96, 25.0)
        assert meta.n_frames == len(pyav_frames(path)) and meta.duration == pytest.approx(meta.n_frames / 25)
        clips = list(iter_clips(path))
        assert len(clips) == meta.n_frames // 16
        for i, clip in enumerate(clips):
            assert clip.start_frame == 16 * i
            assert clip.start_s == pytest.approx(16 * i / 25) and clip.end_s == pytest.approx(16 * (i + 1) / 25)
            assert clip.frames.shape == (16, 112, 112, 3) and clip.frames.dtype == np.uint8


@READERS
def test_frames_are_exactly_the_decoded_frames_in_order(square, limit):
    clips = list(iter_clips(square, readahead_limit=limit))
    assert [c.start_frame for c in clips] == [0, 16, 32, 48]
    np.testing.assert_array_equal(np.concatenate([c.frames for c in clips]), pyav_frames(square)[:64])


@READERS
def test_stride_and_window_options(square, limit):
    ref = pyav_frames(square)
    clips = list(iter_clips(square, clip_len=16, stride=8, window=20, readahead_limit=limit))
    assert [c.start_frame for c in clips] == list(clip_starts(70, 16, 8)) == list(range(0, 55, 8))
    for c in clips:
        np.testing.assert_array_equal(c.frames, ref[c.start_frame:c.start_frame + 16])
    gaps = list(iter_clips(square, clip_len=8, stride=20, readahead_limit=limit))
    assert [c.start_frame for c in gaps] == [0, 20, 40, 60] and gaps[-1].end_s == pytest.approx(68 / 25)
    np.testing.assert_array_equal(gaps[2].frames, ref[40:48])


@READERS
def test_frame_step_takes_every_nth_frame(square, limit):
    ref = pyav_frames(square)
    # side by side (default stride clip_len x step), overlapping by a multiple of the step, and a small window
    for stride, window in ((16, 128), (8, 128), (8, 10)):
        clips = list(iter_clips(square, clip_len=4, stride=stride, frame_step=4, window=window, readahead_limit=limit))
        assert [c.start_frame for c in clips] == list(clip_starts(70, 4, stride, 4)) == list(range(0, 55, stride))
        for c in clips:
            np.testing.assert_array_equal(c.frames, ref[c.start_frame:c.start_frame + 16:4])
            assert c.end_s == pytest.approx((c.start_frame + 16) / 25)
    (short,) = iter_clips(square, clip_len=8, frame_step=10, readahead_limit=limit)   # 80 frames > 70: loops
    np.testing.assert_array_equal(short.frames, ref[np.arange(0, 80, 10) % 70])
    assert short.end_s == pytest.approx(70 / 25)


def test_interleaved_overlapping_clips_are_refused(square):
    with pytest.raises(GcfError, match="stride of 6 frames with a frame step of 4.*multiple of the frame step"):
        next(iter_clips(square, clip_len=4, stride=6, frame_step=4))
    assert len(list(iter_clips(square, clip_len=4, stride=18, frame_step=4))) == 4    # no overlap: any stride


@READERS
def test_short_side_resize_inside_decoder_then_centre_crop(tmp_path, limit):
    """A white square at a known place in 128x96 frames lands where 128x96 -> 149x112 -> centre 112 puts it."""
    frame = np.zeros((96, 128, 3), np.uint8)
    frame[30:46, 40:56] = 255                                          # centre (48, 38) in continuous coordinates
    path = tmp_path / "square.mp4"
    write_video(path, [frame] * 20, fps=25)
    (clip,) = list(iter_clips(path, readahead_limit=limit))
    weight = clip.frames.astype(float).mean(axis=(0, 3))
    ys, xs = np.mgrid[0:112, 0:112] + 0.5
    scale, left = 112 / 96, (149 - 112) // 2
    assert (weight * xs).sum() / weight.sum() == pytest.approx(48 * scale - left, abs=0.3)
    assert (weight * ys).sum() / weight.sum() == pytest.approx(38 * scale, abs=0.3)
    assert weight.sum() / 255 == pytest.approx(16 * 16 * scale ** 2, rel=0.05)     # scaled, not cropped away


def test_portrait_and_upscaled_sizes(tmp_path):
    path = make_video(tmp_path / "portrait.mp4", 40, spec=SynthSpec(width=48, height=80))
    assert probe(path).width == 48 and probe(path).height == 80
    clips = list(iter_clips(path, size=64))
    assert len(clips) == 2 and clips[0].frames.shape == (16, 64, 64, 3)


@READERS
def test_video_shorter_than_a_clip_gives_one_loop_padded_clip(tmp_path, limit):
    path = make_video(tmp_path / "short.mp4", 6, label=0, classes=2, action=(0, 6),
                      spec=SynthSpec(width=112, height=112))
    (clip,) = list(iter_clips(path, readahead_limit=limit))
    assert clip.start_frame == 0 and clip.start_s == 0 and clip.end_s == pytest.approx(6 / 25)
    np.testing.assert_array_equal(clip.frames, pyav_frames(path)[np.arange(16) % 6])


def intra_video(path, n=32):
    """n frames of 112x112, every one a keyframe: a damaged packet costs exactly its own frame. Returns the
    (file offset, size) of each frame's packet."""
    if "libx264" not in av.codecs_available:
        pytest.skip("needs PyAV's libx264 encoder")
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width = stream.height = 112
        stream.pix_fmt, stream.options = "yuv420p", {"g": "1", "preset": "veryfast"}
        for i in range(n):
            frame = np.full((112, 112, 3), i * 7 % 256, np.uint8)
            frame[i:i + 20, :20] = 255
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    with av.open(str(path)) as c:
        return [(p.pos, p.size) for p in c.demux(video=0) if p.size]


def zeroed(src, dst, packets):
    """A copy of src with the given (offset, size) packets' bytes zeroed: the decoder rejects them."""
    data = bytearray(src.read_bytes())
    for pos, size in packets:
        data[pos:pos + size] = bytes(size)
    dst.write_bytes(bytes(data))
    return dst


@READERS
def test_a_frame_that_does_not_decode_is_the_one_shown_before_it(tmp_path, limit):
    packets = intra_video(tmp_path / "intra.mp4")
    clean = np.concatenate([c.frames for c in iter_clips(tmp_path / "intra.mp4", readahead_limit=0)])
    for lost, shown in ((10, 9), (0, 1)):              # at the start: the first frame that decodes
        path = zeroed(tmp_path / "intra.mp4", tmp_path / f"lost{lost}.mp4", [packets[lost]])
        clips = list(iter_clips(path, readahead_limit=limit))    # decord gives up on it: PyAV decodes it
        assert [c.start_frame for c in clips] == [0, 16]
        got = np.concatenate([c.frames for c in clips])
        assert np.flatnonzero((got != clean).any(axis=(1, 2, 3))).tolist() == [lost]
        np.testing.assert_array_equal(got[lost], clean[shown])


@READERS
def test_a_video_with_a_quarter_of_its_frames_lost_fails(tmp_path, limit):
    packets = intra_video(tmp_path / "intra.mp4", 64)
    path = zeroed(tmp_path / "intra.mp4", tmp_path / "half.mp4", packets[1::2])
    for clip_len, stride in ((16, 16), (4, 16)):        # frames not asked for count too
        with pytest.raises(VideoError, match="half.mp4: 17 of its 64 frames do not decode"):
            list(iter_clips(path, clip_len=clip_len, stride=stride, readahead_limit=limit))
    few = zeroed(tmp_path / "intra.mp4", tmp_path / "few.mp4", packets[1:30:4])     # 8 of 64: concealed
    assert len(list(iter_clips(few, readahead_limit=limit))) == 4


def test_decord_and_pyav_resize_alike(synth_videos):
    """Both readers scale bilinearly in FFmpeg: a store's features do not depend on which one decoded a video."""
    path = synth_videos / "class_0" / "vid_000.mp4"
    fast, stream = (np.concatenate([c.frames for c in iter_clips(path, readahead_limit=limit)]).astype(int)
                    for limit in (64 << 20, 0))
    assert fast.shape == stream.shape and np.abs(fast - stream).mean() < 0.15      # bicubic: 0.33


def damaged_copies(src, folder):
    data = src.read_bytes()
    (folder / "zero.mp4").write_bytes(b"")
    (folder / "half.mp4").write_bytes(data[:len(data) // 2])
    (folder / "random.mp4").write_bytes(np.random.default_rng(0).bytes(len(data)))
    (folder / "text.mp4").write_text("this is not a video\n" * 50)
    shutil.copy(src, folder / "vanished.mp4")
    (folder / "vanished.mp4").unlink()
    return ["zero", "half", "random", "text", "vanished"]


@READERS
def test_damaged_files_raise_video_error_naming_the_file(synth_videos, tmp_path, limit):
    src = synth_videos / "class_0" / "vid_000.mp4"
    fast = make_video(tmp_path / "fast.mp4", 100, seed=3, faststart=True)   # index first: truncation cuts frames
    fast.with_name("fast_half.mp4").write_bytes(fast.read_bytes()[:fast.stat().st_size // 2])
    names = damaged_copies(src, tmp_path) + ["fast_half"]
    for name in names:
        path = tmp_path / f"{name}.mp4"
        with pytest.raises(VideoError, match=re.escape(str(path))) as e:
            list(iter_clips(path, readahead_limit=limit))
        assert isinstance(e.value, GcfError) and "\n" not in str(e.value)
        with pytest.raises(VideoError, match=re.escape(str(path))):
            probe(path)
    with pytest.raises(VideoError, match="no such file"):
        probe(tmp_path / "vanished.mp4")


@READERS
def test_a_very_wide_video_is_decoded_one_clip_at_a_time(tmp_path, monkeypatch, limit):
    """A 40:1 frame resized to a 112 px short side is 4480 px wide: a window of 128 frames would be 190 MB."""
    from gcf.extract import video
    write_video(tmp_path / "wide.mp4", (np.full((6, 240, 3), 20 * t % 250, np.uint8) for t in range(80)), 25,
                pick_codec())
    reads = []
    for reader in (video._DecordReader, video._StreamReader):
        read = reader.read
        monkeypatch.setattr(reader, "read", lambda self, i, read=read: reads.append(len(i)) or read(self, i))
    clips = list(iter_clips(tmp_path / "wide.mp4", readahead_limit=limit))
    assert len(clips) == 5 and max(reads) == 16 and clips[2].frames.shape == (16, 112, 112, 3)
    levels = [int(c.frames[0].mean()) for c in clips]                 # frame t is grey 20 * t % 250 (~codec)
    assert np.allclose(levels, [0, 70, 140, 210, 30], atol=4), levels


def test_an_mp4_cut_before_or_inside_its_index_says_truncated(tmp_path):
    for faststart in (False, True):                   # moov last, as cameras write it, or first
        data = make_video(tmp_path / "full.mp4", 60, seed=1, faststart=faststart).read_bytes()
        moov = data.index(b"moov") - 4
        cuts = [moov + k for k in (8, 13, 100, 300)] + ([] if faststart else [len(data) // 3])
        for at in cuts:                               # PyAV opens some of them and finds no stream, or no frame
            cut = tmp_path / f"cut{at}.mp4"
            cut.write_bytes(data[:at])
            with pytest.raises(VideoError, match=re.escape(f"{cut}: truncated: its index (the MP4/MOV moov box")):
                probe(cut)
    (tmp_path / "text.mp4").write_text("ftyp is not first\n" * 10)
    with pytest.raises(VideoError, match="cannot open as video"):
        probe(tmp_path / "text.mp4")


def write_tracks(path, sizes, n=40, title=None, codec=None):
    """A file with one video track per (width, height), each frame a flat grey of its track's level."""
    with av.open(str(path), "w") as out:
        if title:
            out.metadata["title"] = title
        streams = []
        for width, height in sizes:
            stream = out.add_stream(codec or pick_codec(), rate=25)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            streams.append(stream)
        for t in range(n):
            for k, stream in enumerate(streams):
                frame = np.full((stream.height, stream.width, 3), 40 + 150 * k, np.uint8)
                for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                    out.mux(packet)
        for stream in streams:
            for packet in stream.encode():
                out.mux(packet)
    return path


@READERS
def test_a_title_that_is_not_utf8_does_not_stop_a_video(tmp_path, limit):
    good = write_tracks(tmp_path / "utf8.mp4", [(128, 96)], title="Caf\u00e9 video")
    latin1 = tmp_path / "latin1.mp4"                      # as older tools write tags: Latin-1 e-acute
    latin1.write_bytes(good.read_bytes().replace("Caf\u00e9 ".encode(), b"Caf\xe9  "))
    assert len(list(iter_clips(latin1, readahead_limit=limit))) == 2


@READERS
def test_the_first_video_track_is_decoded_on_both_readers(tmp_path, limit):
    path = write_tracks(tmp_path / "two.mp4", [(64, 48), (256, 192)])   # decord alone picks the larger one
    (clip, *_) = iter_clips(path, size=48, readahead_limit=limit)
    assert clip.frames.shape == (16, 48, 48, 3) and abs(float(clip.frames.mean()) - 40) < 3


def test_concatenated_ts_segments_keep_their_frame_times(tmp_path):
    """cat a.ts b.ts (HLS, DVR captures): the pts restart at the join; times follow the frames, at the rate."""
    a, b = make_video(tmp_path / "a.ts", 100, seed=1), make_video(tmp_path / "b.ts", 100, seed=2)
    joined = tmp_path / "joined.ts"
    joined.write_bytes(a.read_bytes() + b.read_bytes())
    clips = list(iter_clips(joined))
    assert [c.start_frame for c in clips] == list(range(0, 185, 16))
    assert [c.start_s for c in clips] == pytest.approx([16 * i / 25 for i in range(12)])
    assert probe(joined).duration == pytest.approx(8.0)


def test_a_codec_decord_cannot_open_is_decoded_by_pyav(tmp_path):
    if "libsvtav1" not in av.codecs_available:
        pytest.skip("needs PyAV's AV1 encoder")
    path = write_tracks(tmp_path / "av1.mp4", [(128, 96)], codec="libsvtav1")    # decord 0.6.0 has no AV1
    assert len(list(iter_clips(path))) == 2


def test_frames_a_recovering_decoder_emits_late_are_put_back_in_order(square):
    """After damage a decoder can emit frame 29 after 34 (seen in an open-GOP H.264 MKV): the stream reader holds
    a few frames so each is still placed by its pts rather than dropped."""
    from types import SimpleNamespace

    from gcf.extract.video import _StreamReader, index_video

    index = index_video(square)
    reader = _StreamReader(str(square), 112, 112, 1, index)
    for order in ([0, 1, 2, 5, 3, 6, 4, 7, 8], [*range(29), 30, 31, 32, 33, 34, 29, 35]):    # up to 5 late
        placed = list(reader._positioned(SimpleNamespace(pts=int(index.pts[i])) for i in order))
        assert [position for position, _ in placed] == sorted(order)


@pytest.mark.parametrize("ext", ["mkv", "mp4"])
def test_a_variable_rate_video_with_b_frames_and_long_gaps_keeps_its_frame_times(tmp_path, ext):
    """Screen recorders and motion-triggered cameras: frames seconds apart, reordered (B-frames) around the gaps;
    a frame arriving seconds after its time is not a timestamp restart."""
    if "libx264" not in av.codecs_available:
        pytest.skip("needs libx264 (B-frames)")
    ms = [0, 33, 66, 100, 5100, 5133, 5166] + [12000 + 33 * i for i in range(9)] + [20000 + 33 * i for i in range(16)]
    path = tmp_path / f"gaps.{ext}"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.codec_context.time_base = stream.time_base = fractions.Fraction(1, 1000)
        for i, t in enumerate(ms):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 8 * i, np.uint8), format="rgb24")
            frame.pts, frame.time_base = t, fractions.Fraction(1, 1000)
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    clips = list(iter_clips(path))
    assert [t for c in clips for t in (c.start_s, c.end_s)] == pytest.approx([0.0, 20.0, 20.0, 20.528])
