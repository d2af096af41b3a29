"""R(2+1)D-34 of facebookresearch/VMZ (Caffe2), in the module names of its PyTorch ports: torchvision's
VideoResNet layout (`stem`, `layerN.M.conv1.0.{0,3}`, `fc`) as moabitcoin/ig65m-pytorch and VMZ's own PyTorch
code save the IG65M and IG65M->Kinetics weights.

Two Caffe2 details differ from torchvision's r2plus1d_18: each (2+1)D convolution's middle width comes from its own
input and output channels (torchvision gives the second convolution of a stage's first block the first one's:
230 instead of 288 channels in layer2; VMZ issue 89, torchvision issue 1265), and BatchNorm uses eps 1e-3.
"""

from __future__ import annotations

import torch
from torch import nn

from gcf.extract.backbones.base import Backbone
from gcf.extract.backbones.resnet2p1d import conv_s, conv_t, mid_planes

LAYERS = {34: (3, 4, 6, 3)}   # the depth with published weights (IG-65M, Kinetics, Sports-1M)
EPS = 1e-3  # Caffe2's BatchNorm epsilon, which the published weights were trained with


def conv2plus1d(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    """1x3x3 spatial conv to the middle width, BN, ReLU, 3x1x1 temporal conv: torchvision's Conv2Plus1D."""
    mid = mid_planes(cin, cout, 3, 3)
    return nn.Sequential(conv_s(cin, mid, stride), nn.BatchNorm3d(mid, eps=EPS), nn.ReLU(inplace=True),
                         conv_t(mid, cout, stride))


class Block(nn.Module):
    """Two (2+1)D convolutions (each followed by BN) and a residual connection."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Sequential(conv2plus1d(cin, cout, stride), nn.BatchNorm3d(cout, eps=EPS), nn.ReLU(True))
        self.conv2 = nn.Sequential(conv2plus1d(cout, cout), nn.BatchNorm3d(cout, eps=EPS))
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv3d(cin, cout, 1, stride, bias=False),
                                            nn.BatchNorm3d(cout, eps=EPS))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(self.conv2(self.conv1(x)) + shortcut)


class VMZR2Plus1d(Backbone):
    """Stem (1x7x7 stride 2 to 45 channels, 3x1x1 to 64), four stages of 64-512 channels, average pool, fc.
    `width` scales every channel count (1.0: the published networks)."""

    def __init__(self, layers: tuple[int, ...], num_classes: int, width: float = 1.0):
        super().__init__()
        stem, planes = max(1, int(45 * width)), [max(1, int(c * width)) for c in (64, 128, 256, 512)]
        self.stem = nn.Sequential(nn.Conv3d(3, stem, (1, 7, 7), (1, 2, 2), (0, 3, 3), bias=False),
                                  nn.BatchNorm3d(stem, eps=EPS), nn.ReLU(inplace=True),
                                  nn.Conv3d(stem, planes[0], (3, 1, 1), 1, (1, 0, 0), bias=False),
                                  nn.BatchNorm3d(planes[0], eps=EPS), nn.ReLU(inplace=True))
        cin = planes[0]
        for i, (count, cout) in enumerate(zip(layers, planes), 1):
            stride = 1 if i == 1 else 2
            setattr(self, f"layer{i}", nn.Sequential(*[Block(cin if j == 0 else cout, cout, stride if j == 0 else 1)
                                                       for j in range(count)]))
            cin = cout
        self.fc = nn.Linear(cin, num_classes)
        self.feature_dim = cin

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer4(self.layer3(self.layer2(self.layer1(self.stem(x)))))

    def classify(self, v: torch.Tensor) -> torch.Tensor:
        return self.fc(v)

    @property
    def cam_layer(self) -> nn.Module:
        return self.layer4


def vmz_r2plus1d(depth: int, num_classes: int, width: float = 1.0) -> VMZR2Plus1d:
    """VMZ's R(2+1)D-`depth` (34)."""
    return VMZR2Plus1d(LAYERS[depth], num_classes, width)
