"""3D ResNeXt-101 (cardinality 32, shortcut B) with the module names and shapes of the published
resnext-101-kinetics.pth: the CVPR2018 branch of kenshohara/3D-ResNets-PyTorch (models/resnext.py), which
okankop/Efficient-3DCNNs' models/resnext.py repeats. The 3D ResNet trunk with stage widths 128..1024 and
grouped bottlenecks of expansion 2; its fixed-size average pool (global at 16x112x112) becomes a global mean.
"""

from __future__ import annotations

import torch
from torch import nn

from gcf.extract.backbones.base import conv3d
from gcf.extract.backbones.resnet import ResNet3d

CARDINALITY = 32


class ResNeXtBottleneck(nn.Module):
    """1x1x1 reduce, grouped 3x3x3 (32 groups), 1x1x1 expand (x2), and a residual connection."""

    expansion = 2

    def __init__(self, in_planes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        mid = CARDINALITY * (planes // 32)
        self.conv1 = conv3d(in_planes, mid)
        self.bn1 = nn.BatchNorm3d(mid)
        self.conv2 = conv3d(mid, mid, 3, stride, groups=CARDINALITY)
        self.bn2 = nn.BatchNorm3d(mid)
        self.conv3 = conv3d(mid, planes * self.expansion)
        self.bn3 = nn.BatchNorm3d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


def resnext(depth: int, num_classes: int, width: float = 1.0, shortcut: str = "B") -> ResNet3d:
    """3D ResNeXt-`depth` (101). `width` != 1 has no published weights (it keeps tests small); keep width >= 0.25."""
    layers = {101: (3, 4, 23, 3)}[depth]
    return ResNet3d(ResNeXtBottleneck, layers, num_classes, planes=(128, 256, 512, 1024), stem_planes=64,
                    shortcut=shortcut, width=width)
