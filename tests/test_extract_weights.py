"""`gcf extract` without --weights takes the backbone's published checkpoint file from --weights-dir."""

import hashlib

import pytest
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
    done = run_gcf("extract", synth_videos, "--backbone", "shufflenet", "--option", "width=0.25", "--weights-dir",
                   weights_dir, "-o", store, "--quiet")
    meta = open_store(store).meta
    assert meta.weights == hashlib.sha256(ckpt.read_bytes()).hexdigest() and "were trained on" not in done.stderr
    other = run_gcf("extract", synth_videos / "class_0", "--backbone", "shufflenet", "--option", "width=0.25",
                    "--weights", ckpt, "--size", "64", "-o", tmp_path / "s64.zarr", "--quiet")
    assert "note: shufflenet's weights were trained on 16-frame clips of 112 px; these clips are 16 frames of 64 " \
           "px" in other.stderr

    missing = run_gcf("extract", synth_videos, "--backbone", "resnext101", "--weights-dir", tmp_path / "none",
                      "-o", tmp_path / "g.zarr", check=False)
    assert missing.returncode == 2
    assert "resnext-101-kinetics.pth" in missing.stderr and "--weights random" in missing.stderr
    assert not (tmp_path / "g.zarr").exists()


def test_a_backbone_only_file_extracts_descriptors_and_refuses_logits(tmp_path, synth_videos):
    model = build_backbone("ircsn_r50", "random", width=0.125, seed=3)
    ckpt = tmp_path / "ircsn_ig65m_pretrained_r50.pth"        # MMAction2's backbone.pretrained: no prefix, no head
    torch.save({"state_dict": {k.removeprefix("backbone."): v for k, v in model.state_dict().items()
                               if not k.startswith("cls_head.")}}, ckpt)
    args = ("extract", synth_videos / "class_0", "--backbone", "ircsn_r50", "--option", "width=0.125",
            "--clip-len", "8", "--size", "64", "--weights", ckpt, "--quiet")
    refused = run_gcf(*args, "--logits", "-o", tmp_path / "l.zarr", check=False)
    assert refused.returncode == 2 and "a backbone-only file (no classifier) gives no clip logits" in refused.stderr
    done = run_gcf(*args, "-o", tmp_path / "f.zarr")
    assert f"{ckpt}: a backbone-only file (no classifier): descriptors only" in done.stderr
    store = open_store(tmp_path / "f.zarr")
    assert store.videos and store.meta.feature_dim == 256 and store.meta.extra["num_classes"] == 0


@pytest.mark.parametrize("name", ["timesformer", "mvit_v2_s"])
def test_transformers_extract(tmp_path, synth_videos, name):
    """The runner makes 3D convolutions channels-last; TimeSformer's per-frame Conv2d must be left alone, and MViT's
    depthwise pooling convolutions take token grids permuted into maps."""
    run_gcf("extract", synth_videos / "class_0", "--backbone", name, "--weights", "random", "--option",
            "width=0.125", "--clip-len", "4", "--size", "32", "-o", tmp_path / "t.zarr", "--quiet")
    store = open_store(tmp_path / "t.zarr")
    assert store.videos and store.meta.feature_dim == 96 and store.meta.backbone == name
