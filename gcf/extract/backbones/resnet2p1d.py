"""R(2+1)D-18/34/50/101 with the module names and shapes of kenshohara/3D-ResNets-PyTorch (master,
models/resnet2p1d.py): every t x k x k convolution of the 3D ResNet becomes a 1 x k x k spatial convolution
(`*_s`) and a t x 1 x 1 temporal one (`*_t`) with as many middle channels as keep the parameter count.
"""

from __future__ import annotations

import torch
from torch import nn

from gcf.extract.backbones.base import conv3d
from gcf.extract.backbones.resnet import STAGES, ResNet3d


def mid_planes(cin: int, cout: int, t: int, k: int) -> int:
    """Middle channels that give the (2+1)D pair about the parameters of one t x k x k convolution."""
    return cin * cout * t * k * k // (cin * k * k + t * cout)


def conv_s(cin: int, cout: int, stride: int = 1) -> nn.Conv3d:
    """1x3x3 spatial convolution."""
    return nn.Conv3d(cin, cout, (1, 3, 3), (1, stride, stride), (0, 1, 1), bias=False)


def conv_t(cin: int, cout: int, stride: int = 1) -> nn.Conv3d:
    """3x1x1 temporal convolution."""
    return nn.Conv3d(cin, cout, (3, 1, 1), (stride, 1, 1), (1, 0, 0), bias=False)


class BasicBlock2p1d(nn.Module):
    """Two (2+1)D convolutions and a residual connection."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        mid1, mid2 = mid_planes(in_planes, planes, 3, 3), mid_planes(planes, planes, 3, 3)
        self.conv1_s = conv_s(in_planes, mid1, stride)
        self.bn1_s = nn.BatchNorm3d(mid1)
        self.conv1_t = conv_t(mid1, planes, stride)
        self.bn1_t = nn.BatchNorm3d(planes)
        self.conv2_s = conv_s(planes, mid2)
        self.bn2_s = nn.BatchNorm3d(mid2)
        self.conv2_t = conv_t(mid2, planes)
        self.bn2_t = nn.BatchNorm3d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1_s(self.conv1_s(x)))
        out = self.relu(self.bn1_t(self.conv1_t(out)))
        out = self.relu(self.bn2_s(self.conv2_s(out)))
        out = self.bn2_t(self.conv2_t(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class Bottleneck2p1d(nn.Module):
    """1x1x1 reduce, a (2+1)D convolution, 1x1x1 expand (x4), and a residual connection."""

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        mid = mid_planes(planes, planes, 3, 3)
        self.conv1 = conv3d(in_planes, planes)
        self.bn1 = nn.BatchNorm3d(planes)
        self.conv2_s = conv_s(planes, mid, stride)
        self.bn2_s = nn.BatchNorm3d(mid)
        self.conv2_t = conv_t(mid, planes, stride)
        self.bn2_t = nn.BatchNorm3d(planes)
        self.conv3 = conv3d(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm3d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2_s(self.conv2_s(out)))
        out = self.relu(self.bn2_t(self.conv2_t(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class R2Plus1d(ResNet3d):
    """The 3D ResNet trunk with a (2+1)D stem: conv1_s 1x7x7 stride (1, 2, 2), then conv1_t 7x1x1."""

    def make_stem(self, out_planes: int) -> None:
        mid = mid_planes(3, out_planes, 7, 7)
        self.conv1_s = nn.Conv3d(3, mid, (1, 7, 7), (1, 2, 2), (0, 3, 3), bias=False)
        self.bn1_s = nn.BatchNorm3d(mid)
        self.conv1_t = nn.Conv3d(mid, out_planes, (7, 1, 1), 1, (3, 0, 0), bias=False)
        self.bn1_t = nn.BatchNorm3d(out_planes)

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1_s(self.conv1_s(x)))
        return self.relu(self.bn1_t(self.conv1_t(x)))


def r2plus1d(depth: int, num_classes: int, width: float = 1.0, shortcut: str = "B") -> R2Plus1d:
    """R(2+1)D-`depth` (18, 34, 50, 101)."""
    kind, layers = STAGES[depth]
    block = BasicBlock2p1d if kind == "basic" else Bottleneck2p1d
    return R2Plus1d(block, layers, num_classes, shortcut=shortcut, width=width)
