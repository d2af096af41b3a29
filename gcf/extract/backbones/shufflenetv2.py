"""3D ShuffleNetV2 with a width multiplier, in the layout of okankop/Efficient-3DCNNs (models/shufflenetv2.py):
`conv1` 3x3x3 stem (stride 1, 2, 2), max pool, `features` = 16 split/shuffle units (4, 8, 4), `conv_last`
1x1x1, `classifier` = dropout + linear. The branch modules keep the reference's spelling `banch1`/`banch2`,
which its checkpoints carry. The paper's "3D-ShuffleNet" is width 2.0.
"""

from __future__ import annotations

import torch
from torch import nn

from gcf.errors import GcfError
from gcf.extract.backbones.base import Backbone, channel_shuffle, conv_bn

# width -> output channels of the three stages and conv_last (the stem has 24)
STAGE_PLANES = {0.25: (32, 64, 128, 1024), 0.5: (48, 96, 192, 1024), 1.0: (116, 232, 464, 1024),
                1.5: (176, 352, 704, 1024), 2.0: (224, 488, 976, 2048)}
BLOCKS = (4, 8, 4)


class ShuffleUnit(nn.Module):
    """Stride 1: split channels, transform one half; stride 2: transform the whole input twice. Concat, shuffle."""

    def __init__(self, inp: int, oup: int, stride: int):
        super().__init__()
        self.stride = stride
        half = oup // 2
        if stride == 2:
            self.banch1 = nn.Sequential(*conv_bn(inp, inp, 3, stride, groups=inp), *conv_bn(inp, half, act=nn.ReLU))
        branch_in = inp if stride == 2 else half
        self.banch2 = nn.Sequential(*conv_bn(branch_in, half, act=nn.ReLU),
                                    *conv_bn(half, half, 3, stride, groups=half), *conv_bn(half, half, act=nn.ReLU))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 2:
            out = torch.cat((self.banch1(x), self.banch2(x)), 1)
        else:
            x1, x2 = x.chunk(2, dim=1)
            out = torch.cat((x1, self.banch2(x2)), 1)
        return channel_shuffle(out, 2)


class ShuffleNetV2_3d(Backbone):
    def __init__(self, num_classes: int, width: float = 1.0):
        super().__init__()
        if width not in STAGE_PLANES:
            raise GcfError(f"shufflenetv2 width must be one of {sorted(STAGE_PLANES)}, not {width}")
        *stages, last = STAGE_PLANES[width]
        self.conv1 = nn.Sequential(*conv_bn(3, 24, 3, (1, 2, 2), act=nn.ReLU))
        self.maxpool = nn.MaxPool3d(kernel_size=3, stride=2, padding=1)
        units, channels = [], 24
        for out, n in zip(stages, BLOCKS):
            for i in range(n):
                units.append(ShuffleUnit(channels, out, 2 if i == 0 else 1))
                channels = out
        self.features = nn.Sequential(*units)
        self.conv_last = nn.Sequential(*conv_bn(channels, last, act=nn.ReLU))
        self.feature_dim = last
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(last, num_classes))

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_last(self.features(self.maxpool(self.conv1(x))))

    @property
    def cam_layer(self) -> nn.Module:
        return self.conv_last


def shufflenetv2(num_classes: int, width: float = 1.0) -> ShuffleNetV2_3d:
    """3D ShuffleNetV2 with width multiplier `width` (0.25, 0.5, 1.0, 1.5 or 2.0)."""
    return ShuffleNetV2_3d(num_classes, width)
