"""3D ResNet-18/34/50/101 with the module names and shapes of kenshohara/3D-ResNets-PyTorch (master,
models/resnet.py): conv1 7x7x7 stride (1, 2, 2), max pool, four stages, fc. Also the trunk that R(2+1)D and
ResNeXt reuse with their own blocks. Checkpoints of master and of the CVPR2018 branch (same names) load unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gcf.errors import GcfError
from gcf.extract.backbones.base import Backbone, conv3d

STAGES = {18: ("basic", (2, 2, 2, 2)), 34: ("basic", (3, 4, 6, 3)),
          50: ("bottleneck", (3, 4, 6, 3)), 101: ("bottleneck", (3, 4, 23, 3))}


class ZeroPadShortcut(nn.Module):
    """Shortcut type A: subsample by the stride and append zero channels (parameter-free)."""

    def __init__(self, out_planes: int, stride: int):
        super().__init__()
        self.out_planes, self.stride = out_planes, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.stride
        x = x[:, :, ::s, ::s, ::s]
        return F.pad(x, (0, 0, 0, 0, 0, 0, 0, self.out_planes - x.shape[1]))


def shortcut(kind: str, in_planes: int, out_planes: int, stride: int) -> nn.Module | None:
    """The residual branch's projection: none when shapes agree, else type A (zero pad) or B (1x1x1 conv + BN)."""
    if stride == 1 and in_planes == out_planes:
        return None
    if kind == "A":
        return ZeroPadShortcut(out_planes, stride)
    return nn.Sequential(conv3d(in_planes, out_planes, 1, stride), nn.BatchNorm3d(out_planes))


class BasicBlock(nn.Module):
    """Two 3x3x3 convolutions and a residual connection."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = conv3d(in_planes, planes, 3, stride)
        self.bn1 = nn.BatchNorm3d(planes)
        self.conv2 = conv3d(planes, planes, 3)
        self.bn2 = nn.BatchNorm3d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class Bottleneck(nn.Module):
    """1x1x1 reduce, 3x3x3, 1x1x1 expand (x4), and a residual connection."""

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = conv3d(in_planes, planes)
        self.bn1 = nn.BatchNorm3d(planes)
        self.conv2 = conv3d(planes, planes, 3, stride)
        self.bn2 = nn.BatchNorm3d(planes)
        self.conv3 = conv3d(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm3d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class ResNet3d(Backbone):
    """Stem, max pool, four residual stages (strides 1, 2, 2, 2), global average pool, fc.

    `planes` are the stages' block widths and `stem_planes` the stem's output channels, both scaled by `width`
    (master's widen_factor); `shortcut` is "B" (projection, as the published weights) or "A" (zero padding).
    """

    def __init__(self, block: type[nn.Module], layers: tuple[int, ...], num_classes: int,
                 planes: tuple[int, ...] = (64, 128, 256, 512), stem_planes: int = 64,
                 shortcut: str = "B", width: float = 1.0):
        super().__init__()
        if shortcut not in ("A", "B"):
            raise GcfError(f"shortcut must be 'A' or 'B', not {shortcut!r}")
        planes = [int(p * width) for p in planes]
        self.in_planes = int(stem_planes * width)
        self.make_stem(self.in_planes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool3d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self.make_stage(block, planes[0], layers[0], shortcut, stride=1)
        self.layer2 = self.make_stage(block, planes[1], layers[1], shortcut, stride=2)
        self.layer3 = self.make_stage(block, planes[2], layers[2], shortcut, stride=2)
        self.layer4 = self.make_stage(block, planes[3], layers[3], shortcut, stride=2)
        self.feature_dim = planes[3] * block.expansion
        self.fc = nn.Linear(self.feature_dim, num_classes)

    def make_stem(self, out_planes: int) -> None:
        """conv1: 7x7x7, stride (1, 2, 2)."""
        self.conv1 = conv3d(3, out_planes, 7, (1, 2, 2))
        self.bn1 = nn.BatchNorm3d(out_planes)

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn1(self.conv1(x)))

    def make_stage(self, block: type[nn.Module], planes: int, blocks: int, kind: str, stride: int) -> nn.Sequential:
        out_planes = planes * block.expansion
        layers = [block(self.in_planes, planes, stride, shortcut(kind, self.in_planes, out_planes, stride))]
        layers += [block(out_planes, planes) for _ in range(1, blocks)]
        self.in_planes = out_planes
        return nn.Sequential(*layers)

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.stem(x))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def classify(self, v: torch.Tensor) -> torch.Tensor:
        return self.fc(v)

    @property
    def cam_layer(self) -> nn.Module:
        return self.layer4


def resnet(depth: int, num_classes: int, width: float = 1.0, shortcut: str = "B") -> ResNet3d:
    """3D ResNet-`depth` (18, 34, 50, 101)."""
    kind, layers = STAGES[depth]
    return ResNet3d(BasicBlock if kind == "basic" else Bottleneck, layers, num_classes, shortcut=shortcut, width=width)
