"""`gcf extract` without --weights takes the backbone's published checkpoint file from --weights-dir."""

import hashlib

import torch
from conftest import run_gcf

from gcf.extract import build_backbone
from gcf.store import open_store


def test_published_file_in_weights_dir_is_the_default(tmp_path, synth_videos):
    weights_dir = tmp_path / "weights"
    weights_dir.mkdir()
    model = build_backbone("shufflenet", "random", width=0.25, seed=3)
    ckpt = weights_dir / "kinetics_shufflenet_1.0x_G3_RGB_16_best.pth"  # Efficient-3DCNNs' release name and layout
    torch.save({"epoch": 1, "arch": "shufflenet", "state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}},
               ckpt)
    store = tmp_path / "f.zarr"
    run_gcf("extract", synth_videos, "--backbone", "shufflenet", "--option", "width=0.25", "--weights-dir", weights_dir,
            "-o", store, "--quiet")
    meta = open_store(store).meta
    assert meta.weights == hashlib.sha256(ckpt.read_bytes()).hexdigest()

    missing = run_gcf("extract", synth_videos, "--backbone", "resnext101", "--weights-dir", tmp_path / "none",
                      "-o", tmp_path / "g.zarr", check=False)
    assert missing.returncode == 2
    assert "resnext-101-kinetics.pth" in missing.stderr and "--weights random" in missing.stderr
    assert not (tmp_path / "g.zarr").exists()
