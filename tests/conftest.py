"""Shared test helpers: run the real `gcf` CLI in a subprocess, as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def run_gcf(*args: str, cwd: str | os.PathLike | None = None, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run `python -m gcf ARGS` with this checkout on the path; returns the completed process."""
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-m", "gcf", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"gcf {' '.join(map(str, args))} exited {proc.returncode}\n"
                             f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


@pytest.fixture
def gcf_cli():
    return run_gcf


@pytest.fixture(scope="session")
def synth_videos(tmp_path_factory) -> Path:
    """A small `gcf synth` dataset (3 classes x 4 videos, 4-12 clips each, 128x96, 25 fps) with labels.csv and
    segments.csv; ids `class_K/vid_NNN`, splits 2 train / 1 val / 1 test per class. Read-only: copy to modify."""
    from gcf.synth import make_dataset

    out = tmp_path_factory.mktemp("synth") / "videos"
    make_dataset(out, classes=3, per_class=4, seed=0)
    return out
