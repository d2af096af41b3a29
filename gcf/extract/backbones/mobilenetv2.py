"""3D MobileNetV2 with a width multiplier, in the layout of okankop/Efficient-3DCNNs (models/mobilenetv2.py):
`features` = a 3x3x3 stem (stride 1, 2, 2), 17 inverted residual blocks and a 1x1x1 conv to 1280 channels
(1280 * width above width 1), `classifier` = dropout + linear. The paper's "3D-MobileNet" is width 1.0.
"""

from __future__ import annotations

import torch
from torch import nn

from gcf.extract.backbones.base import Backbone, conv_bn

# (expansion, output channels, blocks, stride of the first block)
STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


class InvertedResidual(nn.Module):
    """`conv` = [1x1x1 expand + ReLU6] + depthwise 3x3x3 + ReLU6 + linear 1x1x1; residual when shapes agree."""

    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int):
        super().__init__()
        hidden = round(inp * expand_ratio)
        expand = conv_bn(inp, hidden, act=nn.ReLU6) if expand_ratio != 1 else []
        self.conv = nn.Sequential(*expand, *conv_bn(hidden, hidden, 3, stride, groups=hidden, act=nn.ReLU6),
                                  *conv_bn(hidden, oup))
        self.use_res_connect = stride == 1 and inp == oup

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2_3d(Backbone):
    def __init__(self, num_classes: int, width: float = 1.0):
        super().__init__()
        channels = int(32 * width)
        last = int(1280 * width) if width > 1.0 else 1280
        layers = [nn.Sequential(*conv_bn(3, channels, 3, (1, 2, 2), act=nn.ReLU6))]
        for t, c, n, s in STAGES:
            for i in range(n):
                layers.append(InvertedResidual(channels, int(c * width), s if i == 0 else 1, t))
                channels = int(c * width)
        layers.append(nn.Sequential(*conv_bn(channels, last, act=nn.ReLU6)))
        self.features = nn.Sequential(*layers)
        self.feature_dim = last
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(last, num_classes))


def mobilenetv2(num_classes: int, width: float = 1.0) -> MobileNetV2_3d:
    """3D MobileNetV2 with channel width multiplier `width`."""
    return MobileNetV2_3d(num_classes, width)
