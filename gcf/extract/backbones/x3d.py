"""X3D-XS/S/M/L (Feichtenhofer 2020, "X3D: Expanding Architectures for Efficient Video Recognition") with the
module names of PySlowFast's `X3D` (`s1.pathway0_stem.conv_xy`, `s3.pathway0_res0.branch2.se.fc1`,
`head.conv_5`, `head.projection`), so its x3d_*.pyth files load unchanged. PyTorchVideo's (torch.hub x3d_*,
X3D_*.pyth: `blocks.1.res_blocks.0.branch2.norm_b.1.block.0`) and MMAction2's (`backbone.conv1_s.conv`,
`cls_head.fc1`) state dicts are renamed into these names on loading (`convert`).

One network for XS, S and M (width x2, depth x2.2: 3, 5, 11, 7 blocks; they differ only in the clips they were
trained on), L with depth x5.0. Stem: 1x3x3 stride (1, 2, 2), then a depthwise 5x1x1. Blocks: 1x1x1 expand
(2.25x), depthwise 3x3x3 with the spatial stride, squeeze-excitation on every other block, swish, 1x1x1
project. The last conv map A is the head's `conv_5` (432 channels) after BN and ReLU; the classifier is
`lin_5` (432 -> 2048, ReLU) and `projection` on its global average.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from gcf.extract.backbones.base import Backbone
from gcf.extract.backbones.checkpoint import Checkpoint, rename_modules

BLOCKS = (1, 2, 5, 3)   # per stage before the depth factor
WIDTHS = (24, 48, 96, 192)  # stage outputs at width x2 (PySlowFast: round_width(12 * 2^i, 2.0))
STEM = 24
EXPAND = 2.25               # BOTTLENECK_FACTOR
SE_RATIO = 0.0625
C5 = 2048                   # DIM_C5: lin_5's outputs


def se_width(channels: int, ratio: float = SE_RATIO, divisor: int = 8) -> int:
    """Squeeze width as PySlowFast's SE._round_width: channels * ratio to a multiple of 8 (at least 8), rounded up
    where rounding lost more than 10%."""
    width = channels * ratio
    out = max(divisor, int(width + divisor / 2) // divisor * divisor)
    return out + divisor if out < 0.9 * width else out


class SE(nn.Module):
    """Squeeze-excitation: x * sigmoid(fc2(relu(fc1(mean over t, h, w))))."""

    def __init__(self, channels: int):
        super().__init__()
        self.fc1 = nn.Conv3d(channels, se_width(channels), 1)
        self.fc2 = nn.Conv3d(se_width(channels), channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean(dim=(2, 3, 4), keepdim=True)
        return x * torch.sigmoid(self.fc2(torch.relu(self.fc1(s))))


class Transform(nn.Module):
    """PySlowFast's X3DTransform (a block's branch2): a, b (depthwise, stride), se (even blocks), swish, c."""

    def __init__(self, cin: int, inner: int, cout: int, stride: int, se: bool):
        super().__init__()
        self.a = nn.Conv3d(cin, inner, 1, bias=False)
        self.a_bn = nn.BatchNorm3d(inner)
        self.b = nn.Conv3d(inner, inner, 3, (1, stride, stride), 1, groups=inner, bias=False)
        self.b_bn = nn.BatchNorm3d(inner)
        self.se = SE(inner) if se else None
        self.c = nn.Conv3d(inner, cout, 1, bias=False)
        self.c_bn = nn.BatchNorm3d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.b_bn(self.b(torch.relu(self.a_bn(self.a(x)))))
        x = self.se(x) if self.se is not None else x
        return self.c_bn(self.c(x * torch.sigmoid(x)))           # swish, computed as all three repositories do


class ResBlock(nn.Module):
    """branch2 plus the input, through a 1x1x1 projection (branch1) where the shape changes; ReLU."""

    def __init__(self, cin: int, cout: int, stride: int, se: bool):
        super().__init__()
        if cin != cout or stride != 1:
            self.branch1 = nn.Conv3d(cin, cout, 1, (1, stride, stride), bias=False)
            self.branch1_bn = nn.BatchNorm3d(cout)
        self.branch2 = Transform(cin, int(EXPAND * cout), cout, stride, se)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = self.branch1_bn(self.branch1(x)) if hasattr(self, "branch1") else x
        return torch.relu(shortcut + self.branch2(x))


class Stem(nn.Module):
    """1x3x3 conv stride (1, 2, 2), depthwise 5x1x1 conv, BN, ReLU."""

    def __init__(self, cout: int):
        super().__init__()
        self.conv_xy = nn.Conv3d(3, cout, (1, 3, 3), (1, 2, 2), (0, 1, 1), bias=False)
        self.conv = nn.Conv3d(cout, cout, (5, 1, 1), 1, (2, 0, 0), groups=cout, bias=False)
        self.bn = nn.BatchNorm3d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.bn(self.conv(self.conv_xy(x))))


class Pathway(nn.Sequential):
    """PySlowFast's one-pathway stage container: its children are named pathway0_stem, pathway0_res0, ..."""


class Head(nn.Module):
    """conv_5 (1x1x1, BN, ReLU: the map A), then on its average lin_5 (no bias), ReLU and projection."""

    def __init__(self, cin: int, inner: int, num_classes: int):
        super().__init__()
        self.conv_5 = nn.Conv3d(cin, inner, 1, bias=False)
        self.conv_5_bn = nn.BatchNorm3d(inner)
        self.conv_5_relu = nn.ReLU()
        self.lin_5 = nn.Conv3d(inner, C5, 1, bias=False)
        self.projection = nn.Linear(C5, num_classes)


class X3D(Backbone):
    """X3D with `depth` (the depth factor): s1 stem, s2-s5 stages (spatial stride 2 each), head."""

    def __init__(self, depth: float, num_classes: int):
        super().__init__()
        self.s1 = Pathway()
        self.s1.add_module("pathway0_stem", Stem(STEM))
        cin = STEM
        for i, (blocks, cout) in enumerate(zip(BLOCKS, WIDTHS)):
            stage = Pathway()
            for b in range(math.ceil(depth * blocks)):
                stage.add_module(f"pathway0_res{b}", ResBlock(cin if b == 0 else cout, cout, 2 if b == 0 else 1,
                                                              se=b % 2 == 0))
            self.add_module(f"s{i + 2}", stage)
            cin = cout
        self.feature_dim = int(EXPAND * cin)
        self.head = Head(cin, self.feature_dim, num_classes)

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        x = self.s5(self.s4(self.s3(self.s2(self.s1(x)))))
        return self.head.conv_5_relu(self.head.conv_5_bn(self.head.conv_5(x)))

    def classify(self, v: torch.Tensor) -> torch.Tensor:
        h = torch.relu(F.linear(v, self.head.lin_5.weight.flatten(1)))  # lin_5 is a 1x1x1 conv: on v, a matmul
        return self.head.projection(h)

    @property
    def cam_layer(self) -> nn.Module:
        return self.head.conv_5_relu


def x3d(depth: float, num_classes: int) -> X3D:
    """X3D with depth factor `depth` (2.2: XS, S, M; 5.0: L)."""
    return X3D(depth, num_classes)


# -- other repositories' names for the same layers -----------------------------------------------------------------

_PYTORCHVIDEO = {"branch1_conv": "branch1", "branch1_norm": "branch1_bn", "branch2.conv_a": "branch2.a",
                 "branch2.norm_a": "branch2.a_bn", "branch2.conv_b": "branch2.b", "branch2.norm_b.0": "branch2.b_bn",
                 "branch2.norm_b.1.block.0": "branch2.se.fc1", "branch2.norm_b.1.block.2": "branch2.se.fc2",
                 "branch2.conv_c": "branch2.c", "branch2.norm_c": "branch2.c_bn"}
_MMACTION2 = {"downsample.conv": "branch1", "downsample.bn": "branch1_bn", "conv1.conv": "branch2.a",
              "conv1.bn": "branch2.a_bn", "conv2.conv": "branch2.b", "conv2.bn": "branch2.b_bn",
              "se_module.fc1": "branch2.se.fc1", "se_module.fc2": "branch2.se.fc2", "conv3.conv": "branch2.c",
              "conv3.bn": "branch2.c_bn"}
_FIXED = {  # whole-module renames: PyTorchVideo's stem names its spatial conv conv_t and its temporal one conv_xy
    "blocks.0.conv.conv_t": "s1.pathway0_stem.conv_xy", "blocks.0.conv.conv_xy": "s1.pathway0_stem.conv",
    "blocks.0.norm": "s1.pathway0_stem.bn", "blocks.5.pool.pre_conv": "head.conv_5",
    "blocks.5.pool.pre_norm": "head.conv_5_bn", "blocks.5.pool.post_conv": "head.lin_5",
    "blocks.5.proj": "head.projection",
    "backbone.conv1_s.conv": "s1.pathway0_stem.conv_xy", "backbone.conv1_t.conv": "s1.pathway0_stem.conv",
    "backbone.conv1_t.bn": "s1.pathway0_stem.bn", "backbone.conv5.conv": "head.conv_5",
    "backbone.conv5.bn": "head.conv_5_bn", "cls_head.fc1": "head.lin_5", "cls_head.fc2": "head.projection"}


def convert(ckpt: Checkpoint) -> Checkpoint:
    """A PyTorchVideo or MMAction2 X3D state dict in PySlowFast's names; PySlowFast's own and other files as they
    are. All three train on [0, 1] pixels with mean 0.45 and std 0.225 (MMAction2: 114.75 / 57.38 on [0, 255])."""
    state = ckpt.state_dict
    if "blocks.0.conv.conv_t.weight" in state:
        origin, block, parts = "facebookresearch/pytorchvideo", r"blocks\.(\d)\.res_blocks\.(\d+)", _PYTORCHVIDEO
    elif "backbone.conv1_s.conv.weight" in state:
        origin, block, parts = "open-mmlab/mmaction2", r"backbone\.layer(\d)\.(\d+)", _MMACTION2
    else:
        return ckpt
    renamed = rename_modules(state, _FIXED, block, parts, "s{}.pathway0_res{}", offset=1)
    if "head.lin_5.weight" in renamed and renamed["head.lin_5.weight"].dim() == 2:   # MMAction2's fc1 is a Linear
        renamed["head.lin_5.weight"] = renamed["head.lin_5.weight"][..., None, None, None]
    if origin.endswith("pytorchvideo") and "s2.pathway0_res0.branch1.weight" in renamed:
        renamed.update(_identity_bn("s2.pathway0_res0.branch1_bn", renamed["s2.pathway0_res0.branch1.weight"]))
    return Checkpoint(renamed, origin, "slowfast")


def _identity_bn(name: str, conv_weight: torch.Tensor) -> dict[str, torch.Tensor]:
    """BatchNorm statistics that pass inputs through (to 6e-8): PyTorchVideo's X3D has no BN on res2's shortcut,
    where PySlowFast's has one (its first stage keeps 24 channels, and PyTorchVideo adds the BN only where the
    width changes)."""
    n, eps = conv_weight.shape[0], 1e-5
    return {f"{name}.weight": torch.ones(n), f"{name}.bias": torch.zeros(n), f"{name}.running_mean": torch.zeros(n),
            f"{name}.running_var": torch.full((n,), 1 - eps), f"{name}.num_batches_tracked": torch.tensor(0)}
