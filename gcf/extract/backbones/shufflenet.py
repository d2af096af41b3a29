"""3D ShuffleNet (v1) with group and width options, in the layout of okankop/Efficient-3DCNNs
(models/shufflenet.py): `conv1` 3x3x3 stem (stride 1, 2, 2), max pool, three stages of grouped bottlenecks with
channel shuffle (4, 8, 4 blocks; the first of each strides 2 and concatenates an average-pooled shortcut),
`classifier` = dropout + linear.
"""

from __future__ import annotations

import torch
from torch import nn

from gcf.errors import GcfError
from gcf.extract.backbones.base import Backbone, channel_shuffle, conv3d, conv_bn

# groups -> output channels of the stem and the three stages, before the width multiplier
STAGE_PLANES = {1: (24, 144, 288, 567), 2: (24, 200, 400, 800), 3: (24, 240, 480, 960),
                4: (24, 272, 544, 1088), 8: (24, 384, 768, 1536)}
BLOCKS = (4, 8, 4)


class ShuffleBottleneck(nn.Module):
    """Grouped 1x1x1, shuffle, depthwise 3x3x3, grouped 1x1x1; add (stride 1) or concat a pooled shortcut (stride 2)."""

    def __init__(self, in_planes: int, out_planes: int, stride: int, groups: int):
        super().__init__()
        self.stride, self.groups = stride, groups
        mid = out_planes // 4
        if stride == 2:
            out_planes -= in_planes
        # as in the reference: the first 1x1x1 is ungrouped exactly when its input has 24 channels
        self.conv1 = conv3d(in_planes, mid, groups=1 if in_planes == 24 else groups)
        self.bn1 = nn.BatchNorm3d(mid)
        self.conv2 = conv3d(mid, mid, 3, stride, groups=mid)
        self.bn2 = nn.BatchNorm3d(mid)
        self.conv3 = conv3d(mid, out_planes, groups=groups)
        self.bn3 = nn.BatchNorm3d(out_planes)
        self.relu = nn.ReLU(inplace=True)
        if stride == 2:
            self.shortcut = nn.AvgPool3d(kernel_size=(2, 3, 3), stride=2, padding=(0, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = channel_shuffle(self.relu(self.bn1(self.conv1(x))), self.groups)
        out = self.bn3(self.conv3(self.bn2(self.conv2(out))))
        if self.stride == 2:
            return self.relu(torch.cat([out, self.shortcut(x)], 1))
        return self.relu(out + x)


class ShuffleNet3d(Backbone):
    def __init__(self, num_classes: int, groups: int = 3, width: float = 1.0):
        super().__init__()
        if groups not in STAGE_PLANES:
            raise GcfError(f"shufflenet groups must be one of {sorted(STAGE_PLANES)}, not {groups}")
        planes = [int(p * width) for p in STAGE_PLANES[groups]]
        self.in_planes = planes[0]
        self.conv1 = nn.Sequential(*conv_bn(3, planes[0], 3, (1, 2, 2), act=nn.ReLU))
        self.maxpool = nn.MaxPool3d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self.make_stage(planes[1], BLOCKS[0], groups)
        self.layer2 = self.make_stage(planes[2], BLOCKS[1], groups)
        self.layer3 = self.make_stage(planes[3], BLOCKS[2], groups)
        self.feature_dim = planes[3]
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(planes[3], num_classes))

    def make_stage(self, out_planes: int, blocks: int, groups: int) -> nn.Sequential:
        layers = []
        for i in range(blocks):
            layers.append(ShuffleBottleneck(self.in_planes, out_planes, 2 if i == 0 else 1, groups))
            self.in_planes = out_planes
        return nn.Sequential(*layers)

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.conv1(x))
        return self.layer3(self.layer2(self.layer1(x)))

    @property
    def cam_layer(self) -> nn.Module:
        return self.layer3


def shufflenet(num_classes: int, width: float = 1.0, groups: int = 3) -> ShuffleNet3d:
    """3D ShuffleNet with `groups` (1, 2, 3, 4, 8) grouped 1x1x1 convolutions and width multiplier `width`."""
    return ShuffleNet3d(num_classes, groups, width)
