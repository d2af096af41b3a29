"""Input normalisation conventions of published 3D-CNN weights: value range, mean, std and channel order.

Weights only work on inputs prepared the way they were trained on, and the public checkpoints differ
(3D-ResNets-PyTorch issues 12, 97, 123, 172). Mean and std are per input channel, in the network's channel order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from gcf.errors import GcfError


@dataclass(frozen=True)
class Norm:
    """How uint8 RGB frames become network input: x = (pixel * value_range / 255 - mean) / std, channels reordered."""

    name: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    value_range: float  # 1.0: pixels scaled to [0, 1]; 255.0: raw [0, 255]
    channel_order: str  # "RGB" or "BGR": the channel order the weights were trained on

    def normalize(self, frames: torch.Tensor | np.ndarray) -> torch.Tensor:
        """uint8 [N, T, H, W, 3] RGB frames -> float32 [N, 3, T, H, W], in the frames' channels-last memory layout."""
        x = torch.as_tensor(frames)
        if self.channel_order == "BGR":
            x = x.flip(-1)
        x = x.permute(0, 4, 1, 2, 3).to(torch.float32)
        std = torch.tensor(self.std, dtype=torch.float32, device=x.device).view(1, 3, 1, 1, 1)
        mean = torch.tensor(self.mean, dtype=torch.float32, device=x.device).view(1, 3, 1, 1, 1)
        return x.mul_(self.value_range / 255.0 / std).sub_(mean / std)


NORMS: dict[str, Norm] = {n.name: n for n in (
    # kenshohara/3D-ResNets-PyTorch master (mean.py, value_scale 1, mean_dataset kinetics)
    Norm("kinetics", (0.4345, 0.4051, 0.3775), (0.2768, 0.2713, 0.2737), 1.0, "RGB"),
    # 3D-ResNets-PyTorch CVPR2018 branch: [0, 255] minus the ActivityNet mean, no std division
    Norm("activitynet", (114.7748, 107.7354, 99.4750), (1.0, 1.0, 1.0), 255.0, "RGB"),
    # okankop/Efficient-3DCNNs Kinetics models: the same, but its OpenCV loader hands the network BGR frames
    Norm("activitynet-bgr", (114.7748, 107.7354, 99.4750), (1.0, 1.0, 1.0), 255.0, "BGR"),
    # torchvision's video models and the VMZ/IG65M ports (moabitcoin/ig65m-pytorch): Kinetics-400 statistics
    Norm("kinetics-tv", (0.43216, 0.394666, 0.37645), (0.22803, 0.22145, 0.216989), 1.0, "RGB"),
    # piergiaj/pytorch-i3d (and TensorFlow's kinetics-i3d): pixels scaled to [-1, 1]
    Norm("inception", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), 1.0, "RGB"),
    # ImageNet statistics: also MMAction2's recognizers (mean 123.675.. / std 58.395.. on [0, 255] is the same)
    Norm("imagenet", (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), 1.0, "RGB"),
    # PySlowFast and PyTorchVideo (DATA.MEAN 0.45, DATA.STD 0.225 on [0, 1])
    Norm("slowfast", (0.45, 0.45, 0.45), (0.225, 0.225, 0.225), 1.0, "RGB"),
    # C3D: MMAction2's files take RGB [0, 255] minus 104, 117, 128 (its data_preprocessor, in RGB order); the
    # Sports-1M port DavideA/c3d-pytorch raw RGB [0, 255]; jfzhang95/pytorch-video-recognition OpenCV's BGR
    # minus 90, 98, 102
    Norm("c3d", (104.0, 117.0, 128.0), (1.0, 1.0, 1.0), 255.0, "RGB"),
    Norm("c3d-raw", (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), 255.0, "RGB"),
    Norm("c3d-bgr", (90.0, 98.0, 102.0), (1.0, 1.0, 1.0), 255.0, "BGR"),
    Norm("none", (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), 1.0, "RGB"),
)}


def get_norm(name: str) -> Norm:
    """The named convention; a GcfError lists the known names."""
    if name not in NORMS:
        raise GcfError(f"unknown norm {name!r}; use one of: {', '.join(NORMS)}")
    return NORMS[name]
