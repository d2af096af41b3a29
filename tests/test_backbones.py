"""Backbone registry: exact layouts (parameter counts), checkpoint formats, normalisation, descriptors."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import logging
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from gcf.errors import GcfError
from gcf.extract import backbone_spec, build_backbone, list_backbones
from gcf.extract.backbones import NORMS, REGISTRY, weights_identity

# tiny variants of every family; clips() is an input all accept (ShuffleNet needs 16 frames and 48 pixels)
SMALL = {"resnet18": {"width": 0.125}, "resnet34": {"width": 0.125}, "resnet50": {"width": 0.125},
         "resnet101": {"width": 0.125}, "r2plus1d18": {"width": 0.125}, "r2plus1d34": {"width": 0.125},
         "r2plus1d50": {"width": 0.125}, "r2plus1d101": {"width": 0.125}, "resnext101": {"width": 0.25},
         "mobilenet": {"width": 0.25}, "mobilenetv2": {"width": 0.2}, "shufflenet": {"width": 0.25, "groups": 3},
         "shufflenetv2": {"width": 0.25}, "r2plus1d34_ig65m32": {"width": 0.125},
         "r2plus1d34_ig65m8": {"width": 0.125}, "i3d": {}, "s3d": {}, "slow_r50": {"width": 0.125},
         "slow_r101": {"width": 0.125}, "x3d_xs": {}, "x3d_s": {}, "x3d_m": {}, "x3d_l": {},
         "slowfast_r50": {"width": 0.125}, "slowfast_r50_4x16": {"width": 0.125}, "slowfast_r101": {"width": 0.125},
         "i3d_r50": {"width": 0.125}, "i3d_r50_32x2": {"width": 0.125}, "r2plus1d_r34_8x8": {"width": 0.125},
         "r2plus1d_r34_32x2": {"width": 0.125}, "ircsn_r152": {"width": 0.125}, "ipcsn_r152": {"width": 0.125},
         "ircsn_r50": {"width": 0.125}, "csn_r101": {"width": 0.125}, "c3d": {"width": 0.125},
         "i3d_r50_nl_dot": {"width": 0.125}, "i3d_r50_nl_embedded": {"width": 0.125},
         "i3d_r50_nl_gaussian": {"width": 0.125}, "swin_t": {"width": 0.125}, "swin_s": {"width": 0.125},
         "swin_b": {"width": 0.125}, "swin_l": {"width": 0.125}, "videomae_s": {"width": 0.25},
         "videomae_b": {"width": 0.125}, "videomae_l": {"width": 0.125}, "videomae_h": {"width": 0.125},
         "videomae_g": {"width": 0.125},
         "c2d_r50": {"width": 0.125}, "timesformer": {"width": 0.125}, "timesformer_hr": {"width": 0.125},
         "timesformer_l": {"width": 0.125}, **{f"mvit_{v}": {"width": 0.125} for v in ("v2_s", "v2_b", "v2_l",
                                                                                       "b_16x4", "b_32x3", "b24_32x3")}}
FAMILIES = ["resnet18", "r2plus1d18", "resnext101", "mobilenet", "mobilenetv2", "shufflenet", "shufflenetv2",
            "r2plus1d34_ig65m32", "i3d", "s3d", "slow_r50", "x3d_m", "slowfast_r50", "i3d_r50",
            "r2plus1d_r34_8x8", "ircsn_r50"]


def clips(n: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, 16, 64, 64, generator=torch.Generator().manual_seed(seed))


def random_model(name: str, seed: int = 1, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return build_backbone(name, "random", seed=seed, **{**SMALL[name], **options})


@functools.cache
def source_model(name: str):
    """One random model per family to write checkpoints from (tests must not change it)."""
    return random_model(name, seed=1)


def frames_clips(spec, n: int = 2) -> torch.Tensor:
    """Noise frames prepared as the spec's weights expect."""
    frames = torch.randint(0, 256, (n, 16, 64, 64, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    return spec.normalize(frames)


def count_params(name: str, **options) -> int:
    with torch.device("meta"):
        model = REGISTRY[name].build(**options)
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name, options, expected", [
    ("mobilenetv2", {"width": 1.0}, 3_122_648),  # the paper's 3D-MobileNet, 3.12M
    ("shufflenetv2", {"width": 2.0}, 6_639_816),  # the paper's 3D-ShuffleNet, 6.64M
    ("resnext101", {}, 48_750_616),
    ("r2plus1d50", {}, 47_445_182),  # the closest R(2+1)D to the paper's 50.91M; none is within 1%
    ("r2plus1d34_ig65m32", {}, 63_799_775),  # ig65m-pytorch's r2plus1d_34 on torchvision's VideoResNet
    ("i3d", {}, 12_902_264),  # piergiaj/pytorch-i3d's InceptionI3d (12,697,264 with its 400 logits)
    ("s3d", {}, 8_525_048),  # kylemin/S3D's S3D (8,320,048 with 400)
    ("slow_r50", {}, 32_863_896),  # PyTorchVideo's slow_r50: 32,454,096 (32.45M) with its 400 classes
    ("slow_r101", {}, 60_768_920),  # MMAction2's slowonly_r101 (60,359,120 with 400)
    ("i3d_r50", {}, 28_453_272),  # I3D R50 of all three repositories: 28,043,472 with 400
    ("c2d_r50", {}, 24_327_632 + 200 * 2049),  # PyTorchVideo's c2d_r50: 24,327,632 with 400
    ("r2plus1d_r34_8x8", {}, 63_759_281 - 400 * 513 + 600 * 513),  # MMAction2's r2plus1d_r34: 63,759,281 with 400
    ("ircsn_r152", {}, 29_703_568 + 200 * 2049),  # MMAction2's and VMZ's ir-CSN-152: 29,703,568 (29.70M) with 400
    ("ipcsn_r152", {}, 33_016_592 + 200 * 2049),  # ip-CSN-152: 33.02M with 400
    ("csn_r101", {}, 22_213_776 + 200 * 2049),    # PyTorchVideo's csn_r101: 22.21M with 400
    ("videomae_b", {}, 86_534_800 + 200 * 769),
    ("videomae_g", {}, 1_012_456_152),  # VideoMAE V2's ViT-g/14 as OpenGVLab/VideoMAEv2 builds it (1.0B)
    ("timesformer", {}, 121_566_352 + 200 * 769),  # TimeSformer: 121.4M (its paper), as its reference code builds it  # VideoMAE ViT-B (87M), as its reference code builds it
    ("mvit_v2_s", {}, 34_537_744 + 200 * 769),    # PySlowFast 287ec00's MViT from its MVITv2_S_16x4 config (34.5M)
    ("mvit_v2_b", {}, 51_230_128 + 200 * 769),    # MVITv2_B_32x3 (51.2M)
    ("mvit_v2_l", {}, 213_390_112 + 200 * 1153),  # MVITv2_L_40x3_test at 312 px
    ("mvit_b_16x4", {}, 36_610_672 + 200 * 769),  # MViT v1 B (MVIT_B_16x4_CONV; its paper: 36.6M)
    ("mvit_b_32x3", {}, 36_611_440 + 200 * 769),  # PyTorchVideo f3142bb's mvit_base_32x3 (v1 B, 32 frames)
    ("mvit_b24_32x3", {}, 53_269_080),            # MVIT_B_32x3_CONV as PySlowFast reads it: DEPTH 24 (its last)
    ("swin_t", {}, 28_158_070 + 200 * 769),     # MMAction2's Video Swin-T: 28.2M with 400 (metafile), -B 88.0M
    ("swin_b", {}, 88_048_984 + 200 * 1025),
    ("i3d_r50_nl_dot", {}, 35_397_840 + 200 * 2049),       # MMAction2's I3D NL dot-product/embedded: 35,397,840
    ("i3d_r50_nl_gaussian", {}, 31_723_728 + 200 * 2049),  # and Gaussian (no theta/phi): 31,723,728, with 400
    ("c3d", {}, 78_409_573 - 101 * 4097 + 600 * 4097),  # MMAction2's C3D metafile: 78,409,573 with UCF-101's 101
    ("x3d_m", {}, 4_204_122),  # PySlowFast's X3D-M: 3,794,322 with 400 (3.8M; PyTorchVideo's 48 fewer, no res2 BN)
    ("x3d_l", {}, 6_563_232),  # X3D-L: 6,153,432 with 400 (6.2M)
])
def test_parameter_counts_equal_the_reference_repositories(name, options, expected):
    assert count_params(name, num_classes=600, **options) == expected


def test_resnext101_with_400_classes_has_the_papers_48_34m_parameters():
    assert count_params("resnext101", num_classes=400) == 48_340_816


def save_published(model, path, style: str, arch: str) -> None:
    """Write `model` the way one of the public repositories does."""
    state = model.state_dict()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9).state_dict()
    if style == "dataparallel":  # CVPR2018 branch, Efficient-3DCNNs: model.state_dict() of nn.DataParallel
        torch.save({"epoch": 10, "arch": arch, "state_dict": {f"module.{k}": v for k, v in state.items()},
                    "optimizer": optimizer}, path, _use_new_zipfile_serialization=False)  # as PyTorch < 1.6 did
    elif style == "master":  # 3D-ResNets-PyTorch master: model.module.state_dict()
        scheduler = {"milestones": {50: 1}, "last_epoch": 10, "gamma": 0.1}
        torch.save({"epoch": 10, "arch": arch, "state_dict": state, "optimizer": optimizer,
                    "scheduler": scheduler}, path)
    else:
        torch.save(state, path)


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("style", ["dataparallel", "master", "plain"])
def test_checkpoint_round_trip_gives_identical_outputs(tmp_path, name, style):
    source = source_model(name)
    path = tmp_path / "weights.pth"
    save_published(source, path, style, arch="resnext-101")
    loaded = build_backbone(name, path, seed=2, **SMALL[name])
    x = clips()
    with torch.no_grad():
        assert torch.equal(loaded(x), source(x))
        assert torch.equal(loaded.descriptor(x), source.descriptor(x))
    assert loaded.spec.weights == hashlib.sha256(path.read_bytes()).hexdigest()
    assert loaded.spec.seed is None and not loaded.training


@pytest.mark.parametrize("style, arch, norm", [
    ("master", "resnet-18", "kinetics"),
    ("dataparallel", "resnet-18", "activitynet"),  # the CVPR2018 branch names archs "resnet-18"
    ("dataparallel", "resnet", "activitynet-bgr"),  # Efficient-3DCNNs names them "resnet"
    ("plain", None, "kinetics"),  # no format to go by: the registry entry's convention
])
def test_input_convention_follows_the_checkpoints_repository(tmp_path, style, arch, norm):
    path = tmp_path / "w.pth"
    save_published(source_model("resnet18"), path, style, arch)
    assert build_backbone("resnet18", path, **SMALL["resnet18"]).spec.norm.name == norm
    assert build_backbone("resnet18", path, norm="imagenet", **SMALL["resnet18"]).spec.norm.name == "imagenet"


def test_a_2017_checkpoint_with_its_prefix_stripped_keeps_its_convention(tmp_path):
    state = {k: v for k, v in source_model("resnet18").state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save({"arch": "resnet-18", "state_dict": state}, tmp_path / "w.pth")   # before PyTorch 0.4.1: no counters
    assert build_backbone("resnet18", tmp_path / "w.pth", **SMALL["resnet18"]).spec.norm.name == "activitynet"


@pytest.mark.parametrize("name", ["resnet18", "mobilenetv2"])
def test_num_classes_is_read_from_the_checkpoint(tmp_path, name):
    path = tmp_path / "ucf101.pth"
    torch.save(random_model(name, num_classes=101).state_dict(), path)
    model = build_backbone(name, path, **SMALL[name])
    assert model.spec.num_classes == 101
    with torch.no_grad():
        assert model(clips()).shape == (2, 101)


def test_mismatch_lists_missing_unexpected_keys_and_shape_conflicts(tmp_path):
    path = tmp_path / "r3d.pth"
    torch.save({"arch": "resnet-18", "state_dict": source_model("resnet18").state_dict()}, path)
    with pytest.raises(GcfError) as e:
        build_backbone("r2plus1d18", path, **SMALL["r2plus1d18"])
    message = str(e.value)
    assert str(path) in message and "\n" not in message
    assert "missing keys: conv1_s.weight" in message and "unexpected keys: conv1.weight" in message
    assert "more)" in message  # long lists are cut
    conflict = r"shape conflicts: conv1.weight \(8, 3, 7, 7, 7\) in file vs \(16, 3, 7, 7, 7\)"
    with pytest.raises(GcfError, match=conflict):
        build_backbone("resnet18", path, width=0.25)
    with pytest.raises(GcfError, match="shape conflicts: fc.weight"):
        build_backbone("resnet18", path, num_classes=400, **SMALL["resnet18"])


def test_vmz_r2plus1d_has_torchvision_names_and_caffe2_widths():
    """ig65m-pytorch builds torchvision's VideoResNet, then widens the second (2+1)D conv of layers 2-4's first
    block to 288/576/1152 middle channels and sets BatchNorm eps 1e-3 (checked against torchvision 0.29.1: same
    keys, identical outputs; see docs/backbones.md)."""
    with torch.device("meta"):
        model = REGISTRY["r2plus1d34_ig65m32"].build(num_classes=400)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes["stem.0.weight"] == (45, 3, 1, 7, 7) and shapes["stem.3.weight"] == (64, 45, 3, 1, 1)
    assert shapes["layer2.0.conv1.0.0.weight"] == (230, 64, 1, 3, 3)
    for layer, mid, c in ((2, 288, 128), (3, 576, 256), (4, 1152, 512)):
        assert shapes[f"layer{layer}.0.conv2.0.0.weight"] == (mid, c, 1, 3, 3)
        assert shapes[f"layer{layer}.0.conv2.0.3.weight"] == (c, mid, 3, 1, 1)
    assert shapes["layer4.0.downsample.0.weight"] == (512, 256, 1, 1, 1) and shapes["fc.weight"] == (400, 512)
    assert {m.eps for m in model.modules() if isinstance(m, torch.nn.BatchNorm3d)} == {1e-3}


def test_i3d_has_the_ports_names_and_pads_like_tensorflow_same():
    with torch.device("meta"):
        model = REGISTRY["i3d"].build(num_classes=400)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes["Conv3d_1a_7x7.conv3d.weight"] == (64, 3, 7, 7, 7) and "Conv3d_1a_7x7.bn.running_var" in shapes
    assert shapes["Mixed_4f.b3b.conv3d.weight"] == (128, 528, 1, 1, 1) and shapes["Mixed_5c.b1b.bn.weight"] == (384,)
    assert shapes["logits.conv3d.weight"] == (400, 1024, 1, 1, 1) and shapes["logits.conv3d.bias"] == (400,)
    assert {m.eps for m in model.modules() if isinstance(m, torch.nn.BatchNorm3d)} == {1e-3}
    from gcf.extract.backbones.i3d import pad_same
    for size in range(5, 12):                     # SAME: ceil(size / stride) outputs, the extra pad at the end
        x = torch.zeros(1, 1, size, size, size)
        out = torch.nn.functional.max_pool3d(pad_same(x, (3, 3, 3), (2, 2, 2)), 3, 2)
        assert out.shape[2:] == ((size + 1) // 2,) * 3
    x = torch.arange(6.0).view(1, 1, 1, 1, 6)
    assert pad_same(x, (1, 1, 2), (1, 1, 2)).shape[-1] == 6                     # even size, stride 2: no pad
    assert pad_same(x, (1, 1, 3), (1, 1, 2)).flatten().tolist() == [0, 1, 2, 3, 4, 5, 0]   # pad 1, at the end


def test_s3d_has_the_ports_names():
    with torch.device("meta"):
        model = REGISTRY["s3d"].build(num_classes=400)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes["base.0.conv_s.weight"] == (64, 3, 1, 7, 7) and shapes["base.0.conv_t.weight"] == (64, 64, 7, 1, 1)
    assert shapes["base.2.conv.weight"] == (64, 64, 1, 1, 1) and shapes["base.3.bn_t.running_mean"] == (192,)
    assert shapes["base.5.branch1.1.conv_s.weight"] == (128, 96, 1, 3, 3)
    assert shapes["base.15.branch3.1.conv.weight"] == (128, 832, 1, 1, 1)
    assert shapes["fc.0.weight"] == (400, 1024, 1, 1, 1) and shapes["fc.0.bias"] == (400,)


def test_slow_has_mmaction2s_names():
    with torch.device("meta"):
        model = REGISTRY["slow_r50"].build(num_classes=400)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes["backbone.conv1.conv.weight"] == (64, 3, 1, 7, 7) and "backbone.conv1.bn.running_var" in shapes
    assert shapes["backbone.layer1.0.downsample.conv.weight"] == (256, 64, 1, 1, 1)
    assert shapes["backbone.layer2.0.conv1.conv.weight"] == (128, 256, 1, 1, 1)     # res3: spatial only
    assert shapes["backbone.layer3.0.conv1.conv.weight"] == (256, 512, 3, 1, 1)     # res4, res5: 3x1x1 first
    assert shapes["backbone.layer4.2.conv2.conv.weight"] == (512, 512, 1, 3, 3)
    assert shapes["cls_head.fc_cls.weight"] == (400, 2048) and len(shapes) == 320
    with torch.no_grad():                           # no temporal stride: 8 frames in, 8 steps out; space / 32
        assert model.feature_map(torch.empty(1, 3, 8, 224, 224, device="meta")).shape == (1, 2048, 8, 7, 7)


def _pytorchvideo_key(key: str) -> str:
    """Our (MMAction2) name of a Slow R50 tensor -> PyTorchVideo's (create_resnet: blocks.0 stem, 1-4 stages, 5 head)."""
    key = key.replace("backbone.conv1.conv.", "blocks.0.conv.").replace("backbone.conv1.bn.", "blocks.0.norm.")
    key = key.replace("cls_head.fc_cls.", "blocks.5.proj.")
    parts = {"downsample.conv": "branch1_conv", "downsample.bn": "branch1_norm", "conv1.conv": "branch2.conv_a",
             "conv1.bn": "branch2.norm_a", "conv2.conv": "branch2.conv_b", "conv2.bn": "branch2.norm_b",
             "conv3.conv": "branch2.conv_c", "conv3.bn": "branch2.norm_c"}
    for ours, theirs in parts.items():
        key = re.sub(rf"^backbone\.layer(\d)\.(\d+)\.{ours}\.", lambda m: f"blocks.{m[1]}.res_blocks.{m[2]}.{theirs}.", key)
    return key


def _pyslowfast_key(key: str) -> str:
    """Our name -> PySlowFast's ResNet (s1.pathway0_stem, s2-s5.pathway0_resN, head.projection)."""
    key = key.replace("backbone.conv1.", "s1.pathway0_stem.")
    key = key.replace("cls_head.fc_cls.", "head.projection.")
    parts = {"downsample.conv": "branch1", "downsample.bn": "branch1_bn", "conv1.conv": "branch2.a",
             "conv1.bn": "branch2.a_bn", "conv2.conv": "branch2.b", "conv2.bn": "branch2.b_bn",
             "conv3.conv": "branch2.c", "conv3.bn": "branch2.c_bn"}
    for ours, theirs in parts.items():
        key = re.sub(rf"^backbone\.layer(\d)\.(\d+)\.{ours}\.",
                     lambda m: f"s{int(m[1]) + 1}.pathway0_res{m[2]}.{theirs}.", key)
    return key


@pytest.mark.parametrize("layout, norm", [("mmaction2", "imagenet"), ("pytorchvideo", "slowfast"),
                                          ("pyslowfast", "slowfast")])
def test_slow_loads_mmaction2_pytorchvideo_and_pyslowfast_files(tmp_path, layout, norm):
    source = source_model("slow_r50")
    state = source.state_dict()
    path = tmp_path / "slow.pth"
    if layout == "mmaction2":
        torch.save({"meta": {"mmaction2_version": "1.2.0", "dataset_meta": {"classes": ["a"] * 400}},
                    "state_dict": state}, path)
    else:
        rename = _pytorchvideo_key if layout == "pytorchvideo" else _pyslowfast_key
        theirs = {rename(k): v for k, v in state.items()}
        assert not any(k.startswith(("backbone.", "cls_head.")) for k in theirs)
        torch.save({"epoch": 196, "model_state": theirs, "cfg": "MODEL:\n  ARCH: slow"}, path)
    loaded = build_backbone("slow_r50", path, **SMALL["slow_r50"])
    x = clips()
    with torch.no_grad():
        assert torch.equal(loaded(x), source(x)) and torch.equal(loaded.descriptor(x), source.descriptor(x))
    assert loaded.spec.norm.name == norm and loaded.spec.frame_step == 8


@pytest.mark.parametrize("layout", ["pytorchvideo", "pyslowfast"])
def test_slow_r50_takes_the_key_names_the_reference_code_writes(tmp_path, layout):
    shapes = json.loads((Path(__file__).parent / "data" / "slow_r50_layouts.json").read_text())[layout]
    g = torch.Generator().manual_seed(0)
    state = {k: (torch.randint(0, 9, s) if k.endswith("num_batches_tracked") else torch.rand(s, generator=g))
             for k, s in shapes.items()}
    torch.save({"model_state": state}, tmp_path / "SLOW_8x8_R50.pyth")
    model = build_backbone("slow_r50", tmp_path / "SLOW_8x8_R50.pyth")
    own = model.state_dict()
    assert len(own) == len(state) == 320 and model.spec.norm.name == "slowfast"
    stem = "blocks.0.conv.weight" if layout == "pytorchvideo" else "s1.pathway0_stem.conv.weight"
    head = "blocks.5.proj.weight" if layout == "pytorchvideo" else "head.projection.weight"
    assert torch.equal(own["backbone.conv1.conv.weight"], state[stem])
    assert torch.equal(own["cls_head.fc_cls.weight"], state[head])


def test_other_resnets_of_those_repositories_do_not_load_as_slow(tmp_path):
    state = {_pytorchvideo_key(k): v for k, v in source_model("slow_r50").state_dict().items()}
    i3d = dict(state, **{"blocks.0.conv.weight": torch.zeros(8, 3, 5, 7, 7)})       # PyTorchVideo's i3d_r50 stem
    torch.save({"model_state": i3d}, tmp_path / "I3D_8x8_R50.pyth")
    with pytest.raises(GcfError, match=r"I3D_8x8_R50.pyth: its stem conv is 5x7x7, not 1x7x7: an I3D ResNet: use "
                                       r"--backbone i3d_r50 \(PyTorchVideo, PySlowFast\) or i3d_r50_32x2"):
        build_backbone("slow_r50", tmp_path / "I3D_8x8_R50.pyth", **SMALL["slow_r50"])
    torch.save({"meta": {}, "state_dict": source_model("slow_r50").state_dict()}, tmp_path / "slowonly.pth")
    with pytest.raises(GcfError, match=r"slowonly.pth: its stem conv is 1x7x7, not 5x7x7: a Slow ResNet: use "
                                       r"--backbone slow_r50 or slow_r101"):
        build_backbone("i3d_r50_32x2", tmp_path / "slowonly.pth", **SMALL["i3d_r50_32x2"])


SLOWFAST_LAYOUTS = json.loads((Path(__file__).parent / "data" / "slowfast_r50_layouts.json").read_text())
MMACTION2_FUSION = {"lateral_norm": False, "sampling": "stride"}     # its 8x8 config's fusion kernel is 7, as ours


def test_slowfast_has_the_reference_parameter_counts_and_mmaction2s_names():
    assert count_params("slowfast_r50", num_classes=400) == 34_566_488          # PyTorchVideo's and PySlowFast's
    assert count_params("slowfast_r50", num_classes=400, **MMACTION2_FUSION) == 34_565_560   # no BN in its laterals
    assert count_params("slowfast_r50_4x16", num_classes=400) == 34_480_216     # PyTorchVideo's model zoo: 34.48M
    assert count_params("slowfast_r101", num_classes=400) == 62_826_968         # 62.83M (its fusion kernel is 5)
    with torch.device("meta"):
        model = REGISTRY["slowfast_r50"].build(num_classes=400, **MMACTION2_FUSION)
    shapes = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert shapes == SLOWFAST_LAYOUTS["mmaction2"]                             # every name and shape
    with torch.no_grad():       # slow: 8 of the 32 frames, 2048 channels; fast: all 32, 256; A joins them at 32
        slow, fast = model.backbone(torch.empty(1, 3, 32, 224, 224, device="meta"))
        assert slow.shape == (1, 2048, 8, 7, 7) and fast.shape == (1, 256, 32, 7, 7)
        assert model.feature_map(torch.empty(1, 3, 32, 224, 224, device="meta")).shape == (1, 2304, 32, 7, 7)


def test_slowfast_slow_frames_follow_each_repository():
    with torch.device("meta"):
        linspace, stride = (REGISTRY["slowfast_r50"].build(num_classes=400, sampling=s) for s in ("linspace", "stride"))
    cpu = torch.device("cpu")
    assert linspace.backbone.slow_frames(32, cpu).tolist() == [0, 4, 8, 13, 17, 22, 26, 31]   # PySlowFast, PyTorchVideo
    assert stride.backbone.slow_frames(32, cpu).tolist() == [0, 4, 8, 12, 16, 20, 24, 28]     # MMAction2
    with pytest.raises(GcfError, match="takes no option speed"):
        backbone_spec("slowfast_r50", speed=4)
    with pytest.raises(ValueError, match="sampling must be one of linspace, stride"):
        REGISTRY["slowfast_r50"].build(num_classes=400, sampling="uniform")


def _theirs(layout: str) -> dict[str, str]:
    """Our name of every tensor -> the reference code's, from the key names it writes (convert inverted)."""
    from gcf.extract.backbones.checkpoint import Checkpoint
    from gcf.extract.backbones.slowfast import convert

    names = list(SLOWFAST_LAYOUTS[layout])
    ours = convert(Checkpoint({k: torch.zeros(1) for k in names}, None, None)).state_dict
    return dict(zip(ours, names))


@pytest.mark.parametrize("layout, norm, options", [
    ("pytorchvideo", "slowfast", {"sampling": "linspace", "lateral_norm": True, "fusion_kernel": 7}),
    ("pyslowfast", "slowfast", {"sampling": "linspace", "lateral_norm": True, "fusion_kernel": 7}),
    ("mmaction2", "imagenet", {"sampling": "stride", "lateral_norm": False, "fusion_kernel": 7})])
def test_slowfast_loads_each_repositorys_files_with_their_fusion_and_frames(tmp_path, layout, norm, options):
    source = random_model("slowfast_r50", **options)
    state, names = source.state_dict(), _theirs(layout)
    theirs = {names[k]: v for k, v in state.items()}
    path = tmp_path / "slowfast.pth"
    if layout == "mmaction2":
        torch.save({"meta": {"mmaction2_version": "1.2.0"}, "state_dict": theirs}, path)
    else:                           # their heads concatenate the slow descriptor first
        w, fast = state["cls_head.fc_cls.weight"], source.backbone.fast_path.layer4[0].conv3.conv.out_channels
        theirs[names["cls_head.fc_cls.weight"]] = torch.cat([w[:, fast:], w[:, :fast]], 1)
        torch.save({"epoch": 256, "model_state": theirs, "cfg": "MODEL:\n  ARCH: slowfast"}, path)
    loaded = build_backbone("slowfast_r50", path, **SMALL["slowfast_r50"])
    x = clips()
    with torch.no_grad():
        assert torch.equal(loaded(x), source(x)) and torch.equal(loaded.descriptor(x), source.descriptor(x))
    assert loaded.spec.norm.name == norm and loaded.spec.options == {**options, **SMALL["slowfast_r50"]}
    assert (loaded.spec.clip_len, loaded.spec.frame_step, loaded.spec.feature_dim) == (32, 2, 288)
    rebuilt = random_model("slowfast_r50", **loaded.spec.options)             # what a store's meta rebuilds
    assert rebuilt.backbone.sampling == options["sampling"]


def test_slowfast_tells_mmaction2_files_from_gcfs_own_and_refuses_the_wrong_variant(tmp_path, caplog):
    steplr = random_model("slowfast_r50", sampling="stride")            # MMAction2's steplr config: laterals with BN
    torch.save({"meta": {"mmaction2_version": "1.2.0"}, "state_dict": steplr.state_dict()}, tmp_path / "mm.pth")
    loaded = build_backbone("slowfast_r50", tmp_path / "mm.pth", **SMALL["slowfast_r50"])
    assert (loaded.spec.options["sampling"], loaded.spec.norm.name) == ("stride", "imagenet")
    forced = build_backbone("slowfast_r50", tmp_path / "mm.pth", sampling="linspace", **SMALL["slowfast_r50"])
    assert forced.spec.options["sampling"] == "linspace"                # the given option wins, with a warning
    assert "mm.pth implies sampling='stride'; using the given sampling='linspace'" in caplog.text
    torch.save(random_model("slowfast_r50").state_dict(), tmp_path / "resaved.pth")   # gcf's own, from a .pyth
    loaded = build_backbone("slowfast_r50", tmp_path / "resaved.pth", **SMALL["slowfast_r50"])
    assert (loaded.spec.options["sampling"], loaded.spec.norm.name) == ("linspace", "slowfast")
    torch.save(random_model("slowfast_r50_4x16").state_dict(), tmp_path / "SLOWFAST_4x16_R50.pyth")
    with pytest.raises(GcfError, match=r"implies fusion_kernel=5, but slowfast_r50 is built with fusion_kernel=7; "
                                       r"use --backbone slowfast_r50_4x16$"):
        build_backbone("slowfast_r50", tmp_path / "SLOWFAST_4x16_R50.pyth", **SMALL["slowfast_r50"])
    mm101 = random_model("slowfast_r101", fusion_kernel=7, lateral_norm=False, sampling="stride")   # MMAction2's R101
    torch.save({"meta": {}, "state_dict": mm101.state_dict()}, tmp_path / "mm101.pth")
    assert build_backbone("slowfast_r101", tmp_path / "mm101.pth", **SMALL["slowfast_r101"]).spec.options == {
        "sampling": "stride", "lateral_norm": False, "fusion_kernel": 7, "width": 0.125}    # R101 fixes no kernel
    with pytest.raises(ValueError, match="fusion_kernel must be odd"):
        REGISTRY["slowfast_r50"].build(num_classes=400, fusion_kernel=4)


@pytest.mark.parametrize("layout", ["pytorchvideo", "pyslowfast", "mmaction2"])
def test_slowfast_r50_takes_the_key_names_the_reference_code_writes(tmp_path, layout):
    g = torch.Generator().manual_seed(0)
    state = {k: (torch.randint(0, 9, s) if k.endswith("num_batches_tracked") else torch.rand(s, generator=g))
             for k, s in SLOWFAST_LAYOUTS[layout].items()}
    torch.save({"model_state": state}, tmp_path / "SLOWFAST_8x8_R50.pyth")
    model = build_backbone("slowfast_r50", tmp_path / "SLOWFAST_8x8_R50.pyth")
    assert len(model.state_dict()) == len(state) == (642 if layout == "mmaction2" else 662)
    assert model.spec.options["lateral_norm"] == (layout != "mmaction2")


@pytest.mark.parametrize("layout", ["pytorchvideo", "pyslowfast", "mmaction2"])
def test_a_slowfast_file_given_as_slow_says_which_backbone_to_use(tmp_path, layout):
    g = torch.Generator().manual_seed(0)
    torch.save({k: torch.rand(s, generator=g) for k, s in SLOWFAST_LAYOUTS[layout].items()}, tmp_path / "sf.pth")
    with pytest.raises(GcfError, match=r"sf.pth: does not fit slow_r50: .* SlowFast: use --backbone slowfast_r50"):
        build_backbone("slow_r50", tmp_path / "sf.pth")


I3D_LAYOUTS = json.loads((Path(__file__).parent / "data" / "i3d_r50_layouts.json").read_text())


def test_i3d_r50_has_mmaction2s_names_and_ends_at_4_steps_from_either_clip():
    with torch.device("meta"):
        ours, mm = (REGISTRY[n].build(num_classes=400) for n in ("i3d_r50", "i3d_r50_32x2"))
    assert {k: list(v.shape) for k, v in ours.state_dict().items()} == I3D_LAYOUTS["mmaction2"]
    blocks = [[b.conv1.conv.kernel_size[0] for b in getattr(ours.backbone, f"layer{i}")] for i in range(1, 5)]
    assert blocks == [[3, 3, 3], [3, 1, 3, 1], [3, 1, 3, 1, 3, 1], [1, 3, 1]]     # the same in all three repositories
    with torch.no_grad():
        assert ours.feature_map(torch.empty(1, 3, 8, 224, 224, device="meta")).shape == (1, 2048, 4, 7, 7)
        assert mm.feature_map(torch.empty(1, 3, 32, 224, 224, device="meta")).shape == (1, 2048, 4, 7, 7)


@pytest.mark.parametrize("layout, name, norm, stride", [("pytorchvideo", "i3d_r50", "slowfast", 1),
                                                        ("pyslowfast", "i3d_r50", "slowfast", 1),
                                                        ("mmaction2", "i3d_r50_32x2", "imagenet", 2)])
def test_i3d_r50_loads_each_repositorys_files(tmp_path, layout, name, norm, stride):
    from gcf.extract.backbones.checkpoint import Checkpoint
    from gcf.extract.backbones.slow import convert

    names = list(I3D_LAYOUTS[layout])
    ours = dict(zip(convert(Checkpoint({k: torch.zeros(1) for k in names}, None, None)).state_dict, names))
    source = random_model(name)
    theirs = {ours[k]: v for k, v in source.state_dict().items()}
    path = tmp_path / "i3d.pth"
    if layout == "mmaction2":
        torch.save({"meta": {"mmaction2_version": "1.2.0"}, "state_dict": theirs}, path)
    else:
        torch.save({"epoch": 100, "model_state": theirs}, path)
    loaded = build_backbone(name, path, **SMALL[name])
    x = clips()
    with torch.no_grad():
        assert torch.equal(loaded(x), source(x))
    assert loaded.spec.norm.name == norm and loaded.spec.options == {"temporal_stride": stride, **SMALL[name]}
    other = "i3d_r50_32x2" if name == "i3d_r50" else "i3d_r50"          # the file of one, given as the other
    with pytest.raises(GcfError, match=rf"i3d.pth: its layout implies temporal_stride={stride}, but {other} is "
                                       rf"built with temporal_stride={3 - stride}; use --backbone {name}$"):
        build_backbone(other, path, **SMALL[other])


def test_c2d_loads_pytorchvideos_file_and_refuses_an_i3d(tmp_path):
    from gcf.extract.backbones.checkpoint import Checkpoint
    from gcf.extract.backbones.slow import convert

    names = list(I3D_LAYOUTS["pytorchvideo"])          # C2D's module names are I3D's; only the kernels differ
    ours = dict(zip(convert(Checkpoint({k: torch.zeros(1) for k in names}, None, None)).state_dict, names))
    source = random_model("c2d_r50")
    assert all(b.conv1.conv.kernel_size == (1, 1, 1) for i in range(1, 5) for b in getattr(source.backbone, f"layer{i}"))
    torch.save({"model_state": {ours[k]: v for k, v in source.state_dict().items()}}, tmp_path / "C2D_8x8_R50.pyth")
    loaded = build_backbone("c2d_r50", tmp_path / "C2D_8x8_R50.pyth", **SMALL["c2d_r50"])
    x = clips()
    with torch.no_grad():
        assert torch.equal(loaded(x), source(x))
        assert loaded.feature_map(torch.zeros(1, 3, 8, 64, 64)).shape == (1, 256, 4, 2, 2)      # time / 2, space / 32
    assert loaded.spec.norm.name == "slowfast" and (loaded.spec.clip_len, loaded.spec.frame_step) == (8, 8)
    torch.save({"model_state": {ours[k]: v for k, v in source_model("i3d_r50").state_dict().items()}},
               tmp_path / "i3d.pyth")
    with pytest.raises(GcfError, match=r"i3d.pyth: its stem conv is 5x7x7, not 1x7x7: an I3D ResNet: use --backbone "
                                       r"i3d_r50$"):
        build_backbone("c2d_r50", tmp_path / "i3d.pyth", **SMALL["c2d_r50"])


@pytest.mark.parametrize("name, norm", [("slow_r50", "slowfast"), ("i3d_r50", "slowfast"), ("i3d_r50_32x2", "imagenet")])
def test_a_bare_state_dict_in_our_names_keeps_the_entrys_convention_and_stride(tmp_path, name, norm):
    torch.save(source_model(name).state_dict(), tmp_path / "own.pth")   # gcf's own re-save: no save format to go by
    loaded = build_backbone(name, tmp_path / "own.pth", **SMALL[name])
    assert loaded.spec.norm.name == norm and loaded.spec.options == SMALL[name]


R2PLUS1D_LAYOUTS = json.loads((Path(__file__).parent / "data" / "r2plus1d_r34_layouts.json").read_text())


def test_r2plus1d_r34_has_mmaction2s_names_widths_and_strides():
    with torch.device("meta"):
        ours = REGISTRY["r2plus1d_r34_32x2"].build(num_classes=400)
    assert {k: list(v.shape) for k, v in ours.state_dict().items()} == R2PLUS1D_LAYOUTS["mmaction2"]   # and order
    eps = {n: m.eps for n, m in ours.named_modules() if isinstance(m, torch.nn.BatchNorm3d)}
    assert eps["backbone.conv1.bn"] == 1e-3 and eps["backbone.conv1.conv.bn_s"] == 1e-5   # as MMAction2 trains them
    with torch.no_grad():            # temporal stride 2 in res3-res5 (32 -> 4), none in the stem; space / 32
        assert ours.feature_map(torch.empty(1, 3, 32, 224, 224, device="meta")).shape == (1, 512, 4, 7, 7)


@pytest.mark.parametrize("name", ["r2plus1d_r34_8x8", "r2plus1d_r34_32x2"])
def test_r2plus1d_r34_loads_mmaction2_files_with_its_convention(tmp_path, name):
    source = source_model("r2plus1d_r34_8x8")            # one network for both clip shapes
    path = tmp_path / "r2plus1d.pth"
    torch.save({"meta": {"mmaction2_version": "1.2.0"}, "state_dict": source.state_dict()}, path)
    loaded = build_backbone(name, path, **SMALL[name])
    x = clips()
    with torch.no_grad():
        assert torch.equal(loaded(x), source(x))
    assert loaded.spec.norm.name == "imagenet" and loaded.spec.num_classes == 400
    trained = {"r2plus1d_r34_8x8": (8, 8), "r2plus1d_r34_32x2": (32, 2)}
    assert (loaded.spec.clip_len, loaded.spec.frame_step) == trained[name]
    with pytest.raises(GcfError, match=r"r2plus1d.pth: does not fit r2plus1d34: .*MMAction2 R\(2\+1\)D: use --backbone "
                                       r"r2plus1d_r34_8x8 or r2plus1d_r34_32x2"):
        build_backbone("r2plus1d34", path)


CSN_LAYOUTS = json.loads((Path(__file__).parent / "data" / "csn_layouts.json").read_text())


@pytest.mark.parametrize("name", ["ircsn_r152", "ipcsn_r152"])
def test_csn_has_mmaction2s_names_and_strides_time_in_res3_to_res5(name):
    with torch.device("meta"):
        ours = REGISTRY[name].build(num_classes=400)
    assert {k: list(v.shape) for k, v in ours.state_dict().items()} == CSN_LAYOUTS[f"mmaction2_{name}"]  # and order
    assert ours.backbone.layer2[0].conv2[-1].conv.groups == 128                     # channel-separated
    with torch.no_grad():
        assert ours.feature_map(torch.empty(1, 3, 32, 224, 224, device="meta")).shape == (1, 2048, 4, 7, 7)


@pytest.mark.parametrize("layout, name, norm, eps", [
    ("mmaction2_ircsn_r152", "ircsn_r152", "imagenet", 1e-3), ("mmaction2_ipcsn_r152", "ipcsn_r152", "imagenet", 1e-3),
    ("vmz_ircsn_r152", "ircsn_r152", "kinetics-tv", 1e-3), ("vmz_ipcsn_r152", "ipcsn_r152", "kinetics-tv", 1e-3),
    ("pytorchvideo_csn_r101", "csn_r101", "slowfast", 1e-5)])
def test_csn_loads_each_repositorys_files_with_their_convention(tmp_path, layout, name, norm, eps):
    from gcf.extract.backbones.checkpoint import Checkpoint
    from gcf.extract.backbones.slow import convert_csn

    names = list(CSN_LAYOUTS[layout])
    ours = dict(zip(convert_csn(Checkpoint({k: torch.zeros(1) for k in names}, None, None)).state_dict, names))
    source = random_model(name, eps=eps)
    theirs = {ours[k]: v for k, v in source.state_dict().items()}
    path = tmp_path / "csn.pth"
    if layout.startswith("mmaction2"):
        torch.save({"meta": {"mmaction2_version": "1.2.0"}, "state_dict": theirs}, path)
    elif layout.startswith("pytorchvideo"):
        torch.save({"model_state": theirs}, path)
    else:
        torch.save(theirs, path)                      # VMZ's releases: plain state dicts
    loaded = build_backbone(name, path, **SMALL[name])
    x = clips()
    with torch.no_grad():
        assert torch.equal(loaded(x), source(x))
    mode = "ip" if "ip" in layout else "ir"
    assert loaded.spec.norm.name == norm and loaded.spec.options == {"mode": mode, "eps": eps, **SMALL[name]}
    if mode == "ip":                                  # the ip file given as ir-CSN says which backbone takes it
        with pytest.raises(GcfError, match=r"csn.pth: its layout implies mode=ip, but ircsn_r152 is built with "
                                           r"mode=ir; use --backbone ipcsn_r152$"):
            build_backbone("ircsn_r152", path, **SMALL[name])


def test_non_local_block_is_x_plus_bn_of_the_weighted_sum_of_g():
    from gcf.extract.backbones.slow import NonLocal3d
    torch.manual_seed(0)
    x = torch.randn(2, 8, 2, 6, 6)
    for mode in ("dot_product", "embedded_gaussian", "gaussian"):
        block = NonLocal3d(8, mode).eval()
        torch.nn.init.normal_(block.conv_out.bn.weight)              # mmcv starts it at 0: the block would be x
        conv = lambda m, v: torch.einsum("oi,nithw->nothw", m.conv.weight[:, :, 0, 0, 0], v) \
            + m.conv.bias[None, :, None, None, None]  # noqa: E731
        pool = lambda v: torch.nn.functional.max_pool3d(v, (1, 2, 2))  # noqa: E731
        theta = x if mode == "gaussian" else conv(block.theta, x)
        phi = pool(x) if mode == "gaussian" else pool(conv(block.phi[0], x))
        g = pool(conv(block.g[0], x))
        f = torch.einsum("ncp,ncq->npq", theta.flatten(2), phi.flatten(2))     # every position with every pooled one
        f = f / f.shape[-1] if mode == "dot_product" else f.softmax(-1)
        y = torch.einsum("npq,ncq->ncp", f, g.flatten(2)).reshape(2, 4, 2, 6, 6)
        with torch.no_grad():
            assert torch.allclose(block(x), x + block.conv_out(y), atol=1e-6)
            assert not torch.allclose(block(x), x)


@pytest.mark.parametrize("name", ["i3d_r50_nl_dot", "i3d_r50_nl_embedded", "i3d_r50_nl_gaussian"])
def test_i3d_non_local_loads_mmaction2_files_in_res3_and_res4(tmp_path, name):
    source = random_model(name)
    blocks = sorted({k.split(".non_local_block.")[0] for k in source.state_dict() if ".non_local_block." in k})
    assert blocks == ["backbone.layer2.1", "backbone.layer2.3", "backbone.layer3.1", "backbone.layer3.3",
                      "backbone.layer3.5"]                                 # MMAction2's (0, 1, 0, 1), (0, 1, 0, 1, 0, 1)
    path = tmp_path / "nl.pth"
    torch.save({"meta": {"mmaction2_version": "1.2.0"}, "state_dict": source.state_dict()}, path)
    loaded = build_backbone(name, path, **SMALL[name])
    x = clips()
    with torch.no_grad():
        assert torch.equal(loaded(x), source(x))
    assert loaded.spec.norm.name == "imagenet" and (loaded.spec.clip_len, loaded.spec.frame_step) == (32, 2)
    if name == "i3d_r50_nl_gaussian":        # told apart by its tensors (no theta/phi convs)
        for other, mode in (("i3d_r50_nl_dot", "dot_product"), ("i3d_r50_32x2", "None")):
            with pytest.raises(GcfError, match=rf"nl.pth: its layout implies non_local=gaussian, but {other} is "
                                               rf"built with non_local={mode}; use --backbone i3d_r50_nl_gaussian$"):
                build_backbone(other, path, **SMALL[name])
    else:
        for other in ("i3d_r50_32x2", "i3d_r50_nl_gaussian"):
            with pytest.raises(GcfError, match=rf"nl.pth: does not fit {other} .*; the file is an MMAction2 I3D with "
                                               r"dot-product or embedded-Gaussian non-local blocks .*: use --backbone "
                                               r"i3d_r50_nl_dot or i3d_r50_nl_embedded$"):
                build_backbone(other, path, **SMALL[name])
        with pytest.raises(GcfError, match=r"nl.pth: its layout implies temporal_stride=2, but i3d_r50 is built with "
                                           r"temporal_stride=1; use --backbone i3d_r50_nl_dot or i3d_r50_nl_embedded$"):
            build_backbone("i3d_r50", path, **SMALL[name])        # the entries whose tensors are the file's
        moved = {k.replace("layer2.1.non_local_block", "layer2.0.non_local_block"): v
                 for k, v in source.state_dict().items()}
        torch.save({"meta": {}, "state_dict": moved}, tmp_path / "moved.pth")
        with pytest.raises(GcfError, match=r"the file has non-local blocks after layer2.0, layer2.3, layer3.1, "
                                           r"layer3.3, layer3.5; gcf's i3d_r50_nl_\* have MMAction2's published"):
            build_backbone(name, tmp_path / "moved.pth", **SMALL[name])


@pytest.mark.parametrize("layout", ["mmaction2", "video-swin"])
def test_video_swin_loads_mmaction2_and_original_files_and_tells_the_arch(tmp_path, layout):
    source = random_model("swin_t")
    state = source.state_dict()
    assert "backbone.layers.2.blocks.5.attn.relative_position_bias_table" in state and len(source.backbone.layers) == 4
    if layout == "video-swin":              # SwinTransformer/Video-Swin-Transformer: backbone.norm, saved indices
        state = {k.replace("backbone.norm3.", "backbone.norm."): v for k, v in state.items()}
        for i, layer in enumerate(source.backbone.layers):
            for j, block in enumerate(layer.blocks):
                state[f"backbone.layers.{i}.blocks.{j}.attn.relative_position_index"] = \
                    block.attn.relative_position_index
    path = tmp_path / "swin.pth"
    torch.save({"meta": {}, "state_dict": state}, path)
    loaded = build_backbone("swin_t", path, **SMALL["swin_t"])
    x = clips()
    with torch.no_grad():
        assert torch.equal(loaded(x), source(x))
        assert loaded.feature_map(x).shape == (2, 96, 8, 2, 2)           # 2x4x4 patches, 3 merges; C 12 x 8
    assert loaded.spec.norm.name == "imagenet" and (loaded.spec.clip_len, loaded.spec.frame_step) == (32, 2)
    base = {"backbone.patch_embed.proj.weight": torch.zeros(128, 3, 2, 4, 4),   # Swin-B's width and depth
            **{f"backbone.layers.2.blocks.{j}.norm1.weight": torch.zeros(1) for j in range(18)}}
    torch.save(base, tmp_path / "base.pth")
    with pytest.raises(GcfError, match=r"base.pth: its layout implies arch=b, but swin_t is built with arch=t; "
                                       r"use --backbone swin_b$"):
        build_backbone("swin_t", tmp_path / "base.pth")
    with pytest.raises(GcfError, match=r"does not fit resnet50: .*; the file is a Video Swin: use --backbone swin_t"):
        build_backbone("resnet50", path)


def _hf_videomae(state: dict, split_bias: bool) -> dict:
    """Our (the reference code's) VideoMAE names -> Hugging Face's (transformers 5 when split_bias)."""
    out = {"videomae.embeddings.patch_embeddings.projection.weight": state["patch_embed.proj.weight"],
           "videomae.embeddings.patch_embeddings.projection.bias": state["patch_embed.proj.bias"],
           "fc_norm.weight": state["fc_norm.weight"], "fc_norm.bias": state["fc_norm.bias"],
           "classifier.weight": state["head.weight"], "classifier.bias": state["head.bias"]}
    parts = {"norm1": "layernorm_before", "norm2": "layernorm_after", "attn.proj": "attention.output.dense",
             "mlp.fc1": "intermediate.dense", "mlp.fc2": "output.dense"}
    for i in range(len({k.split(".")[1] for k in state if k.startswith("blocks.")})):
        layer, attn = f"videomae.encoder.layer.{i}", f"videomae.encoder.layer.{i}.attention.attention"
        for ours, theirs in parts.items():
            for leaf in ("weight", "bias"):
                out[f"{layer}.{theirs}.{leaf}"] = state[f"blocks.{i}.{ours}.{leaf}"]
        for name, w in zip(("query", "key", "value"), state[f"blocks.{i}.attn.qkv.weight"].chunk(3)):
            out[f"{attn}.{name}.weight"] = w.clone()
        for p in ("q", "v"):
            out[f"{attn}.{'query' if p == 'q' else 'value'}.bias" if split_bias else f"{attn}.{p}_bias"] = \
                state[f"blocks.{i}.attn.{p}_bias"]
    return out


@pytest.mark.parametrize("layout", ["videomae", "hf4", "hf5", "mmaction2"])
def test_videomae_loads_its_own_and_hugging_faces_files(tmp_path, layout):
    import argparse

    from safetensors.torch import save_file

    source = random_model("videomae_b")
    state = source.state_dict()
    if layout == "videomae":                  # run_class_finetuning.py's save_model: {'model', 'args', ...}
        path = tmp_path / "checkpoint.pth"
        torch.save({"model": state, "epoch": 34, "args": argparse.Namespace(num_frames=16, sampling_rate=4)}, path)
    elif layout == "mmaction2":               # VisionTransformer + I3DHead; its sine table saved as a buffer
        path = tmp_path / "vit-base-p16_videomae-k400-pre_16x4x1_kinetics-400.pth"
        mm = {"backbone." + k.replace("patch_embed.proj.", "patch_embed.projection.").replace(
            ".mlp.fc1.", ".mlp.layers.0.0.").replace(".mlp.fc2.", ".mlp.layers.1."): v
            for k, v in state.items() if not k.startswith("head.")}
        mm.update({"backbone.pos_embed": source.pos_embed[None], "cls_head.fc_cls.weight": state["head.weight"],
                   "cls_head.fc_cls.bias": state["head.bias"]})
        torch.save({"meta": {"mmaction2_version": "1.2.0"}, "state_dict": mm}, path)
    else:
        path = tmp_path / "model.safetensors"
        save_file(_hf_videomae(state, split_bias=layout == "hf5"), path)
    loaded = build_backbone("videomae_b", path, **SMALL["videomae_b"])
    frames = torch.randint(0, 256, (2, 16, 224, 224, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    x = loaded.spec.normalize(frames)
    with torch.no_grad():
        assert torch.equal(loaded(x), source(x))
        a = loaded.feature_map(x)
        assert a.shape == (2, 96, 8, 14, 14) and torch.equal(loaded.fc_norm(a.mean(dim=(2, 3, 4))), loaded.descriptor(x))
    spec = loaded.spec
    assert (spec.norm.name, spec.clip_len, spec.frame_step, spec.input_size) == ("imagenet", 16, 4, 224)


def test_videomae_v2_files_load_giant_and_distilled(tmp_path):
    import argparse
    giant = random_model("videomae_g")                  # ViT-g/14: 2x14x14 tubelets, MLP 48/11 of the width
    x = giant.spec.normalize(torch.randint(0, 256, (1, 16, 224, 224, 3), dtype=torch.uint8))
    with torch.no_grad():
        assert giant.feature_map(x).shape == (1, 176, 8, 16, 16)
    assert giant.blocks[0].mlp.fc1.out_features == 768 and len(giant.blocks) == 40
    base = {"patch_embed.proj.weight": torch.zeros(1408, 3, 2, 14, 14),                # ViT-g's width and depth
            **{f"blocks.{i}.norm1.weight": torch.zeros(1) for i in range(40)}}
    torch.save({"model": base}, tmp_path / "vit_g.pth")
    with pytest.raises(GcfError, match=r"vit_g.pth: its layout implies size=g, but videomae_h is built with size=h; "
                                       r"use --backbone videomae_g$"):
        build_backbone("videomae_h", tmp_path / "vit_g.pth")
    distilled = random_model("videomae_b", num_classes=710)     # vit_b_k710_dl_from_giant.pth: Kinetics-710
    torch.save({"module": distilled.state_dict(), "epoch": 9, "args": argparse.Namespace(nb_classes=710)},
               tmp_path / "vit_b_k710_dl_from_giant.pth")
    loaded = build_backbone("videomae_b", tmp_path / "vit_b_k710_dl_from_giant.pth", **SMALL["videomae_b"])
    assert loaded.spec.num_classes == 710


def test_videomae_refuses_other_clip_shapes_and_tells_its_size(tmp_path):
    from gcf.extract.backbones import check_geometry
    with pytest.raises(GcfError, match=r"backbone videomae_b cannot take 16-frame clips of 112x112 px \(VideoMAE's "
                                       r"position table is for 16-frame clips of 224 px\)"):
        check_geometry("videomae_b", 16, 112)
    base = {"patch_embed.proj.weight": torch.zeros(768, 3, 2, 16, 16),              # ViT-B's width and depth
            **{f"blocks.{i}.norm1.weight": torch.zeros(1) for i in range(12)}}
    torch.save({"model": base}, tmp_path / "vit_b.pth")
    with pytest.raises(GcfError, match=r"vit_b.pth: its layout implies size=b, but videomae_s is built with size=s; "
                                       r"use --backbone videomae_b$"):
        build_backbone("videomae_s", tmp_path / "vit_b.pth")
    (tmp_path / "bad.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
    with pytest.raises(GcfError, match=r"bad.safetensors: not a readable .safetensors file"):
        build_backbone("videomae_b", tmp_path / "bad.safetensors")


def assert_cam_gradient(model, x: torch.Tensor, shape: tuple) -> None:
    """Grad-CAM's A (the cam_layer output, of `shape`) gets a nonzero gradient from the descriptor."""
    caught = []

    def leaf(module, inputs, out):
        caught.append(out.detach().requires_grad_(True))
        return caught[-1]

    handle = model.cam_layer.register_forward_hook(leaf)
    with torch.enable_grad():
        model.descriptor(x).sum().backward()
    handle.remove()
    assert caught[0].shape == shape and caught[0].grad.abs().sum() > 0


def test_timesformer_loads_mmaction2s_divided_space_time_files():
    import tempfile
    source = random_model("timesformer")
    block = {"temporal_norm1": "attentions.0.norm", "temporal_attn.qkv": "attentions.0.attn.in_proj",
             "temporal_attn.proj": "attentions.0.attn.out_proj", "temporal_fc": "attentions.0.temporal_fc",
             "norm1": "attentions.1.norm", "attn.qkv": "attentions.1.attn.in_proj",
             "attn.proj": "attentions.1.attn.out_proj", "norm2": "ffns.0.norm", "mlp.fc1": "ffns.0.layers.0.0",
             "mlp.fc2": "ffns.0.layers.1"}
    mm = {}
    for key, value in source.state_dict().items():
        m = re.fullmatch(r"model\.blocks\.(\d+)\.(.+)\.(weight|bias)", key)
        if m:
            sep = "_" if block[m[2]].endswith("in_proj") else "."     # nn.MultiheadAttention's in_proj_weight
            mm[f"backbone.transformer_layers.layers.{m[1]}.{block[m[2]]}{sep}{m[3]}"] = value
        else:
            mm[key.replace("model.patch_embed.proj.", "backbone.patch_embed.projection.")
                  .replace("model.head.", "cls_head.fc_cls.").replace("model.", "backbone.")] = value
    assert "backbone.transformer_layers.layers.0.attentions.0.attn.in_proj_weight" in mm
    assert "backbone.transformer_layers.layers.0.attentions.1.attn.out_proj.weight" in mm
    x = frames_clips(source.spec)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "timesformer_divST_8xb8-8x32x1-15e_kinetics400-rgb_20220815-a4d0d01f.pth"
        torch.save({"meta": {"mmaction2_version": "1.0.0"}, "state_dict": mm}, path)
        loaded = build_backbone("timesformer", path, **SMALL["timesformer"])
        with torch.no_grad():
            assert torch.equal(loaded(x), source(x))
        assert loaded.spec.norm.name == "inception"            # its configs' mean and std 127.5
        space_only = {k: v for k, v in mm.items() if ".temporal_fc." not in k}
        torch.save({"meta": {}, "state_dict": space_only}, path)
        with pytest.raises(GcfError, match=r"MMAction2 TimeSformer with space-only or joint space-time attention"):
            build_backbone("timesformer", path, **SMALL["timesformer"])


def test_timesformer_loads_its_files_and_its_descriptor_is_the_class_token():
    import tempfile
    source = random_model("timesformer")
    x = frames_clips(source.spec)                    # 16x64x64: the time and position tables are resized
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "TimeSformer_divST_8x32_224_K400.pyth"
        torch.save({"model_state": source.state_dict(), "epoch": 15}, path)        # PySlowFast's save format
        loaded = build_backbone("timesformer", path, **SMALL["timesformer"])
        with torch.no_grad():
            assert torch.equal(loaded(x), source(x))
            a = loaded.feature_map(x)
        assert a.shape == (2, 96, 16, 4, 4) and loaded.spec.norm.name == "slowfast"
        assert (loaded.spec.clip_len, loaded.spec.frame_step, loaded.spec.input_size) == (8, 32, 224)
        with pytest.raises(GcfError, match=r"its layout implies frames=8, but timesformer_hr is built with frames=16; "
                                           r"use --backbone timesformer$"):
            build_backbone("timesformer_hr", path, **SMALL["timesformer_hr"])
    assert_cam_gradient(loaded, x, a.shape)            # A reaches the class token through the last block
    with tempfile.TemporaryDirectory() as tmp:          # other layouts of these models are named
        for key, words in (("encoder.blocks.0.attn.q_bias", "a VideoMAE pre-training checkpoint"),
                           ("backbone.transformer_layers.layers.0.ffns.0.layers.1.weight", "an MMAction2 TimeSformer"),
                           ("model.blocks.0.temporal_attn.qkv.weight", "a TimeSformer: use --backbone timesformer")):
            torch.save({key: torch.zeros(1)}, Path(tmp) / "other.pth")
            with pytest.raises(GcfError, match=f"other.pth: does not fit resnet18: .*; the file is {words}"):
                build_backbone("resnet18", Path(tmp) / "other.pth")


def _mmaction2_mvit(state: dict) -> dict:
    """Our (PySlowFast's) MViT names -> MMAction2's: backbone.*, patch_embed.projection, norm3, cls_head.fc_cls."""
    renames = (("patch_embed.proj.", "backbone.patch_embed.projection."), ("norm.", "backbone.norm3."),
               ("head.projection.", "cls_head.fc_cls."))
    return {next((new + k.removeprefix(old) for old, new in renames if k.startswith(old)), "backbone." + k): v
            for k, v in state.items()}


@pytest.mark.parametrize("layout", ["pyslowfast", "mmaction2", "mmaction2-backbone"])
def test_mvit_loads_pyslowfast_and_mmaction2_files_and_its_descriptor_is_the_class_token(tmp_path, layout):
    source = random_model("mvit_v2_s")
    state = source.state_dict()
    path = tmp_path / "MViTv2_S_16x4_k400_f302660347.pyth"
    if layout == "pyslowfast":
        torch.save({"model_state": state, "epoch": 200, "cfg": "MVIT: ..."}, path)
    elif layout == "mmaction2":
        torch.save({"meta": {"mmaction2_version": "1.0.0"}, "state_dict": _mmaction2_mvit(state)}, path)
    else:                                    # what MMAction2 configs load as backbone.pretrained: no prefix, no head
        torch.save({k.removeprefix("backbone."): v for k, v in _mmaction2_mvit(state).items()
                    if not k.startswith("cls_head.")}, path)
    loaded = build_backbone("mvit_v2_s", path, **SMALL["mvit_v2_s"])
    x = frames_clips(loaded.spec)                    # 16x64x64: the relative position tables are resized
    with torch.no_grad():
        v, a = loaded.descriptor(x), loaded.feature_map(x)
        assert torch.equal(v, source.descriptor(x)) and a.shape == (2, 96, 8, 2, 2)   # the grid entering block 15
        if layout != "mmaction2-backbone":
            assert torch.equal(loaded(x), source(x))
    spec = loaded.spec
    assert (spec.norm.name, spec.clip_len, spec.frame_step, spec.input_size, spec.feature_dim) == \
        ("slowfast", 16, 4, 224, 96)
    assert spec.num_classes == (0 if layout == "mmaction2-backbone" else 400)
    assert_cam_gradient(loaded, x, a.shape)            # A reaches the class token through the last block


def test_mvit_loads_pytorchvideos_files(tmp_path):
    """PyTorchVideo's MVIT_B_16x4.pyth: q, k, v Linears; each pool saved as pool_q and _attention_pool_q.pool."""
    source = random_model("mvit_b_16x4")
    top = {"patch_embed.proj.": "patch_embed.patch_model.", "norm.": "norm_embed.", "head.projection.": "head.proj.",
           "cls_token": "cls_positional_encoding.cls_token"}
    theirs = {}
    for key, value in source.state_dict().items():
        old = next((t for t in top if key.startswith(t)), None)
        m = re.fullmatch(r"(blocks\.\d+\.attn\.)(pool|norm)_([qkv])\.(.+)", key)
        if old is not None:
            theirs[top[old] + key.removeprefix(old)] = value
        elif key.startswith("pos_embed_"):
            theirs[f"cls_positional_encoding.{key}"] = value
        elif ".attn.qkv." in key:
            for part, chunk in zip("qkv", value.chunk(3)):
                theirs[key.replace(".qkv.", f".{part}.")] = chunk
        else:
            theirs[key] = value
            if m:
                theirs[f"{m[1]}_attention_pool_{m[3]}.{m[2]}.{m[4]}"] = value
    assert "blocks.1.attn._attention_pool_q.pool.weight" in theirs and "blocks.0.attn.k.bias" in theirs
    torch.save({"model_state": theirs, "epoch": 200}, tmp_path / "MVIT_B_16x4.pyth")
    loaded = build_backbone("mvit_b_16x4", tmp_path / "MVIT_B_16x4.pyth", **SMALL["mvit_b_16x4"])
    x = frames_clips(loaded.spec)
    with torch.no_grad():
        assert torch.equal(loaded(x), source(x))


def test_mvit_files_name_their_arch_and_clip_shape(tmp_path):
    for name, other, implied in (("mvit_v2_b", "mvit_v2_s", "arch=b"), ("mvit_b_16x4", "mvit_v2_s", "arch=v1_b"),
                                 ("mvit_b24_32x3", "mvit_b_32x3", "arch=v1_b24"), ("mvit_v2_l", "mvit_v2_b", "arch=l")):
        torch.save({"model_state": source_model(name).state_dict()}, tmp_path / f"{name}.pyth")
        with pytest.raises(GcfError, match=rf"{name}.pyth: its layout implies {implied}, but {other} is built with "
                                           rf"arch=\S+; use --backbone {name}$"):
            build_backbone(other, tmp_path / f"{name}.pyth", **SMALL[other])
    small = random_model("mvit_v2_s", frames=8, pixels=128)                       # tables for 8x128 clips
    torch.save({"model_state": small.state_dict()}, tmp_path / "s8.pyth")
    with pytest.raises(GcfError, match=r"s8.pyth: its layout implies frames=8, but mvit_v2_s is built with "
                                       r"frames=16; pass --option frames=8"):
        build_backbone("mvit_v2_s", tmp_path / "s8.pyth", **SMALL["mvit_v2_s"])
    loaded = build_backbone("mvit_v2_s", tmp_path / "s8.pyth", frames=8, pixels=128, **SMALL["mvit_v2_s"])
    assert loaded.blocks[0].attn.rel_pos_t.shape[0] == 7
    for name, table in (("mvit_v2_s", "blocks.0.attn.rel_pos_h"), ("mvit_b_16x4", "pos_embed_spatial")):
        torch.save({k: v for k, v in source_model(name).state_dict().items() if k != table}, tmp_path / "cut.pth")
        with pytest.raises(GcfError, match=rf"cut.pth: does not fit {name}.*1 missing keys: {table};"):
            build_backbone(name, tmp_path / "cut.pth", **SMALL[name])
    for state, words in ((source_model("mvit_b_16x4").state_dict(), "a PySlowFast MViT: use --backbone mvit_v2_s"),
                         (_mmaction2_mvit(source_model("mvit_v2_s").state_dict()), "an MMAction2 MViTv2: use")):
        torch.save(state, tmp_path / "other.pth")
        with pytest.raises(GcfError, match=f"other.pth: does not fit resnet18: .*; the file is {words}"):
            build_backbone("resnet18", tmp_path / "other.pth")


C3D_NAMES = ["conv1a", "conv2a", "conv3a", "conv3b", "conv4a", "conv4b", "conv5a", "conv5b"]


def test_c3d_has_mmaction2s_names_and_takes_16_frames_of_112_px():
    with torch.device("meta"):
        model = REGISTRY["c3d"].build(num_classes=101)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    convs = {f"backbone.{n}.conv.{leaf}" for n in C3D_NAMES for leaf in ("weight", "bias")}
    assert set(shapes) == convs | {f"{m}.{leaf}" for m in ("backbone.fc6", "backbone.fc7", "cls_head.fc_cls")
                                   for leaf in ("weight", "bias")}
    assert shapes["backbone.conv3b.conv.weight"] == (256, 256, 3, 3, 3) and shapes["backbone.fc6.weight"] == (4096, 8192)
    with torch.no_grad():
        assert model.feature_map(torch.empty(1, 3, 16, 112, 112, device="meta")).shape == (1, 512, 2, 7, 7)
    model = random_model("c3d")
    x = model.spec.normalize(torch.randint(0, 256, (2, 16, 112, 112, 3), dtype=torch.uint8))
    with torch.no_grad():
        v, a = model.descriptor(x), model.cam_layer(model.backbone.conv5a(torch.zeros(1, 64, 2, 7, 7)))
    assert v.shape == (2, 512) and (v >= 0).all() and 1e-2 < v.abs().mean() < 1e2     # fc7 after ReLU, width 1/8
    assert a.shape == (1, 64, 2, 7, 7)
    spec = model.spec
    assert (spec.clip_len, spec.input_size, spec.norm.name, spec.num_classes) == (16, 112, "c3d", 487)
    from gcf.extract.backbones import check_geometry
    with pytest.raises(GcfError, match=r"backbone c3d cannot take 16-frame clips of 64x64 px .*its default: 16 "
                                       r"frames of 112 px"):
        check_geometry("c3d", 16, 64)
    with pytest.raises(GcfError, match=r"c3d feature must be fc6 or fc7, not 'pool5'"):
        build_backbone("c3d", "random", feature="pool5")


@pytest.mark.parametrize("layout, norm", [("davidea", "c3d-raw"), ("jfzhang95", "c3d-bgr"), ("mmaction2", "c3d")])
def test_c3d_loads_each_repositorys_files_with_their_convention(tmp_path, layout, norm):
    source = random_model("c3d", num_classes=101)
    ours = source.state_dict()
    flat = {"backbone.conv1a.conv": "conv1", "backbone.conv2a.conv": "conv2", "backbone.fc6": "fc6",
            "backbone.fc7": "fc7", "cls_head.fc_cls": "fc8", **{f"backbone.{n}.conv": n for n in C3D_NAMES[2:]}}
    theirs = {f"{flat[k.rsplit('.', 1)[0]]}.{k.rsplit('.', 1)[1]}": v for k, v in ours.items()}
    path = tmp_path / "c3d.pth"
    if layout == "davidea":                  # c3d.pickle: a bare state dict, saved before PyTorch 1.6
        torch.save(theirs, path, _use_new_zipfile_serialization=False)
    elif layout == "jfzhang95":              # its train.py: {'epoch', 'state_dict', 'opt_dict'}
        opt = torch.optim.SGD(source.parameters(), lr=1e-3, momentum=0.9).state_dict()
        torch.save({"epoch": 40, "state_dict": theirs, "opt_dict": opt}, path)
    else:
        torch.save({"meta": {"mmaction2_version": "1.2.0"}, "state_dict": ours}, path)
    x = source.spec.normalize(torch.randint(0, 256, (2, 16, 112, 112, 3), dtype=torch.uint8))
    loaded = build_backbone("c3d", path, **SMALL["c3d"])
    fc6 = build_backbone("c3d", path, feature="fc6", **SMALL["c3d"])
    with torch.no_grad():
        assert torch.equal(loaded(x), source(x)) and torch.equal(fc6(x), source(x))
        assert torch.equal(fc6.descriptor(x), torch.relu(source.backbone.fc6(
            torch.nn.functional.max_pool3d(source.feature_map(x), 2, 2, (0, 1, 1)).flatten(1))))
    assert loaded.spec.norm.name == norm and loaded.spec.num_classes == 101
    with pytest.raises(GcfError, match=r"c3d.pth: does not fit resnet18: .*: use --backbone c3d$"):
        build_backbone("resnet18", path)
    assert NORMS[norm].channel_order == ("BGR" if layout == "jfzhang95" else "RGB")


@pytest.mark.parametrize("name, layout", [("ircsn_r50", "mmaction2"), ("ipcsn_r152", "mmaction2"),
                                          ("c3d", "mmaction2"), ("slow_r50", "plain")])
def test_a_backbone_only_file_gives_descriptors_without_logits(tmp_path, name, layout, caplog):
    """MMAction2's backbone pretraining files (its configs' `backbone.pretrained`) hold the backbone's own names
    and no classifier; a recognizer's state dict without its head loads the same way."""
    source = random_model(name)
    state = {k: v for k, v in source.state_dict().items() if not k.startswith("cls_head.")}
    path = tmp_path / "backbone.pth"
    if layout == "mmaction2":
        torch.save({"meta": {}, "state_dict": {k.removeprefix("backbone."): v for k, v in state.items()}}, path)
    else:
        torch.save(state, path)
    with caplog.at_level(logging.INFO, logger="gcf"):
        loaded = build_backbone(name, path, **SMALL[name])
    size = 112 if name == "c3d" else 64
    x = source.spec.normalize(torch.randint(0, 256, (2, 16, size, size, 3), dtype=torch.uint8))
    with torch.no_grad():
        assert torch.equal(loaded.descriptor(x), source.descriptor(x))
    assert loaded.spec.num_classes == 0 and "holds no classifier (cls_head.fc_cls.*)" in caplog.text
    if name == "ipcsn_r152":                                   # mode read from the prefixed keys
        assert loaded.spec.options["mode"] == "ip"
    torch.save({"meta": {}, "state_dict": {k.removeprefix("backbone."): v for k, v in state.items()
                                           if ".layer4." not in k and ".conv5b." not in k}}, path)
    with pytest.raises(GcfError, match=r"backbone.pth: does not fit .*missing keys: backbone\.(layer4|conv5b)"):
        build_backbone(name, path, **SMALL[name])               # only the classifier may be absent


def test_x3d_has_pyslowfasts_names():
    with torch.device("meta"):
        model = REGISTRY["x3d_m"].build(num_classes=400)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes["s1.pathway0_stem.conv_xy.weight"] == (24, 3, 1, 3, 3)
    assert shapes["s1.pathway0_stem.conv.weight"] == (24, 1, 5, 1, 1)                 # depthwise temporal
    assert shapes["s2.pathway0_res0.branch1_bn.weight"] == (24,)                      # stride 2, same width
    assert shapes["s2.pathway0_res0.branch2.b.weight"] == (54, 1, 3, 3, 3)
    assert [f"s5.pathway0_res{b}.branch2.se.fc1.weight" in shapes for b in range(7)] == [True, False] * 3 + [True]
    assert shapes["s5.pathway0_res0.branch2.se.fc1.weight"] == (32, 432, 1, 1, 1)     # SE widths 8, 8, 16, 32
    assert shapes["s3.pathway0_res0.branch2.se.fc1.weight"] == (8, 108, 1, 1, 1)
    assert shapes["head.conv_5.weight"] == (432, 192, 1, 1, 1) and shapes["head.lin_5.weight"] == (2048, 432, 1, 1, 1)
    assert shapes["head.projection.weight"] == (400, 2048) and len(shapes) == 568
    assert sum(k.endswith(".branch2.a.weight") for k in shapes) == 3 + 5 + 11 + 7


def _x3d_key(key: str, layout: str) -> str:
    """Our (PySlowFast) name of an X3D tensor -> PyTorchVideo's or MMAction2's."""
    module, leaf = key.rsplit(".", 1)
    if layout == "pytorchvideo":
        fixed = {"s1.pathway0_stem.conv_xy": "blocks.0.conv.conv_t", "s1.pathway0_stem.conv": "blocks.0.conv.conv_xy",
                 "s1.pathway0_stem.bn": "blocks.0.norm", "head.conv_5": "blocks.5.pool.pre_conv",
                 "head.conv_5_bn": "blocks.5.pool.pre_norm", "head.lin_5": "blocks.5.pool.post_conv",
                 "head.projection": "blocks.5.proj"}
        parts = {"branch1": "branch1_conv", "branch1_bn": "branch1_norm", "branch2.a": "branch2.conv_a",
                 "branch2.a_bn": "branch2.norm_a", "branch2.b": "branch2.conv_b", "branch2.b_bn": "branch2.norm_b.0",
                 "branch2.se.fc1": "branch2.norm_b.1.block.0", "branch2.se.fc2": "branch2.norm_b.1.block.2",
                 "branch2.c": "branch2.conv_c", "branch2.c_bn": "branch2.norm_c"}
        block = lambda s, b, part: f"blocks.{s - 1}.res_blocks.{b}.{parts[part]}"  # noqa: E731
    else:
        fixed = {"s1.pathway0_stem.conv_xy": "backbone.conv1_s.conv", "s1.pathway0_stem.conv": "backbone.conv1_t.conv",
                 "s1.pathway0_stem.bn": "backbone.conv1_t.bn", "head.conv_5": "backbone.conv5.conv",
                 "head.conv_5_bn": "backbone.conv5.bn", "head.lin_5": "cls_head.fc1", "head.projection": "cls_head.fc2"}
        parts = {"branch1": "downsample.conv", "branch1_bn": "downsample.bn", "branch2.a": "conv1.conv",
                 "branch2.a_bn": "conv1.bn", "branch2.b": "conv2.conv", "branch2.b_bn": "conv2.bn",
                 "branch2.se.fc1": "se_module.fc1", "branch2.se.fc2": "se_module.fc2", "branch2.c": "conv3.conv",
                 "branch2.c_bn": "conv3.bn"}
        block = lambda s, b, part: f"backbone.layer{s - 1}.{b}.{parts[part]}"  # noqa: E731
    m = re.fullmatch(r"s(\d)\.pathway0_res(\d+)\.(.+)", module)
    return f"{fixed[module] if module in fixed else block(int(m[1]), m[2], m[3])}.{leaf}"


@pytest.mark.parametrize("layout", ["pytorchvideo", "mmaction2"])
def test_x3d_loads_pytorchvideo_and_mmaction2_files(tmp_path, layout):
    source = random_model("x3d_m", seed=3)
    state = source.state_dict()
    if layout == "pytorchvideo":    # no BN on res2's shortcut there: the source's passes inputs through
        bn = source.s2.pathway0_res0.branch1_bn
        bn.weight.data.fill_(1), bn.bias.data.zero_(), bn.running_mean.zero_(), bn.running_var.fill_(1 - bn.eps)
        state = {k: v for k, v in source.state_dict().items() if not k.startswith("s2.pathway0_res0.branch1_bn.")}
    theirs = {_x3d_key(k, layout): v for k, v in state.items()}
    if layout == "mmaction2":
        theirs["cls_head.fc1.weight"] = theirs["cls_head.fc1.weight"].flatten(1)      # a Linear there
        torch.save({"meta": {"mmaction2_version": "1.2.0"}, "state_dict": theirs}, tmp_path / "x3d.pth")
    else:
        torch.save({"model_state": theirs}, tmp_path / "x3d.pth")
    loaded = build_backbone("x3d_m", tmp_path / "x3d.pth")
    x = clips()
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), source(x), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(loaded.feature_map(x), source.feature_map(x), rtol=1e-5, atol=1e-5)
    assert loaded.spec.norm.name == "slowfast"


def test_x3d_m_takes_the_key_names_pytorchvideo_writes(tmp_path):
    shapes = json.loads((Path(__file__).parent / "data" / "x3d_m_layouts.json").read_text())["pytorchvideo"]
    state = {k: torch.rand(s) if not k.endswith("num_batches_tracked") else torch.tensor(1) for k, s in shapes.items()}
    torch.save({"model_state": state}, tmp_path / "X3D_M.pyth")
    model = build_backbone("x3d_m", tmp_path / "X3D_M.pyth")
    assert len(state) == 563 and len(model.state_dict()) == 568       # + the pass-through BN on res2's shortcut
    assert torch.equal(model.s1.pathway0_stem.conv_xy.weight, state["blocks.0.conv.conv_t.weight"])


def test_a_torchvision_layout_file_names_the_backbones_that_take_it(tmp_path):
    path = tmp_path / "r2plus1d_34_clip8_ig65m_from_scratch-9bae36ae.pth"
    torch.save(source_model("r2plus1d34_ig65m32").state_dict(), path)
    with pytest.raises(GcfError, match="torchvision's VideoResNet layout: use .* r2plus1d34_ig65m32"):
        build_backbone("r2plus1d34", path, **SMALL["r2plus1d34"])


def test_files_of_other_repositories_say_what_they_are(tmp_path):
    weight = torch.zeros(8, 3, 1, 1, 1)
    files = {"slowfast.pyth": ({"epoch": 1, "model_state": {"s1.pathway0_stem.conv.weight": weight},
                                "cfg": "MODEL: {ARCH: slowfast}"}, "PySlowFast model"),
             "mmaction.pth": ({"meta": {"mmaction2_version": "1.2.0"}, "state_dict": {
                 "backbone.conv1.conv.weight": weight, "cls_head.fc_cls.weight": torch.zeros(400, 2048)}},
                 "MMAction2 ResNet3d .*: use --backbone slow_r50"),
             "rgb_imagenet.pt": (source_model("i3d").state_dict(), "use --backbone i3d"),
             "S3D_kinetics400.pt": ({f"module.{k}": v for k, v in source_model("s3d").state_dict().items()},
                                    "use --backbone s3d")}
    for name, (obj, says) in files.items():
        torch.save(obj, tmp_path / name)
        with pytest.raises(GcfError, match=f"{name}: does not fit resnet18.*{says}"):
            build_backbone("resnet18", tmp_path / name, **SMALL["resnet18"])


def test_shortcut_a_checkpoints_load_with_shortcut_a(tmp_path):
    path = tmp_path / "resnet-18-kinetics.pth"
    source = random_model("resnet18", shortcut="A")
    torch.save({"arch": "resnet-18", "state_dict": source.state_dict()}, path)
    with pytest.raises(GcfError, match="no projection shortcuts: pass --option shortcut=A"):
        build_backbone("resnet18", path, **SMALL["resnet18"])
    loaded = build_backbone("resnet18", path, shortcut="A", **SMALL["resnet18"])
    with torch.no_grad():
        assert torch.equal(loaded(clips()), source(clips()))


def test_files_that_are_not_checkpoints_give_clear_errors(tmp_path):
    good = tmp_path / "good.pth"
    torch.save(source_model("mobilenetv2").state_dict(), good)
    cases = {"notes.txt": (b"not a checkpoint\n", "not a PyTorch checkpoint"),
             "empty.pth": (b"", r"truncated or corrupt checkpoint \(0 bytes\); download it again"),
             "truncated.pth": (good.read_bytes()[:5000], r"truncated or corrupt checkpoint \(5000 bytes\)"),
             "drive.pth": (b"<!DOCTYPE html><html><head><title>Google Drive", "is a web page, not a checkpoint")}
    for filename, (data, words) in cases.items():
        (tmp_path / filename).write_bytes(data)
        with pytest.raises(GcfError, match=rf"{filename}: {words}"):
            build_backbone("mobilenetv2", tmp_path / filename, **SMALL["mobilenetv2"])
    torch.save(torch.nn.Linear(2, 2), tmp_path / "module.pth")  # a pickled model: refused, never unpickled
    with pytest.raises(GcfError, match=r"module.pth: pickles torch.nn.modules.linear.Linear.*state_dict"):
        build_backbone("mobilenetv2", tmp_path / "module.pth")
    torch.save({"model": {"a": torch.zeros(1)}, "fn": os.system}, tmp_path / "fn.pth")   # a blocked module's code
    with pytest.raises(GcfError, match=r"fn.pth: pickles \S*system \(code, not only tensors\)"):
        build_backbone("mobilenetv2", tmp_path / "fn.pth")
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(GcfError, match="list.pth: holds no state dict"):
        build_backbone("mobilenetv2", tmp_path / "list.pth")
    torch.save({"model": "weights.bin"}, tmp_path / "model.pth")
    with pytest.raises(GcfError, match=r"model.pth: holds no state dict \(a dict of tensors; its 'model' entry"):
        build_backbone("mobilenetv2", tmp_path / "model.pth")
    from safetensors.torch import save_file           # the reader goes by content, not by name
    (tmp_path / "login.safetensors").write_bytes(b"<!DOCTYPE html><html><body>Sign in")
    with pytest.raises(GcfError, match="login.safetensors: is a web page"):
        build_backbone("mobilenetv2", tmp_path / "login.safetensors")
    state = source_model("mobilenetv2").state_dict()
    save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / "named.pth")
    good.rename(tmp_path / "zip.safetensors")
    for name in ("named.pth", "zip.safetensors"):
        build_backbone("mobilenetv2", tmp_path / name, **SMALL["mobilenetv2"])
    with pytest.raises(GcfError, match="missing.pth: no such checkpoint file"):
        build_backbone("mobilenetv2", tmp_path / "missing.pth")


def test_weights_identity_is_the_files_sha256(tmp_path):
    path = tmp_path / "w.bin"
    path.write_bytes(np.random.default_rng(0).bytes(3 << 20))
    assert weights_identity(path) == hashlib.sha256(path.read_bytes()).hexdigest()


def test_normalize_conventions():
    frames = np.random.default_rng(0).integers(0, 256, (2, 4, 5, 6, 3), dtype=np.uint8)
    rgb = torch.from_numpy(frames).permute(0, 4, 1, 2, 3).double()
    for name, expected in {
        "kinetics": (rgb / 255 - torch.tensor([0.4345, 0.4051, 0.3775]).view(3, 1, 1, 1))
                    / torch.tensor([0.2768, 0.2713, 0.2737]).view(3, 1, 1, 1),
        "activitynet": rgb - torch.tensor([114.7748, 107.7354, 99.4750]).view(3, 1, 1, 1),
        "activitynet-bgr": rgb.flip(1) - torch.tensor([114.7748, 107.7354, 99.4750]).view(3, 1, 1, 1),
    }.items():
        x = NORMS[name].normalize(frames)
        assert x.shape == (2, 3, 4, 5, 6) and x.dtype == torch.float32
        torch.testing.assert_close(x.double(), expected.double(), rtol=0, atol=1e-4)
    bgr = NORMS["activitynet-bgr"].normalize(torch.from_numpy(frames))
    assert torch.allclose(bgr[:, 0], torch.from_numpy(frames[..., 2]).float() - 114.7748)  # blue comes first


@pytest.mark.parametrize("name", [n for n in REGISTRY
                                  if n != "c3d" and not n.startswith(("videomae", "timesformer", "mvit"))])
def test_descriptor_is_the_pooled_cam_layer_output(name):
    model = random_model(name)
    maps = []
    model.cam_layer.register_forward_hook(lambda module, args, out: maps.append(out))
    x = frames_clips(model.spec)
    with torch.no_grad():
        v, logits = model.descriptor(x), model(x)
    spec = model.spec
    assert v.shape == (2, spec.feature_dim) and logits.shape == (2, spec.num_classes)
    assert maps[0].shape[:2] == (2, spec.feature_dim)
    assert torch.allclose(maps[0].mean(dim=(2, 3, 4)), v)
    assert 1e-2 < v.abs().mean() < 1e2  # calibrated random weights: features neither vanish nor explode
    assert (spec.weights, spec.seed) == ("random", 1)
    trained = {"r2plus1d34_ig65m32": (32, 1, 112), "r2plus1d34_ig65m8": (8, 1, 112), "i3d": (64, 1, 224),
               "s3d": (64, 1, 224), "slow_r50": (8, 8, 224), "slow_r101": (8, 8, 224), "x3d_xs": (4, 12, 160),
               "x3d_s": (13, 6, 160), "x3d_m": (16, 5, 224), "x3d_l": (16, 5, 312), "slowfast_r50": (32, 2, 224),
               "slowfast_r50_4x16": (32, 2, 224), "slowfast_r101": (32, 2, 224), "i3d_r50": (8, 8, 224),
               "i3d_r50_32x2": (32, 2, 224), "r2plus1d_r34_8x8": (8, 8, 224),
               "r2plus1d_r34_32x2": (32, 2, 224), "ircsn_r152": (32, 2, 224), "ipcsn_r152": (32, 2, 224),
               "ircsn_r50": (32, 2, 224), "csn_r101": (32, 2, 224), "i3d_r50_nl_dot": (32, 2, 224),
               "i3d_r50_nl_embedded": (32, 2, 224), "i3d_r50_nl_gaussian": (32, 2, 224), "c2d_r50": (8, 8, 224),
               **{f"swin_{a}": (32, 2, 224) for a in "tsbl"}}  # what the weights saw
    assert (spec.clip_len, spec.frame_step, spec.input_size) == trained.get(name, (16, 1, 112))
    assert backbone_spec(name, **SMALL[name]) == dataclasses.replace(spec, seed=0)


def test_spec_records_the_convention_and_dimensions():
    spec = backbone_spec("resnext101")
    assert (spec.norm.name, spec.norm.value_range, spec.norm.channel_order) == ("activitynet", 255.0, "RGB")
    assert (spec.feature_dim, spec.num_classes, spec.clip_len, spec.input_size) == (2048, 400, 16, 112)
    assert backbone_spec("shufflenetv2", width=2.0).feature_dim == 2048
    assert backbone_spec("mobilenetv2").norm.channel_order == "BGR"
    assert backbone_spec("resnet50", norm="activitynet").norm == NORMS["activitynet"]
    assert backbone_spec("mobilenetv2", width=0.2) == random_model("mobilenetv2", seed=0).spec


def test_random_weights_warn_and_are_rebuilt_exactly_from_their_seed():
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    with pytest.warns(UserWarning, match="RANDOM weights"):
        a = build_backbone("shufflenetv2", "random", width=0.25, seed=7)
    assert torch.equal(torch.rand(3), expected_next)  # the caller's random stream is untouched
    b = random_model("shufflenetv2", seed=7)
    c = random_model("shufflenetv2", seed=8)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    assert not torch.equal(a.conv1[0].weight, c.conv1[0].weight)


def test_bad_names_and_options_are_gcf_errors():
    with pytest.raises(GcfError, match="unknown backbone 'resnext50'; known: resnet18, .*resnext101"):
        build_backbone("resnext50", "random")
    with pytest.raises(GcfError, match="takes no option groups; its options: width, shortcut"):
        build_backbone("resnet18", "random", groups=3)
    with pytest.raises(GcfError, match=r"width must be one of \[0.25, 0.5, 1.0, 1.5, 2.0\], not 0.75"):
        build_backbone("shufflenetv2", "random", width=0.75)
    with pytest.raises(GcfError, match="groups must be one of"):
        build_backbone("shufflenet", "random", groups=5)
    with pytest.raises(GcfError, match="unknown norm 'rgb'; use one of: kinetics, activitynet, activitynet-bgr"):
        build_backbone("mobilenetv2", "random", norm="rgb")


def test_names_include_torchvision_models():
    assert {"resnext101", "r2plus1d50", "shufflenetv2", "tv:r3d_18", "tv:swin3d_t"} <= set(list_backbones())


def torchvision_importable() -> bool:
    try:
        import torchvision.models.video  # noqa: F401
    except Exception:  # ImportError, or its C++ ops failing against this torch
        return False
    return True


@pytest.mark.skipif(torchvision_importable(), reason="torchvision imports here")
def test_tv_backbones_without_torchvision_say_what_to_install():
    with pytest.raises(GcfError, match="tv:r3d_18 needs torchvision.*`tv` extra"):
        build_backbone("tv:r3d_18", "random")


@pytest.mark.skipif(not torchvision_importable(), reason="torchvision cannot be imported")
def test_tv_backbone_descriptor_and_round_trip(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = build_backbone("tv:r3d_18", "random", num_classes=10)
    x = torch.randn(2, 3, 16, 56, 56)
    path = tmp_path / "r3d.pth"
    net_state = {**model.net.state_dict(), **{f"fc.{k}": v for k, v in model.head.state_dict().items()}}
    torch.save(net_state, path)
    loaded = build_backbone("tv:r3d_18", path)
    with torch.no_grad():
        assert model.descriptor(x).shape == (2, 512)
        assert torch.equal(loaded(x), model(x)) and loaded.spec.num_classes == 10


@pytest.mark.skipif(not torchvision_importable(), reason="torchvision cannot be imported")
def test_vmz_r2plus1d_equals_ig65m_pytorchs_model(tmp_path):
    """ig65m-pytorch's r2plus1d_34 (torchvision's VideoResNet, widened convs, eps 1e-3), its state dict saved
    as its releases are: ours loads it strictly and computes the same logits."""
    from torchvision.models.video.resnet import BasicBlock, Conv2Plus1D, R2Plus1dStem, VideoResNet

    torch.manual_seed(0)
    ref = VideoResNet(block=BasicBlock, conv_makers=[Conv2Plus1D] * 4, layers=[3, 4, 6, 3], stem=R2Plus1dStem,
                      num_classes=400)
    for layer, width in ((ref.layer2, 288), (ref.layer3, 576), (ref.layer4, 1152)):
        planes = layer[0].conv2[1].num_features
        layer[0].conv2[0] = Conv2Plus1D(planes, planes, width)
    for m in ref.modules():
        if isinstance(m, torch.nn.BatchNorm3d):
            m.eps = 1e-3
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 2.0)
    path = tmp_path / "r2plus1d_34_clip8_ft_kinetics_from_ig65m-0aa0550b.pth"
    torch.save(ref.eval().state_dict(), path)
    ours = build_backbone("r2plus1d34_ig65m8", path)
    x = torch.randn(1, 3, 8, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), rtol=0, atol=1e-6)


def test_importing_gcf_extract_does_not_import_torch():
    code = "import sys, gcf.extract; assert 'torch' not in sys.modules; print(len(gcf.extract.list_backbones()))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1]).stdout
    assert int(out) == len(list_backbones())
