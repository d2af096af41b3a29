"""Slow (SlowOnly) ResNet-50/101, the slow pathway of SlowFast without the fast one (Feichtenhofer et al. 2019), with
the module names of MMAction2's `ResNet3dSlowOnly` + `I3DHead` (`backbone.conv1.conv`, `backbone.layer3.0.conv1.bn`,
`cls_head.fc_cls`), so its checkpoints load unchanged. The same network's PyTorchVideo (`slow_r50` on torch.hub,
`SLOW_8x8_R50.pyth`: `blocks.1.res_blocks.0.branch2.conv_a`) and PySlowFast (`s2.pathway0_res0.branch2.a`) state
dicts are renamed into these names on loading (`convert`): the three repositories build the same layers.

Stem: conv 1x7x7 stride (1, 2, 2), max pool 1x3x3 stride (1, 2, 2). Bottleneck blocks with the stride on the 3x3
conv; res2-res3 purely spatial (1x1x1 reduce), res4-res5 with a 3x1x1 temporal reduce. No temporal stride anywhere:
an 8-frame clip gives an 8-step map.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from gcf.extract.backbones.base import Backbone
from gcf.extract.backbones.checkpoint import Checkpoint, rename_modules

STAGES = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}
TEMPORAL = (False, False, True, True)   # stages whose blocks start with a 3x1x1 conv (MMAction2's inflate=(0,0,1,1))


class ConvBN(nn.Module):
    """mmcv's ConvModule as these models use it: bias-free conv ('same' padding), BatchNorm, optional ReLU."""

    def __init__(self, cin: int, cout: int, kernel: tuple[int, int, int], stride: tuple[int, int, int] = (1, 1, 1),
                 relu: bool = True):
        super().__init__()
        self.conv = nn.Conv3d(cin, cout, kernel, stride, tuple(k // 2 for k in kernel), bias=False)
        self.bn = nn.BatchNorm3d(cout)
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.conv(x))
        return torch.relu_(x) if self.relu else x


class Bottleneck(nn.Module):
    """1x1x1 (3x1x1 when `temporal`) reduce, 1x3x3 with the spatial stride, 1x1x1 expand (x4), residual."""

    def __init__(self, cin: int, planes: int, stride: int, temporal: bool):
        super().__init__()
        s = (1, stride, stride)
        self.conv1 = ConvBN(cin, planes, (3, 1, 1) if temporal else (1, 1, 1))
        self.conv2 = ConvBN(planes, planes, (1, 3, 3), s)
        self.conv3 = ConvBN(planes, planes * 4, (1, 1, 1), relu=False)
        self.downsample = ConvBN(cin, planes * 4, (1, 1, 1), s, relu=False) if stride > 1 or cin != planes * 4 \
            else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv3(self.conv2(self.conv1(x)))
        return torch.relu_(out + (x if self.downsample is None else self.downsample(x)))


class Trunk(nn.Module):
    """MMAction2's `backbone` (ResNet3d): stem and four stages (spatial strides 1, 2, 2, 2), widths scaled by
    `width`. SlowFast builds its pathways from it: `stem_t` and `temporal` set the temporal kernels, `extra` adds
    input channels to each stage's first block (the fast pathway's lateral, concatenated to the slow one)."""

    def __init__(self, layers: tuple[int, ...], width: float = 1.0, stem_t: int = 1,
                 temporal: tuple[bool, ...] = TEMPORAL, extra: tuple[int, ...] = (0, 0, 0, 0)):
        super().__init__()
        cin = int(64 * width)
        self.conv1 = ConvBN(3, cin, (stem_t, 7, 7), (1, 2, 2))
        self.maxpool = nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1))
        for i, (blocks, t, more) in enumerate(zip(layers, temporal, extra)):
            planes = int(64 * width) * 2 ** i
            stage = [Bottleneck(cin + more if b == 0 else planes * 4, planes, 2 if i and b == 0 else 1, t)
                     for b in range(blocks)]
            self.add_module(f"layer{i + 1}", nn.Sequential(*stage))
            cin = planes * 4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.conv1(x))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


class Head(nn.Module):
    """MMAction2's `cls_head` (I3DHead): the classifier on the pooled descriptor (its dropout is off at inference)."""

    def __init__(self, feature_dim: int, num_classes: int):
        super().__init__()
        self.fc_cls = nn.Linear(feature_dim, num_classes)


class SlowResNet(Backbone):
    """Slow ResNet: MMAction2 recognizer layout (`backbone`, `cls_head`)."""

    def __init__(self, layers: tuple[int, ...], num_classes: int, width: float = 1.0):
        super().__init__()
        self.backbone = Trunk(layers, width)
        self.feature_dim = int(64 * width) * 8 * 4
        self.cls_head = Head(self.feature_dim, num_classes)

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    def classify(self, v: torch.Tensor) -> torch.Tensor:
        return self.cls_head.fc_cls(v)

    @property
    def cam_layer(self) -> nn.Module:
        return self.backbone.layer4


def slow(depth: int, num_classes: int, width: float = 1.0) -> SlowResNet:
    """Slow ResNet-`depth` (50, 101); `width` other than 1 has no published weights (tests use it to stay small)."""
    return SlowResNet(STAGES[depth], num_classes, width)


# -- other repositories' names for the same layers -----------------------------------------------------------------

# a bottleneck's parts in PyTorchVideo's and PySlowFast's names -> ours (SlowFast's pathways use them too)
PYTORCHVIDEO_PARTS = {"branch1_conv": "downsample.conv", "branch1_norm": "downsample.bn",
                      "branch2.conv_a": "conv1.conv", "branch2.norm_a": "conv1.bn", "branch2.conv_b": "conv2.conv",
                      "branch2.norm_b": "conv2.bn", "branch2.conv_c": "conv3.conv", "branch2.norm_c": "conv3.bn"}
PYSLOWFAST_PARTS = {"branch1": "downsample.conv", "branch1_bn": "downsample.bn", "branch2.a": "conv1.conv",
                    "branch2.a_bn": "conv1.bn", "branch2.b": "conv2.conv", "branch2.b_bn": "conv2.bn",
                    "branch2.c": "conv3.conv", "branch2.c_bn": "conv3.bn"}
_FIXED = {"blocks.0.conv": "backbone.conv1.conv", "blocks.0.norm": "backbone.conv1.bn",
          "blocks.5.proj": "cls_head.fc_cls",
          "s1.pathway0_stem.conv": "backbone.conv1.conv", "s1.pathway0_stem.bn": "backbone.conv1.bn",
          "head.projection": "cls_head.fc_cls"}


def convert(ckpt: Checkpoint) -> Checkpoint:
    """A PyTorchVideo or PySlowFast Slow ResNet state dict in MMAction2's names, with that repository's input
    convention (both: [0, 1] pixels, mean 0.45, std 0.225); MMAction2's own (ImageNet statistics on [0, 255]) and
    other files unchanged, bar the origin."""
    state = ckpt.state_dict
    if "blocks.0.conv.weight" in state:      # create_resnet: blocks.0 stem, blocks.1-4 stages, blocks.5 head
        renamed = rename_modules(state, _FIXED, r"blocks\.(\d)\.res_blocks\.(\d+)", PYTORCHVIDEO_PARTS,
                                 "backbone.layer{}.{}")
        return Checkpoint(renamed, "facebookresearch/pytorchvideo", "slowfast")
    if "s1.pathway0_stem.conv.weight" in state:
        renamed = rename_modules(state, _FIXED, r"s(\d)\.pathway0_res(\d+)", PYSLOWFAST_PARTS, "backbone.layer{}.{}",
                                 offset=-1)
        return Checkpoint(renamed, "facebookresearch/SlowFast", "slowfast")
    if any(k.startswith("backbone.conv1.conv.") for k in state):
        return dataclasses.replace(ckpt, origin="open-mmlab/mmaction2", norm="imagenet")
    return ckpt
