"""The 3D ResNets of MMAction2's `ResNet3d`, with its module names (`backbone.conv1.conv`, `backbone.layer3.0.conv1.bn`,
`cls_head.fc_cls`), so its checkpoints load unchanged:

- Slow (SlowOnly) ResNet-50/101, the slow pathway of SlowFast without the fast one (Feichtenhofer et al. 2019):
  stem conv 1x7x7, res2-res3 purely spatial (1x1x1 reduce), res4-res5 with a 3x1x1 temporal reduce, no temporal
  stride anywhere (an 8-frame clip gives an 8-step map).
- I3D ResNet-50 (the inflated ResNet of the non-local and SlowFast papers, not Inception I3D): stem conv 5x7x7, a
  2x1x1 max pool after res2, and the 3x1x1 reduce on alternate blocks (res2 all, res3 and res4 0, 2, ..., res5 the
  middle one). MMAction2's I3D also strides the stem conv and pool by 2 in time (`temporal_stride=2`, its 32x2
  clips); PyTorchVideo's and PySlowFast's (8x8 clips) do not. Both end at 4 time steps.
- C2D ResNet-50 (PyTorchVideo's `c2d_r50`): the I3D ResNet with 2D convs only (1x7x7 stem, 1x1x1 reduces).
- R(2+1)D-34 (`ResNet2Plus1d`): basic blocks whose every conv, the stem's and the shortcuts' too, is a (2+1)D pair.
- ir-CSN / ip-CSN ResNet-50/101/152 (`ResNet3dCSN`, Tran et al. 2019): depthwise 3x3x3 convs in the bottlenecks.
  R(2+1)D and CSN stride res3-res5 by 2 in time.

The same networks' PyTorchVideo (`slow_r50`, `i3d_r50`, `csn_r101` on torch.hub:
`blocks.1.res_blocks.0.branch2.conv_a`), PySlowFast (`s2.pathway0_res0.branch2.a`) and VMZ (CSN: `layer1.0.conv2.0`)
state dicts are renamed into these names on loading (`convert`, `convert_csn`). Bottleneck blocks have the spatial
stride on the 1x3x3 conv in all three repositories.
"""

from __future__ import annotations

import dataclasses
import re
from functools import partial
from typing import Callable

import torch
from torch import nn

from gcf.errors import GcfError
from gcf.extract.backbones.base import Backbone
from gcf.extract.backbones.checkpoint import Checkpoint, rename_modules
from gcf.extract.backbones.resnet2p1d import mid_planes

STAGES = {34: (3, 4, 6, 3), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}   # blocks per stage
# per stage, which blocks start with a 3x1x1 conv, the pattern repeated over the stage (MMAction2's `inflate`)
SLOW = ((False,), (False,), (True,), (True,))
I3D = ((True,), (True, False), (True, False), (False, True))


class ConvBN(nn.Module):
    """mmcv's ConvModule as these models use it: conv ('same' padding, bias-free unless `bias`; `conv` makes it, a
    Conv3d or a (2+1)D pair), BatchNorm (unless `norm` is False: MMAction2's SlowFast laterals and the non-local
    convs are the bare conv), optional ReLU."""

    def __init__(self, cin: int, cout: int, kernel: tuple[int, int, int], stride: tuple[int, int, int] = (1, 1, 1),
                 relu: bool = True, norm: bool = True, eps: float = 1e-5, conv: type[nn.Module] = nn.Conv3d,
                 bias: bool = False):
        super().__init__()
        self.conv = conv(cin, cout, kernel, stride, tuple(k // 2 for k in kernel), bias=bias)
        self.bn = nn.BatchNorm3d(cout, eps=eps) if norm else None
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        return torch.relu_(x) if self.relu else x


class Conv2plus1d(nn.Module):
    """MMAction2's (2+1)D convolution: 1 x k x k spatial conv to Caffe2's middle width (from its own input and
    output channels, temporal factor 3 even for a 1x1x1 kernel), BatchNorm (eps 1e-5 whatever the network's), ReLU,
    t x 1 x 1 temporal conv."""

    def __init__(self, cin: int, cout: int, kernel: tuple[int, int, int], stride: tuple[int, int, int],
                 padding: tuple[int, int, int], bias: bool = False):
        super().__init__()
        (t, k, _), (st, s, _), (pt, p, _) = kernel, stride, padding
        mid = mid_planes(cin, cout, 3, k)
        self.conv_s = nn.Conv3d(cin, mid, (1, k, k), (1, s, s), (0, p, p), bias=bias)
        self.bn_s = nn.BatchNorm3d(mid)
        self.conv_t = nn.Conv3d(mid, cout, (t, 1, 1), (st, 1, 1), (pt, 0, 0), bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_t(torch.relu_(self.bn_s(self.conv_s(x))))


NON_LOCAL = ("dot_product", "embedded_gaussian", "gaussian")   # mmcv's NonLocal3d modes MMAction2 publishes


class NonLocal3d(nn.Module):
    """mmcv's NonLocal3d as MMAction2's I3D uses it (Wang et al. 2018; sub_sample, no scale, BN on the output):
    y = x + BN(W_z f(theta(x), phi(x)) g(x)), theta/phi/g 1x1x1 convs to half the channels, phi and g max pooled
    1x2x2. f: dot_product theta.phi / N, embedded_gaussian softmax(theta.phi), gaussian softmax(x.x') (no theta/phi
    convs). Keys: `g.0.conv`, `theta.conv`, `phi.0.conv`, `conv_out.conv` (no bias), `conv_out.bn`."""

    def __init__(self, channels: int, mode: str):
        super().__init__()
        inter, self.mode = channels // 2, mode
        pool = nn.MaxPool3d((1, 2, 2))
        self.g = nn.Sequential(ConvBN(channels, inter, (1, 1, 1), relu=False, norm=False, bias=True), pool)
        if mode != "gaussian":
            self.theta = ConvBN(channels, inter, (1, 1, 1), relu=False, norm=False, bias=True)
            self.phi = nn.Sequential(ConvBN(channels, inter, (1, 1, 1), relu=False, norm=False, bias=True), pool)
        else:
            self.theta, self.phi = nn.Identity(), pool
        self.conv_out = ConvBN(inter, channels, (1, 1, 1), relu=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, *size = x.shape
        g = self.g(x).flatten(2).transpose(1, 2)                    # [n, N', c]
        theta = self.theta(x).flatten(2).transpose(1, 2)            # [n, THW, c]
        phi = self.phi(x).flatten(2)                                # [n, c, N']
        f = theta @ phi
        f = f / f.shape[-1] if self.mode == "dot_product" else f.softmax(-1)
        y = (f @ g).transpose(1, 2).reshape(n, -1, *size)
        return x + self.conv_out(y)


class Bottleneck(nn.Module):
    """1x1x1 (3x1x1 when `temporal`) reduce, 1x3x3 with the stride, 1x1x1 expand (x4), residual; a non-local block
    after it when the Trunk gives it one."""

    expansion = 4

    def __init__(self, cin: int, planes: int, stride: tuple[int, int, int], temporal: bool,
                 unit: Callable[..., ConvBN] = ConvBN):
        super().__init__()
        self.conv1 = unit(cin, planes, (3, 1, 1) if temporal else (1, 1, 1))
        self.conv2 = self.middle(planes, stride, unit)
        self.conv3 = unit(planes, planes * 4, (1, 1, 1), relu=False)
        self.downsample = unit(cin, planes * 4, (1, 1, 1), stride, relu=False) \
            if stride != (1, 1, 1) or cin != planes * 4 else None
        self.non_local_block: NonLocal3d | None = None

    def middle(self, planes: int, stride: tuple[int, int, int], unit: Callable[..., ConvBN]) -> nn.Module:
        return unit(planes, planes, (1, 3, 3), stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv3(self.conv2(self.conv1(x)))
        out = torch.relu_(out + (x if self.downsample is None else self.downsample(x)))
        return out if self.non_local_block is None else self.non_local_block(out)


class CSNBottleneck(Bottleneck):
    """ir-CSN's (interaction-reduced) bottleneck: the middle conv is a depthwise 3x3x3 with the stride, in time too
    (`conv2.0`); ip-CSN's (`preserve`) puts a 1x1x1 conv + BN, without ReLU, before it (`conv2.0`, `conv2.1`)."""

    preserve = False

    def middle(self, planes: int, stride: tuple[int, int, int], unit: Callable[..., ConvBN]) -> nn.Module:
        pointwise = [unit(planes, planes, (1, 1, 1), relu=False)] if self.preserve else []
        depthwise = unit(planes, planes, (3, 3, 3), stride, conv=partial(nn.Conv3d, groups=planes))
        return nn.Sequential(*pointwise, depthwise)


class IPCSNBottleneck(CSNBottleneck):
    preserve = True


class BasicBlock(nn.Module):
    """Two 3x3x3 convs (1x3x3 unless `temporal`), the first with the stride, residual: ResNet-18/34's block."""

    expansion = 1

    def __init__(self, cin: int, planes: int, stride: tuple[int, int, int], temporal: bool,
                 unit: Callable[..., ConvBN] = ConvBN):
        super().__init__()
        kernel = (3 if temporal else 1, 3, 3)
        self.conv1 = unit(cin, planes, kernel, stride)
        self.conv2 = unit(planes, planes, kernel, relu=False)
        self.downsample = unit(cin, planes, (1, 1, 1), stride, relu=False) \
            if stride != (1, 1, 1) or cin != planes else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(self.conv1(x))
        return torch.relu_(out + (x if self.downsample is None else self.downsample(x)))


class Trunk(nn.Module):
    """MMAction2's `backbone` (ResNet3d): stem and four stages (spatial strides 1, 2, 2, 2; temporal `stage_t`) of
    `block`s made of `unit`s, widths scaled by `width`; `stem_t`, `temporal` (the inflate patterns),
    `temporal_stride` (of the stem conv and pool) and `pool2` (a 2x1x1 max pool after res2) make Slow, I3D or
    R(2+1)D; `non_local` (a NON_LOCAL mode) adds MMAction2's non-local blocks to res3 and res4's odd blocks. SlowFast builds its pathways from it, `extra` adding input channels to each stage's first block (the
    fast pathway's lateral, concatenated to the slow one)."""

    def __init__(self, layers: tuple[int, ...], width: float = 1.0, stem_t: int = 1,
                 temporal: tuple[tuple[bool, ...], ...] = SLOW, extra: tuple[int, ...] = (0, 0, 0, 0),
                 temporal_stride: int = 1, pool2: bool = False, block: type[nn.Module] = Bottleneck,
                 unit: Callable[..., ConvBN] = ConvBN, stage_t: tuple[int, ...] = (1, 1, 1, 1),
                 non_local: str | None = None):
        super().__init__()
        cin = int(64 * width)
        self.conv1 = unit(3, cin, (stem_t, 7, 7), (temporal_stride, 2, 2))
        self.maxpool = nn.MaxPool3d((1, 3, 3), (temporal_stride, 2, 2), (0, 1, 1))
        self.pool2 = nn.MaxPool3d((2, 1, 1), (2, 1, 1)) if pool2 else nn.Identity()
        for i, (blocks, pattern, more, t) in enumerate(zip(layers, temporal, extra, stage_t)):
            planes = int(64 * width) * 2 ** i
            stride = (t, 2 if i else 1, 2 if i else 1)
            stage = [block(cin + more if b == 0 else planes * block.expansion, planes, stride if b == 0 else (1, 1, 1),
                           pattern[b % len(pattern)], unit) for b in range(blocks)]
            for b in range(1 if non_local and i in (1, 2) else blocks, blocks, 2):   # res3, res4: every other block
                stage[b].non_local_block = NonLocal3d(planes * block.expansion, non_local)
            self.add_module(f"layer{i + 1}", nn.Sequential(*stage))
            cin = planes * block.expansion
        self.out_channels = cin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool2(self.layer1(self.maxpool(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(x)))


class Head(nn.Module):
    """MMAction2's `cls_head` (I3DHead): the classifier on the pooled descriptor (its dropout is off at inference)."""

    def __init__(self, feature_dim: int, num_classes: int):
        super().__init__()
        self.fc_cls = nn.Linear(feature_dim, num_classes)


class Recognizer(Backbone):
    """MMAction2's recognizer layout: a `backbone` giving A (`out_channels` of them) and a `cls_head` classifying
    its global average."""

    def __init__(self, backbone: nn.Module, num_classes: int):
        super().__init__()
        self.backbone = backbone
        self.feature_dim = backbone.out_channels
        self.cls_head = Head(self.feature_dim, num_classes)

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    def classify(self, v: torch.Tensor) -> torch.Tensor:
        return self.cls_head.fc_cls(v)


class ResNet3d(Recognizer):
    """A Slow, I3D, R(2+1)D or CSN ResNet in MMAction2's recognizer layout."""

    def __init__(self, layers: tuple[int, ...], num_classes: int, width: float = 1.0, **trunk):
        super().__init__(Trunk(layers, width, **trunk), num_classes)

    @property
    def cam_layer(self) -> nn.Module:
        return self.backbone.layer4


def slow(depth: int, num_classes: int, width: float = 1.0) -> ResNet3d:
    """Slow ResNet-`depth` (50, 101); `width` other than 1 has no published weights (tests use it to stay small)."""
    return ResNet3d(STAGES[depth], num_classes, width)


def i3d_resnet(depth: int, num_classes: int, temporal_stride: int = 1, width: float = 1.0,
               non_local: str | None = None) -> ResNet3d:
    """I3D ResNet-`depth` (50); temporal_stride 2 is MMAction2's (set on loading its files); `non_local` one of
    NON_LOCAL for MMAction2's I3D NL."""
    if non_local not in (None, *NON_LOCAL):
        raise GcfError(f"i3d non_local must be one of {', '.join(NON_LOCAL)}, not {non_local!r}")
    return ResNet3d(STAGES[depth], num_classes, width, stem_t=5, temporal=I3D, temporal_stride=temporal_stride,
                    pool2=True, non_local=non_local)


def c2d(depth: int, num_classes: int, width: float = 1.0) -> ResNet3d:
    """C2D ResNet-`depth` (50): the I3D ResNet with every conv 2D (a 1x7x7 stem, 1x1x1 reduces); only its pools
    span time (the 2x1x1 one after res2)."""
    return ResNet3d(STAGES[depth], num_classes, width, temporal=((False,),) * 4, pool2=True)


def r2plus1d_mm(depth: int, num_classes: int, width: float = 1.0) -> ResNet3d:
    """MMAction2's R(2+1)D-`depth` (34): a (2+1)D stem (1x7x7 stride 2 then 3x1x1) and max pool, basic blocks of
    (2+1)D convs, temporal stride 2 in res3-res5, BatchNorm eps 1e-3 (its middle ones 1e-5)."""
    return ResNet3d(STAGES[depth], num_classes, width, stem_t=3, temporal=((True,),) * 4, block=BasicBlock,
                    unit=partial(ConvBN, eps=1e-3, conv=Conv2plus1d), stage_t=(1, 2, 2, 2))


def csn(depth: int, num_classes: int, mode: str = "ir", eps: float = 1e-3, width: float = 1.0) -> ResNet3d:
    """ir-CSN or ip-CSN ResNet-`depth` (50, 101, 152; Tran et al. 2019): a 3x7x7 stem and max pool, channel-separated
    bottlenecks, temporal stride 2 in res3-res5. BatchNorm eps 1e-3 (MMAction2, VMZ) or 1e-5 (PyTorchVideo)."""
    if mode not in ("ir", "ip"):
        raise GcfError(f"csn mode must be ir or ip, not {mode!r}")
    return ResNet3d(STAGES[depth], num_classes, width, stem_t=3, temporal=((False,),) * 4,
                    block=CSNBottleneck if mode == "ir" else IPCSNBottleneck, unit=partial(ConvBN, eps=eps),
                    stage_t=(1, 2, 2, 2))


# -- other repositories' names for the same layers -----------------------------------------------------------------

# a bottleneck's parts in PyTorchVideo's and PySlowFast's names -> ours (SlowFast's pathways use them too)
PYTORCHVIDEO_PARTS = {"branch1_conv": "downsample.conv", "branch1_norm": "downsample.bn",
                      "branch2.conv_a": "conv1.conv", "branch2.norm_a": "conv1.bn", "branch2.conv_b": "conv2.conv",
                      "branch2.norm_b": "conv2.bn", "branch2.conv_c": "conv3.conv", "branch2.norm_c": "conv3.bn"}
PYSLOWFAST_PARTS = {"branch1": "downsample.conv", "branch1_bn": "downsample.bn", "branch2.a": "conv1.conv",
                    "branch2.a_bn": "conv1.bn", "branch2.b": "conv2.conv", "branch2.b_bn": "conv2.bn",
                    "branch2.c": "conv3.conv", "branch2.c_bn": "conv3.bn"}
_FIXED = {"blocks.0.conv": "backbone.conv1.conv", "blocks.0.norm": "backbone.conv1.bn",
          "blocks.5.proj": "cls_head.fc_cls",
          "s1.pathway0_stem.conv": "backbone.conv1.conv", "s1.pathway0_stem.bn": "backbone.conv1.bn",
          "head.projection": "cls_head.fc_cls"}


def convert(ckpt: Checkpoint) -> Checkpoint:
    """A PyTorchVideo or PySlowFast Slow or I3D ResNet state dict in MMAction2's names, with that repository's input
    convention (both: [0, 1] pixels, mean 0.45, std 0.225); MMAction2's own (ImageNet statistics on [0, 255]) and
    other files unchanged, bar the origin."""
    state = ckpt.state_dict
    if "blocks.6.proj.weight" in state and "blocks.0.conv.weight" in state:  # I3D: blocks.2 is the weightless pool2
        state = {re.sub(r"^blocks\.([3-6])\.", lambda m: f"blocks.{int(m[1]) - 1}.", k): v for k, v in state.items()}
    if "blocks.0.conv.weight" in state:      # create_resnet: blocks.0 stem, blocks.1-4 stages, blocks.5 head
        renamed = rename_modules(state, _FIXED, r"blocks\.(\d)\.res_blocks\.(\d+)", PYTORCHVIDEO_PARTS,
                                 "backbone.layer{}.{}")
        return Checkpoint(renamed, "facebookresearch/pytorchvideo", "slowfast")
    if "s1.pathway0_stem.conv.weight" in state:
        renamed = rename_modules(state, _FIXED, r"s(\d)\.pathway0_res(\d+)", PYSLOWFAST_PARTS, "backbone.layer{}.{}",
                                 offset=-1)
        return Checkpoint(renamed, "facebookresearch/SlowFast", "slowfast")
    if ckpt.origin == "open-mmlab/mmaction2":
        return dataclasses.replace(ckpt, norm="imagenet")
    if any(k.startswith("backbone.conv1.conv.") for k in state):    # our names, bare: gcf's own, the entry's convention
        return dataclasses.replace(ckpt, origin=None, norm=None)
    return ckpt


def convert_slow(ckpt: Checkpoint) -> Checkpoint:
    """`convert`, refusing an I3D ResNet (a 5x7x7 stem) with the backbones that take it."""
    return _check_stem(convert(ckpt), 1, 5, "an I3D ResNet: use --backbone i3d_r50 (PyTorchVideo, PySlowFast) or "
                                         "i3d_r50_32x2 (MMAction2)")


def convert_c2d(ckpt: Checkpoint) -> Checkpoint:
    """`convert`, refusing an I3D ResNet (a 5x7x7 stem) with the backbone that takes it."""
    return _check_stem(convert(ckpt), 1, 5, "an I3D ResNet: use --backbone i3d_r50")


def convert_i3d(ckpt: Checkpoint) -> Checkpoint:
    """`convert`, and the temporal stride of the file's stem: 2 in MMAction2's I3D (its save format, {'meta',
    'state_dict'}, with its names), 1 in PyTorchVideo's and PySlowFast's; a bare state dict in our names keeps the
    entry's; non_local=gaussian for non-local blocks without theta convs (dot-product and embedded-Gaussian files
    hold the same tensors: the entry says which). A Slow ResNet (a 1x7x7 stem) is refused with the backbones that
    take it."""
    ckpt = _check_stem(convert(ckpt), 5, 1, "a Slow ResNet: use --backbone slow_r50 or slow_r101")
    blocks = {k.split(".non_local_block.")[1] for k in ckpt.state_dict if ".non_local_block." in k}
    if blocks and not any(k.startswith("theta.") for k in blocks):      # mmcv's Gaussian NL has no theta/phi convs
        ckpt = dataclasses.replace(ckpt, options={"non_local": "gaussian"})
    if ckpt.origin in ("open-mmlab/mmaction2", "facebookresearch/pytorchvideo", "facebookresearch/SlowFast"):
        stride = 2 if ckpt.origin == "open-mmlab/mmaction2" else 1
        return dataclasses.replace(ckpt, options={**ckpt.options, "temporal_stride": stride})
    return ckpt


def _check_stem(ckpt: Checkpoint, t: int, other_t: int, other: str) -> Checkpoint:
    """ckpt, or a GcfError when its stem conv is other_t x 7 x 7 instead of t x 7 x 7: the file is `other` (other
    stems, a CSN's 3x7x7, fail to load listing the differences)."""
    w = ckpt.state_dict.get("backbone.conv1.conv.weight")
    if w is not None and w.ndim == 5 and w.shape[2] == other_t:
        raise GcfError(f"its stem conv is {other_t}x7x7, not {t}x7x7: {other}")
    return ckpt


# CSN: VMZ's PyTorch port (torchvision's VideoResNet names: stem.0, layer1.0.conv1.0, fc) and PyTorchVideo's create_csn
_CSN_FIXED = {"stem.0": "backbone.conv1.conv", "stem.1": "backbone.conv1.bn", "fc": "cls_head.fc_cls", **_FIXED}
_VMZ_PARTS = {"conv1.0": "conv1.conv", "conv1.1": "conv1.bn", "conv3.0": "conv3.conv", "conv3.1": "conv3.bn",
              "downsample.0": "downsample.conv", "downsample.1": "downsample.bn"}
_VMZ_IR = {**_VMZ_PARTS, "conv2.0": "conv2.0.conv", "conv2.1": "conv2.0.bn"}
_VMZ_IP = {**_VMZ_PARTS, "conv2.0.0": "conv2.0.conv", "conv2.0.1": "conv2.0.bn", "conv2.0.2": "conv2.1.conv",
           "conv2.1": "conv2.1.bn"}     # VMZ's conv2.1 is the BatchNorm after the depthwise conv
_PTV_CSN = {**PYTORCHVIDEO_PARTS, "branch2.conv_b": "conv2.0.conv", "branch2.norm_b": "conv2.0.bn"}


def convert_csn(ckpt: Checkpoint) -> Checkpoint:
    """A VMZ or PyTorchVideo CSN state dict in MMAction2's names, with the options its layout implies (ir or ip from
    the keys; BatchNorm eps 1e-3 for MMAction2 and VMZ, 1e-5 for PyTorchVideo) and its repository's input convention
    (VMZ: torchvision's Kinetics statistics; PyTorchVideo: 0.45 / 0.225; MMAction2: ImageNet's, as its IG-65M
    configs). A bare state dict in our names keeps the entry's eps and convention."""
    state = ckpt.state_dict
    if "stem.0.weight" in state and "layer1.0.conv3.0.weight" in state:
        ip = "layer1.0.conv2.0.2.weight" in state
        state = rename_modules(state, _CSN_FIXED, r"layer(\d)\.(\d+)", _VMZ_IP if ip else _VMZ_IR,
                               "backbone.layer{}.{}")
        return Checkpoint(state, "facebookresearch/VMZ", "kinetics-tv", {"mode": "ip" if ip else "ir", "eps": 1e-3})
    if "blocks.0.conv.weight" in state and "blocks.5.proj.weight" in state:
        state = rename_modules(state, _CSN_FIXED, r"blocks\.(\d)\.res_blocks\.(\d+)", _PTV_CSN, "backbone.layer{}.{}")
        return Checkpoint(state, "facebookresearch/pytorchvideo", "slowfast", {"mode": "ir", "eps": 1e-5})
    mode = {"mode": "ip" if "backbone.layer1.0.conv2.1.conv.weight" in state else "ir"}
    if ckpt.origin == "open-mmlab/mmaction2":
        return dataclasses.replace(ckpt, norm="imagenet", options={**mode, "eps": 1e-3})
    if "backbone.layer1.0.conv2.0.conv.weight" in state:        # our names, bare: gcf's own
        return dataclasses.replace(ckpt, origin=None, norm=None, options=mode)
    return ckpt
