"""S3D (Xie et al. 2018: I3D's Inception widths with every 3D conv separated into 1xkxk spatial and kx1x1 temporal)
with the module names of kylemin/S3D (`model.py`), whose `S3D_kinetics400.pt` is the S3D video_features extracts
with: a `base` Sequential of 16 stages and an `fc` 1x1x1 conv. Plain symmetric padding, BatchNorm eps 1e-3.
"""

from __future__ import annotations

import torch
from torch import nn

from gcf.extract.backbones.base import Backbone
from gcf.extract.backbones.i3d import MIXED, ORDER


def bn(channels: int) -> nn.BatchNorm3d:
    return nn.BatchNorm3d(channels, eps=1e-3, momentum=0.001)


class BasicConv3d(nn.Module):
    """1x1x1 conv, BN, ReLU (`conv`, `bn`)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv, self.bn = nn.Conv3d(cin, cout, 1, bias=False), bn(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.bn(self.conv(x)))


class SepConv3d(nn.Module):
    """1xkxk conv, BN, ReLU, then kx1x1 conv, BN, ReLU (`conv_s`, `bn_s`, `conv_t`, `bn_t`)."""

    def __init__(self, cin: int, cout: int, k: int = 3, stride: int = 1):
        super().__init__()
        pad = k // 2
        self.conv_s = nn.Conv3d(cin, cout, (1, k, k), (1, stride, stride), (0, pad, pad), bias=False)
        self.bn_s = bn(cout)
        self.conv_t = nn.Conv3d(cout, cout, (k, 1, 1), (stride, 1, 1), (pad, 0, 0), bias=False)
        self.bn_t = bn(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.bn_t(self.conv_t(torch.relu(self.bn_s(self.conv_s(x))))))


class Mixed(nn.Module):
    """I3D's four branches with separable 3x3x3 convs, as Sequentials `branch0`..`branch3`, concatenated."""

    def __init__(self, cin: int, widths: tuple[int, ...]):
        super().__init__()
        w0, w1a, w1b, w2a, w2b, w3b = widths
        self.branch0 = nn.Sequential(BasicConv3d(cin, w0))
        self.branch1 = nn.Sequential(BasicConv3d(cin, w1a), SepConv3d(w1a, w1b))
        self.branch2 = nn.Sequential(BasicConv3d(cin, w2a), SepConv3d(w2a, w2b))
        self.branch3 = nn.Sequential(nn.MaxPool3d(3, 1, 1), BasicConv3d(cin, w3b))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch0(x), self.branch1(x), self.branch2(x), self.branch3(x)], 1)


def stages() -> list[nn.Module]:
    """I3D's 16 stages in order (`i3d.ORDER`), separable and symmetrically padded: the port's `base`."""
    fixed = {"Conv3d_1a_7x7": SepConv3d(3, 64, 7, 2), "MaxPool3d_2a_3x3": nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)),
             "Conv3d_2b_1x1": BasicConv3d(64, 64), "Conv3d_2c_3x3": SepConv3d(64, 192),
             "MaxPool3d_3a_3x3": nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)),
             "MaxPool3d_4a_3x3": nn.MaxPool3d(3, 2, 1), "MaxPool3d_5a_2x2": nn.MaxPool3d(2, 2)}
    return [fixed[name] if name in fixed else Mixed(*MIXED[name]) for name in ORDER]


class S3D(Backbone):
    """`base` (I3D's 16 stages, separable) and `fc`, a 1x1x1 conv with bias on the pooled descriptor (the port
    averages it over 2-frame windows, then over time: the same as the global mean when 2 time steps remain)."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.base = nn.Sequential(*stages())
        self.fc = nn.Sequential(nn.Conv3d(1024, num_classes, 1, bias=True))
        self.feature_dim = 1024

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x)

    def classify(self, v: torch.Tensor) -> torch.Tensor:
        return self.fc(v[:, :, None, None, None]).flatten(1)

    @property
    def cam_layer(self) -> nn.Module:
        return self.base


def s3d(num_classes: int) -> S3D:
    """S3D with `num_classes` logits (400: S3D_kinetics400.pt)."""
    return S3D(num_classes)
