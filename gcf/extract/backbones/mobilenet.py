"""3D MobileNet (v1) with a width multiplier, in the layout of okankop/Efficient-3DCNNs (models/mobilenet.py):
`features` = a 3x3x3 stem (stride 1, 2, 2) and 13 depthwise-separable blocks, `classifier` = dropout + linear.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gcf.extract.backbones.base import Backbone, conv3d, conv_bn

# (output channels, blocks, stride of the first block)
STAGES = ((64, 1, 2), (128, 2, 2), (256, 2, 2), (512, 6, 2), (1024, 2, 1))


class DepthwiseSeparable(nn.Module):
    """Depthwise 3x3x3 then pointwise 1x1x1, each with BN and ReLU."""

    def __init__(self, in_planes: int, out_planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = conv3d(in_planes, in_planes, 3, stride, groups=in_planes)
        self.bn1 = nn.BatchNorm3d(in_planes)
        self.conv2 = conv3d(in_planes, out_planes)
        self.bn2 = nn.BatchNorm3d(out_planes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))


class MobileNet3d(Backbone):
    def __init__(self, num_classes: int, width: float = 1.0):
        super().__init__()
        channels = int(32 * width)
        layers = [nn.Sequential(*conv_bn(3, channels, 3, (1, 2, 2), act=nn.ReLU))]
        for c, n, s in STAGES:
            for i in range(n):
                layers.append(DepthwiseSeparable(channels, int(c * width), s if i == 0 else 1))
                channels = int(c * width)
        self.features = nn.Sequential(*layers)
        self.feature_dim = channels
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(channels, num_classes))


def mobilenet(num_classes: int, width: float = 1.0) -> MobileNet3d:
    """3D MobileNet with channel width multiplier `width`."""
    return MobileNet3d(num_classes, width)
