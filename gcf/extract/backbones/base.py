"""What every backbone is: a conv trunk giving the last feature map A, its global average v, and a classifier on v."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from gcf.extract.backbones.norm import Norm


@dataclass(frozen=True)
class BackboneSpec:
    """Everything a feature store must record to say how its descriptors were made."""

    name: str  # registry name, e.g. "resnext101"
    norm: Norm  # input convention: name, mean, std, value_range, channel_order
    clip_len: int  # frames per clip
    input_size: int  # square crop side
    feature_dim: int  # d, the descriptor length
    num_classes: int  # classifier outputs (clip logits)
    weights: str  # sha256 of the checkpoint file, or "random"
    seed: int | None = None  # seed of random weights (None for a checkpoint): rebuilds them exactly
    options: dict[str, Any] = field(default_factory=dict)  # builder options as given (width, groups, shortcut)
    frame_step: int = 1  # frames between a clip's frames, as trained (PySlowFast's sampling rate)

    def normalize(self, frames: torch.Tensor | np.ndarray) -> torch.Tensor:
        """uint8 [N, T, H, W, 3] RGB -> float32 [N, 3, T, H, W] as these weights expect."""
        return self.norm.normalize(frames)


class Backbone(nn.Module):
    """A 3D CNN; subclasses build the layers and say which module gives the last conv map and which classifies.

    The defaults fit Efficient-3DCNNs' layout (a `features` trunk and a `classifier`); other layouts override.
    """

    spec: BackboneSpec  # attached by build_backbone
    feature_dim: int  # set by subclasses: channels of the last conv map

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised clips [N, 3, T, H, W] -> last conv feature map A [N, d, t, h, w]."""
        return self.features(x)

    def classify(self, v: torch.Tensor) -> torch.Tensor:
        """Descriptors [N, d] -> logits [N, num_classes]."""
        return self.classifier(v)

    @property
    def cam_layer(self) -> nn.Module:
        """The module whose output is A, for 3D Grad-CAM hooks."""
        return self.features

    def descriptor(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised clips [N, 3, T, H, W] -> globally average-pooled A, [N, d]: the paper's clip descriptor v_i."""
        return self.feature_map(x).mean(dim=(2, 3, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised clips [N, 3, T, H, W] -> classifier logits [N, num_classes]."""
        return self.classify(self.descriptor(x))


def calibrate_batchnorm(model: nn.Module, norm: Norm, clip_len: int, size: int) -> None:
    """Give random weights usable scales: set every BatchNorm's statistics from two clips of noise frames prepared
    with `norm`, so descriptors are O(1) at any depth (PyTorch's default statistics give 1e-11 in MobileNet; fewer
    or smaller clips leave deep layers' statistics too noisy)."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms or next(model.parameters()).is_meta:
        return
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.momentum = None  # cumulative average: after one batch, exactly its statistics
    model.train()
    with torch.no_grad():
        model(norm.normalize(torch.randint(0, 256, (2, clip_len, size, size, 3), dtype=torch.uint8)))
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    model.eval()


def conv3d(cin: int, cout: int, kernel: int = 1, stride: int | tuple[int, int, int] = 1,
           groups: int = 1) -> nn.Conv3d:
    """Bias-free cubic convolution with 'same' padding, as all these networks use."""
    return nn.Conv3d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False)


def conv_bn(cin: int, cout: int, kernel: int = 1, stride: int | tuple[int, int, int] = 1, groups: int = 1,
            act: type[nn.Module] | None = None) -> list[nn.Module]:
    """conv3d + BatchNorm3d (+ activation): the unit the efficient nets are made of."""
    layers = [conv3d(cin, cout, kernel, stride, groups), nn.BatchNorm3d(cout)]
    return layers + [act(inplace=True)] if act else layers


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Interleave the channels of `groups` groups (ShuffleNet): [N, g*c, ...] -> [N, c*g, ...]."""
    n, c, *rest = x.shape
    return x.view(n, groups, c // groups, *rest).transpose(1, 2).reshape(n, c, *rest)


class Mlp(nn.Module):
    """The transformers' feed-forward: fc1 to `hidden`, exact GELU, fc2 back to `dim` or to `out` (`fc1`, `fc2`, as
    timm names them)."""

    def __init__(self, dim: int, hidden: int, out: int | None = None):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, out or dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.nn.functional.gelu(self.fc1(x)))
