"""SlowFast ResNet-50/101 (Feichtenhofer et al. 2019): a slow pathway on every alpha-th frame and a fast one, 1/8 as
wide, on every frame, the fast one fused into the slow one after the stem and after res2-res4. Module names are
MMAction2's `ResNet3dSlowFast` + `SlowFastHead` (`backbone.slow_path.layer1.0.conv1.conv`,
`backbone.slow_path.conv1_lateral.conv`, `backbone.fast_path.conv1.conv`, `cls_head.fc_cls`), so its checkpoints
load unchanged; PyTorchVideo's (`slowfast_r50` on torch.hub, `SLOWFAST_8x8_R50.pyth`) and PySlowFast's state dicts
are renamed into these names on loading (`convert`).

The repositories build the same pathways but differ in the fusion and in which frames the slow pathway sees:
PySlowFast and PyTorchVideo fuse with conv (fusion_kernel x 1 x 1, temporal stride alpha) + BatchNorm + ReLU and pick
the slow frames with linspace(0, T - 1, T / alpha); MMAction2 fuses with the conv alone (kernel 5) and takes every
alpha-th frame (nearest interpolation). `convert` reads which from the file; `lateral_norm`, `fusion_kernel` and
`sampling` are builder options, recorded in the store.

Descriptor: the fast (256) and slow (2048) maps, globally averaged and concatenated (2304) in the order of MMAction2's
SlowFastHead (PySlowFast and PyTorchVideo put slow first: their classifier's columns are swapped on loading). The
Grad-CAM map A is that concatenation at the fast pathway's frame rate (each slow step repeated alpha times).
"""

from __future__ import annotations

import torch
from torch import nn

from gcf.extract.backbones.base import Backbone
from gcf.extract.backbones.checkpoint import Checkpoint, rename_modules
from gcf.extract.backbones.slow import PYSLOWFAST_PARTS, PYTORCHVIDEO_PARTS, STAGES, ConvBN, Head, Trunk

SAMPLINGS = ("linspace", "stride")   # PySlowFast / PyTorchVideo, MMAction2
BETA = 8                             # the fast pathway's channels are 1/BETA of the slow one's
LATERALS = ("conv1_lateral", "layer1_lateral", "layer2_lateral", "layer3_lateral")   # after the stem, res2-res4


class Pathways(nn.Module):
    """MMAction2's ResNet3dSlowFast: clips [N, 3, T, H, W] -> (slow map [N, 2048, T/alpha, h, w], fast map
    [N, 256, T, h, w]); the laterals live in `slow_path` as there (conv1_lateral, layer1_lateral..layer3_lateral)."""

    def __init__(self, layers: tuple[int, ...], alpha: int, fusion_kernel: int, lateral_norm: bool,
                 sampling: str, width: float):
        super().__init__()
        fast = int(64 * width / BETA)                       # the fast stem's channels; x4, x8, x16 after res2-res4
        widths = (fast, fast * 4, fast * 8, fast * 16)
        self.slow_path = Trunk(layers, width, extra=tuple(2 * c for c in widths))
        self.fast_path = Trunk(layers, width / BETA, stem_t=5, temporal=((True,),) * 4)
        for name, c in zip(LATERALS, widths):     # fast -> slow: time-strided conv to twice the channels (+BN+ReLU)
            self.slow_path.add_module(name, ConvBN(c, 2 * c, (fusion_kernel, 1, 1), (alpha, 1, 1),
                                                   relu=lateral_norm, norm=lateral_norm))
        self.alpha, self.sampling = alpha, sampling

    def slow_frames(self, t: int, device: torch.device) -> torch.Tensor:
        """Indices of the slow pathway's t // alpha frames among the clip's t."""
        if self.sampling == "linspace":
            return torch.linspace(0, t - 1, t // self.alpha, device=device).long()
        return torch.arange(0, t // self.alpha * self.alpha, self.alpha, device=device)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x.shape[2] % self.alpha:
            raise ValueError(f"{x.shape[2]} frames are not a multiple of the speed ratio alpha={self.alpha}")
        s, f = self.slow_path, self.fast_path
        slow = s.maxpool(s.conv1(x.index_select(2, self.slow_frames(x.shape[2], x.device))))
        fast = f.maxpool(f.conv1(x))
        slow = torch.cat([slow, s.conv1_lateral(fast)], 1)
        for i in range(1, 5):
            slow, fast = getattr(s, f"layer{i}")(slow), getattr(f, f"layer{i}")(fast)
            if i < 4:
                slow = torch.cat([slow, getattr(s, f"layer{i}_lateral")(fast)], 1)
        return slow, fast


class Joint(nn.Module):
    """(slow, fast) maps -> one map at the fast frame rate, fast channels first: the A of Grad-CAM, whose global
    average is the concatenated pathway averages (each slow step repeated equally often)."""

    def forward(self, slow: torch.Tensor, fast: torch.Tensor) -> torch.Tensor:
        return torch.cat([fast, slow.repeat_interleave(fast.shape[2] // slow.shape[2], dim=2)], 1)


class SlowFast(Backbone):
    """SlowFast ResNet: MMAction2 recognizer layout (`backbone`, `cls_head`)."""

    def __init__(self, layers: tuple[int, ...], num_classes: int, alpha: int, fusion_kernel: int,
                 lateral_norm: bool, sampling: str, width: float):
        super().__init__()
        if sampling not in SAMPLINGS:
            raise ValueError(f"sampling must be one of {', '.join(SAMPLINGS)}, got {sampling!r}")
        if fusion_kernel < 1 or fusion_kernel % 2 == 0:
            raise ValueError(f"fusion_kernel must be odd (5, 7), got {fusion_kernel}")
        self.backbone = Pathways(layers, alpha, fusion_kernel, lateral_norm, sampling, width)
        self.joint = Joint()
        self.feature_dim = int(64 * width) * 32 + int(64 * width / BETA) * 32
        self.cls_head = Head(self.feature_dim, num_classes)

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        return self.joint(*self.backbone(x))

    def classify(self, v: torch.Tensor) -> torch.Tensor:
        return self.cls_head.fc_cls(v)

    @property
    def cam_layer(self) -> nn.Module:
        return self.joint


def slowfast(depth: int, num_classes: int, alpha: int = 4, fusion_kernel: int = 5, lateral_norm: bool = True,
             sampling: str = "linspace", width: float = 1.0) -> SlowFast:
    """SlowFast ResNet-`depth` (50, 101) with speed ratio alpha and channel ratio 8, fused as PySlowFast and
    PyTorchVideo do (their files; MMAction2's set lateral_norm=False, sampling=stride on loading). `width` other
    than 1 has no published weights (tests use it to stay small)."""
    return SlowFast(STAGES[depth], num_classes, alpha, fusion_kernel, lateral_norm, sampling, width)


# -- other repositories' names for the same layers -----------------------------------------------------------------

_FIXED = {
    **{f"blocks.0.multipathway_blocks.{p}.{theirs}": f"backbone.{path}.conv1.{ours}"
       for p, path in enumerate(("slow_path", "fast_path")) for theirs, ours in (("conv", "conv"), ("norm", "bn"))},
    **{f"s1.pathway{p}_stem.{part}": f"backbone.{path}.conv1.{part}"
       for p, path in enumerate(("slow_path", "fast_path")) for part in ("conv", "bn")},
    **{f"blocks.{i}.multipathway_fusion.{theirs}": f"backbone.slow_path.{name}.{ours}"
       for i, name in enumerate(LATERALS) for theirs, ours in (("conv_fast_to_slow", "conv"), ("norm", "bn"))},
    **{f"s{i + 1}_fuse.{theirs}": f"backbone.slow_path.{name}.{ours}"
       for i, name in enumerate(LATERALS) for theirs, ours in (("conv_f2s", "conv"), ("bn", "bn"))},
    "blocks.6.proj": "cls_head.fc_cls", "head.projection": "cls_head.fc_cls"}


def convert(ckpt: Checkpoint) -> Checkpoint:
    """A PyTorchVideo or PySlowFast SlowFast state dict in MMAction2's names, with its input convention ([0, 1],
    mean 0.45, std 0.225), its fusion kernel, linspace slow frames and its classifier's columns in our order (it
    concatenates slow then fast); an MMAction2 file with ImageNet statistics on [0, 255], its fusion (a bare conv)
    and every alpha-th frame. A file in these names whose laterals have BatchNorm is a re-save of a PySlowFast or
    PyTorchVideo model: linspace frames. Other files unchanged."""
    state = ckpt.state_dict
    if "blocks.0.multipathway_blocks.0.conv.weight" in state:     # create_slowfast: blocks.0-4, blocks.6 head
        for p, path in enumerate(("slow_path", "fast_path")):
            state = rename_modules(state, _FIXED, rf"blocks\.(\d)\.multipathway_blocks\.{p}\.res_blocks\.(\d+)",
                                   PYTORCHVIDEO_PARTS, f"backbone.{path}.layer{{}}.{{}}")
        origin, norm, state = "facebookresearch/pytorchvideo", "slowfast", _fast_first(state)
    elif "s1.pathway1_stem.conv.weight" in state:
        for p, path in enumerate(("slow_path", "fast_path")):
            state = rename_modules(state, _FIXED, rf"s(\d)\.pathway{p}_res(\d+)", PYSLOWFAST_PARTS,
                                   f"backbone.{path}.layer{{}}.{{}}", offset=-1)
        origin, norm, state = "facebookresearch/SlowFast", "slowfast", _fast_first(state)
    elif "backbone.fast_path.conv1.conv.weight" in state:
        origin, norm = "open-mmlab/mmaction2", "imagenet"
    else:
        return ckpt
    lateral_norm = "backbone.slow_path.conv1_lateral.bn.weight" in state
    if origin == "open-mmlab/mmaction2" and ckpt.origin != origin and lateral_norm:
        origin, norm = None, None       # our names, laterals with BN, not MMAction2's save format: gcf's re-save
    options = {"sampling": "stride" if origin == "open-mmlab/mmaction2" else "linspace", "lateral_norm": lateral_norm}
    lateral = state.get("backbone.slow_path.conv1_lateral.conv.weight")
    if lateral is not None and lateral.ndim == 5:
        options["fusion_kernel"] = lateral.shape[2]
    return Checkpoint(state, origin, norm, options)


def _fast_first(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The classifier's input columns [slow | fast] swapped to [fast | slow], the order of our descriptor."""
    w, fast = state.get("cls_head.fc_cls.weight"), state.get("backbone.fast_path.layer4.0.conv3.conv.weight")
    if w is None or fast is None or w.ndim != 2:
        return state                                    # not a SlowFast R50/R101: loading names the difference
    k = w.shape[1] - fast.shape[0]
    return {**state, "cls_head.fc_cls.weight": torch.cat([w[:, k:], w[:, :k]], 1)}
