import json

from conftest import run_gcf


def test_demo_runs_every_stage_and_resumes(tmp_path):
    out = tmp_path / "demo"
    args = ("demo", "--out", out, "--classes", 3, "--per-class", 4)
    first = run_gcf(*args)
    assert "RANDOM weights" in first.stderr
    table = json.loads((out / "run-gcf" / "eval.json").read_text())
    assert {"C-Clip", "D-Clips", "gcf"} <= set(table)
    assert (out / "features.zarr").is_dir() and (out / "run-gcf" / "confusion.png").is_file()
    again = run_gcf(*args)  # videos and features are kept; only the head is retrained
    assert "already there, kept" in again.stdout
    assert "0 extracted" in again.stdout
