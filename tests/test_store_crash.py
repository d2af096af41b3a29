"""Crash safety and concurrent writers: real writer processes, killed with SIGKILL or run side by side."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import run_gcf
from store_child import META, video

from gcf.store import StoreWriter, commitlog, open_store

CHILD = Path(__file__).with_name("store_child.py")
N = 60  # videos per run


def start_child(store, lo=0, hi=N, writer="w", chunk_rows=4, die=None) -> subprocess.Popen:
    env = dict(os.environ, STORE_CHILD_DIE=die or "")
    return subprocess.Popen([sys.executable, str(CHILD), str(store), str(lo), str(hi), writer, str(chunk_rows)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def run_child(store, kill_after: int | None = None, **kw) -> tuple[list[str], int]:
    """Run a writer; with kill_after=k, SIGKILL it as soon as it reports its k-th added video."""
    proc = start_child(store, **kw)
    lines = []
    for line in proc.stdout:
        lines.append(line.split())
        if kill_after is not None and sum(x[0] == "added" for x in lines) >= kill_after:
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert proc.returncode in (0, -signal.SIGKILL), proc.stderr.read()
    return lines, proc.returncode


def check_store(path) -> set[str]:
    """Every committed video is complete and exact, none twice; returns the ids present."""
    r = open_store(path)
    ids = r.videos + list(r.failed)
    assert len(ids) == len(set(ids))
    for vid in ids:
        info, x = video(int(vid[1:]))
        assert r.info(vid) == info
        if x is None:
            assert r.failed[vid] == f"cannot decode {info.source}"
            continue
        np.testing.assert_array_equal(r.features(vid), x)
        np.testing.assert_array_equal(r.logits(vid), x[:, :3] * 2)
        np.testing.assert_array_equal(r.clips(vid)["start_frame"], np.arange(len(x)) * 16)
    table = r.load()
    assert table.offsets[-1] == sum(r.n_clips(v) for v in r.videos)
    return set(ids)


def assert_resumes(path, present: set[str]) -> None:
    """A full rerun skips exactly what is there, adds the rest, and the store then holds all N videos."""
    lines, rc = run_child(path)
    assert rc == 0 and lines[0] == ["skipped", str(len(present))]
    assert sum(x[0] == "added" for x in lines) == N - len(present)
    assert check_store(path) == {f"v{i:04d}" for i in range(N)}
    assert run_gcf("store", "verify", path).returncode == 0


@pytest.mark.parametrize("suffix, kills", [(".zarr", [0, 3, 11, 26]), (".h5", [2, 17])])
def test_sigkill_at_several_instants_then_resume(tmp_path, suffix, kills):
    path = tmp_path / f"s{suffix}"
    present: set[str] = set()
    killed = 0
    for k in kills:
        lines, rc = run_child(path, kill_after=k)
        killed += rc == -signal.SIGKILL
        assert lines[0] == ["skipped", str(len(present))]   # each run resumes where the last one stopped
        now = check_store(path)
        assert present <= now
        present = now
    assert killed
    assert len(present) < N
    assert_resumes(path, present)


@pytest.mark.parametrize("how", ["commit", "torn"])
def test_kill_between_data_and_commit(tmp_path, how):
    path = tmp_path / "s.zarr"
    lines, rc = run_child(path, die=f"{how}:3")
    assert rc == -signal.SIGKILL
    present = check_store(path)
    assert 0 < len(present) < N    # two batches committed, the third one's rows are on disk but not committed
    verify = run_gcf("store", "verify", path)
    assert "uncommitted rows" in verify.stdout
    if how == "torn":
        assert "bytes after the last commit record" in verify.stdout
    assert_resumes(path, present)


def test_torn_and_garbage_log_tails_are_ignored(tmp_path):
    path = tmp_path / "s.zarr"
    run_child(path, hi=10)
    (log,) = path.glob("parts/*/commits.log")
    before = check_store(path)
    good = log.read_bytes()
    bad_crc = bytearray(commitlog.encode(b"payload"))
    bad_crc[-1] ^= 1
    for tail in (commitlog.encode(b"x" * 50)[:20], b"\0" * 64, bytes(bad_crc)):
        log.write_bytes(good + tail)
        assert check_store(path) == before
        assert run_gcf("store", "verify", path).returncode == 0


def test_h5_merge_leftovers_are_ignored_and_cleaned(tmp_path):
    path, saved = tmp_path / "s.h5", tmp_path / "saved"
    saved.mkdir()
    w = StoreWriter(path, META, chunk_rows=4)
    for i in range(20):
        info, x = video(i)
        if x is not None:
            w.add(info, x, np.arange(len(x)) * 16, np.zeros((len(x), 2)), x[:, :3] * 2)
    w.flush()
    batches = sorted((tmp_path / "s.h5.parts").glob("*.h5"))
    assert len(batches) > 1
    for b in batches:
        shutil.copy(b, saved / b.name)
    w.close()                                    # merges the batches into one file and deletes them
    (merged,) = (tmp_path / "s.h5.parts").glob("*.h5")
    for b in batches:                            # as if the writer died after the merge, before deleting
        shutil.copy(saved / b.name, b)
    present = {f"v{i:04d}" for i in range(20) if i % 7 != 6}
    r = open_store(path)
    assert set(r.videos) == present and len(r.parts) == 1 and len(r.load()) == len(present)
    assert "already merged" in run_gcf("store", "verify", path).stdout
    StoreWriter(path, META).close()              # the next writer deletes them
    assert [p.name for p in (tmp_path / "s.h5.parts").glob("*.h5")] == [merged.name]


@pytest.mark.parametrize("suffix", [".zarr", ".h5"])
def test_two_concurrent_writers(tmp_path, suffix):
    path = tmp_path / f"s{suffix}"   # both processes also race to create the store
    a = start_child(path, lo=0, hi=40, writer="a", chunk_rows=3)
    b = start_child(path, lo=20, hi=N, writer="b", chunk_rows=3)
    for p in (a, b):
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    assert check_store(path) == {f"v{i:04d}" for i in range(N)}
    assert len(open_store(path).parts) == 2
    assert run_gcf("store", "verify", path).returncode == 0
