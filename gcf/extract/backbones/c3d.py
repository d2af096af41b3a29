"""C3D (Tran et al. 2015): eight 3x3x3 convolutions with biases and no BatchNorm, five max pools, fc6 and fc7, in
MMAction2's module names (`backbone.conv1a.conv`, `backbone.fc6`, `cls_head.fc_cls`) so its files load unchanged.

The descriptor is not a pooled conv map: C3D's features, as the ActivityNet and THUMOS baselines use them, are fc7
(or fc6) after its ReLU, computed from pool5 flattened (512 x 1 x 4 x 4 = 8192 values, so clips are 16 frames of
112 x 112 px). The Sports-1M port (DavideA/c3d-pytorch `c3d.pickle`) and the fine-tuned models of
jfzhang95/pytorch-video-recognition name the layers `conv1`, `conv2`, `conv3a` ... `fc8` and are renamed on loading.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from gcf.errors import GcfError
from gcf.extract.backbones.base import Backbone
from gcf.extract.backbones.checkpoint import Checkpoint
from gcf.extract.backbones.slow import Head

# (name, output channels, pool after it: kernel = stride; pool1 keeps time, pool5 pads space by 1)
CONVS = (("conv1a", 64, (1, 2, 2)), ("conv2a", 128, (2, 2, 2)), ("conv3a", 256, None), ("conv3b", 256, (2, 2, 2)),
         ("conv4a", 512, None), ("conv4b", 512, (2, 2, 2)), ("conv5a", 512, None), ("conv5b", 512, (2, 2, 2)))


class ConvReLU(nn.Module):
    """mmcv's ConvModule without a norm: a 3x3x3 conv with a bias, then ReLU."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = nn.Conv3d(cin, cout, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu_(self.conv(x))


class Trunk(nn.Module):
    """The convolutions, pools and fc6/fc7 of MMAction2's C3D backbone."""

    def __init__(self, width: float):
        super().__init__()
        cin = 3
        for name, cout, _ in CONVS:
            cout = max(1, int(cout * width))
            setattr(self, name, ConvReLU(cin, cout))
            cin = cout
        self.fc6 = nn.Linear(cin * 16, max(1, int(4096 * width)))
        self.fc7 = nn.Linear(self.fc6.out_features, self.fc6.out_features)

    def convs(self, x: torch.Tensor) -> torch.Tensor:
        """Clips [N, 3, 16, 112, 112] -> conv5b's map [N, 512, 2, 7, 7] (before pool5)."""
        for name, _, pool in CONVS:
            x = getattr(self, name)(x)
            if pool and name != "conv5b":
                x = nn.functional.max_pool3d(x, pool, pool)
        return x

    def fc(self, a: torch.Tensor, layer: str) -> torch.Tensor:
        """conv5b's map -> pool5, flattened -> fc6 -> ReLU (-> fc7 -> ReLU)."""
        v = torch.relu(self.fc6(nn.functional.max_pool3d(a, 2, 2, (0, 1, 1)).flatten(1)))
        return v if layer == "fc6" else torch.relu(self.fc7(v))


class C3D(Backbone):
    """C3D with MMAction2's names; `feature` is the descriptor layer (fc7 feeds the classifier; fc6 is the other
    one C3D's features are published from)."""

    def __init__(self, num_classes: int, width: float = 1.0, feature: str = "fc7"):
        super().__init__()
        if feature not in ("fc6", "fc7"):
            raise GcfError(f"c3d feature must be fc6 or fc7, not {feature!r}")
        self.backbone = Trunk(width)
        self.feature = feature
        self.feature_dim = self.backbone.fc7.out_features
        self.cls_head = Head(self.feature_dim, num_classes)
        for m in self.modules():              # MMAction2's init: random weights give O(1) descriptors (no BatchNorm)
            if isinstance(m, (nn.Conv3d, nn.Linear)):
                nn.init.zeros_(m.bias)
                if isinstance(m, nn.Conv3d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                else:
                    nn.init.normal_(m.weight, std=0.01 if m is self.cls_head.fc_cls else 0.005)

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.convs(x)

    def descriptor(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.fc(self.feature_map(x), self.feature)

    def classify(self, v: torch.Tensor) -> torch.Tensor:
        if self.feature == "fc6":
            v = torch.relu(self.backbone.fc7(v))
        return self.cls_head.fc_cls(v)

    @property
    def cam_layer(self) -> nn.Module:
        return self.backbone.conv5b


def c3d(num_classes: int, width: float = 1.0, feature: str = "fc7") -> C3D:
    """C3D for 16-frame 112 px clips."""
    return C3D(num_classes, width, feature)


# the flat names of the PyTorch ports -> ours
_FLAT = {"conv1": "backbone.conv1a.conv", "conv2": "backbone.conv2a.conv", "fc6": "backbone.fc6",
         "fc7": "backbone.fc7", "fc8": "cls_head.fc_cls",
         **{name: f"backbone.{name}.conv" for name, _, _ in CONVS[2:]}}


def convert(ckpt: Checkpoint) -> Checkpoint:
    """A PyTorch port's C3D state dict in MMAction2's names, with its repository's input convention: DavideA's
    Sports-1M `c3d.pickle` takes raw RGB [0, 255] (its predict.py), jfzhang95's fine-tuned models BGR minus 90, 98,
    102 (OpenCV frames, its inference.py), MMAction2's RGB minus 104, 117, 128."""
    state = ckpt.state_dict
    if "conv1.weight" in state and "conv3a.weight" in state:
        state = {f"{_FLAT.get(module, module)}.{leaf}": v for module, leaf, v in
                 ((*k.rsplit(".", 1), v) for k, v in state.items())}
        if ckpt.origin == "jfzhang95/pytorch-video-recognition":
            return dataclasses.replace(ckpt, state_dict=state, norm="c3d-bgr")
        return Checkpoint(state, "DavideA/c3d-pytorch", "c3d-raw")
    if ckpt.origin == "open-mmlab/mmaction2":
        return dataclasses.replace(ckpt, norm="c3d")
    return ckpt
