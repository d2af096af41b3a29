"""torchvision's video classifiers as `tv:NAME` backbones (the `tv` extra), imported only when one is asked for.

Weights: "random", a checkpoint file of torchvision's layout, or a name from the model's weights enum ("DEFAULT",
"KINETICS400_V1", "R3D_18_Weights.KINETICS400_V1"), which torchvision downloads into the torch hub cache.
The input convention is read from the weights' own preset (mean, std, crop size), values in [0, 1], RGB.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gcf.errors import GcfError
from gcf.extract.backbones.base import Backbone, BackboneSpec, calibrate_batchnorm
from gcf.extract.backbones.checkpoint import load_state, read_checkpoint, weights_identity
from gcf.extract.backbones.norm import Norm, get_norm

NAMES = ("r3d_18", "mc3_18", "r2plus1d_18", "s3d", "mvit_v2_s", "swin3d_t")
# name -> (classifier attribute, its weight's state dict key, module giving the last conv map (None for
# transformers), descriptor length)
LAYOUT = {"r3d_18": ("fc", "fc.weight", "layer4", 512), "mc3_18": ("fc", "fc.weight", "layer4", 512),
          "r2plus1d_18": ("fc", "fc.weight", "layer4", 512),
          "s3d": ("classifier", "classifier.1.weight", "features", 1024),
          "mvit_v2_s": ("head", "head.1.weight", None, 768), "swin3d_t": ("head", "head.weight", None, 768)}
CLIP_LEN = 16  # the paper's clips; torchvision evaluated s3d on 128 frames and swin3d_t on 32


class TorchvisionBackbone(Backbone):
    """A torchvision video model split at its classifier: the rest gives the descriptor, the classifier the logits."""

    def __init__(self, net: nn.Module, name: str):
        super().__init__()
        head_attr, _, self.cam_name, self.feature_dim = LAYOUT[name]
        self.name = name
        self.head = getattr(net, head_attr)
        setattr(net, head_attr, nn.Identity())
        self.net = net

    def descriptor(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def classify(self, v: torch.Tensor) -> torch.Tensor:
        if self.name == "s3d":  # a 1x1x1 conv classifier, which commutes with its global mean
            return self.head(v[:, :, None, None, None]).flatten(1)
        return self.head(v)

    @property
    def cam_layer(self) -> nn.Module:
        if self.cam_name is None:
            raise GcfError(f"tv:{self.name} is a transformer with no conv feature map for Grad-CAM; use a 3D CNN")
        return getattr(self.net, self.cam_name)


def build(name: str, weights: str | os.PathLike, *, num_classes: int | None = None, norm: str | None = None,
          seed: int = 0, **options: Any) -> TorchvisionBackbone:
    """tv:NAME with `weights` ("random", a checkpoint file, or a weights enum name), spec attached, in eval mode."""
    short, video, enum_cls = _resolve(name, options)
    enum, state = None, None
    if weights == "random":
        warnings.warn(f"{name}: RANDOM weights (seed {seed}): its features carry no knowledge of actions; "
                      "give a checkpoint file or a weights name such as DEFAULT", stacklevel=2)
    elif Path(weights).expanduser().is_file():
        state = read_checkpoint(weights).state_dict
        head_key = LAYOUT[short][1]
        if num_classes is None and head_key in state:
            num_classes = state[head_key].shape[0]
    else:
        try:
            enum = enum_cls.verify(str(weights))
        except (KeyError, ValueError) as e:
            choices = ", ".join(["DEFAULT", *enum_cls.__members__])
            raise GcfError(f"{name}: weights {weights!r} is neither a file nor one of {choices}") from e
        if num_classes not in (None, len(enum.meta["categories"])):
            raise GcfError(f"{name}: weights {weights} have {len(enum.meta['categories'])} classes, not {num_classes}")
    convention, input_size = _convention(name, enum or enum_cls.DEFAULT, norm)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        kwargs = {} if enum else {"num_classes": num_classes or len(enum_cls.DEFAULT.meta["categories"])}
        net = getattr(video, short)(weights=enum, **kwargs)
        if weights == "random":
            calibrate_batchnorm(net, convention, CLIP_LEN, input_size)
    if state is not None:
        load_state(net, state, weights, name)
        identity, seed_used = weights_identity(weights), None
    elif enum is not None:  # torchvision downloaded it into the torch hub cache
        identity, seed_used = weights_identity(Path(torch.hub.get_dir()) / "checkpoints" / Path(enum.url).name), None
    else:
        identity, seed_used = "random", seed
    model = TorchvisionBackbone(net, short)
    model.spec = _spec(name, model, convention, input_size, identity, seed_used)
    return model.eval()


def spec(name: str, *, num_classes: int | None = None, norm: str | None = None, **options: Any) -> BackboneSpec:
    """The spec build(name, "random", ...) gives, without allocating weights."""
    model = meta_backbone(name, num_classes=num_classes, **options)
    convention, input_size = _convention(name, _resolve(name, options)[2].DEFAULT, norm)
    return _spec(name, model, convention, input_size, "random", 0)


def meta_backbone(name: str, *, num_classes: int | None = None, **options: Any) -> TorchvisionBackbone:
    """tv:NAME's layers on the meta device, in eval mode: shapes without weights."""
    short, video, enum_cls = _resolve(name, options)
    with torch.device("meta"):
        net = getattr(video, short)(num_classes=num_classes or len(enum_cls.DEFAULT.meta["categories"]))
    return TorchvisionBackbone(net, short).eval()


def _resolve(name: str, options: dict[str, Any]):
    """(short name, torchvision.models.video, the weights enum class); GcfError when unknown or not importable."""
    short = name.removeprefix("tv:")
    if short not in NAMES:
        raise GcfError(f"unknown torchvision backbone {name!r}; known: {', '.join('tv:' + n for n in NAMES)}")
    if options:
        raise GcfError(f"backbone {name} takes no option {', '.join(sorted(options))}; its options: "
                       "num_classes, norm, seed")
    try:
        import torchvision.models
        import torchvision.models.video as video
    except Exception as e:  # ImportError, or its C++ ops failing to register against this torch build
        raise GcfError(f"{name} needs torchvision, which cannot be imported here ({type(e).__name__}: "
                       f"{str(e)[:80]}); install the `tv` extra with a torchvision built for torch "
                       f"{torch.__version__}") from e
    return short, video, torchvision.models.get_model_weights(short)


def _convention(name: str, enum: Any, norm: str | None) -> tuple[Norm, int]:
    """The input convention (`norm` by name, else the weights' preset: [0, 1] RGB, its mean and std) and crop size."""
    preset = enum.transforms()
    convention = get_norm(norm) if norm else Norm(name, tuple(preset.mean), tuple(preset.std), 1.0, "RGB")
    return convention, preset.crop_size[0]


def _spec(name: str, model: TorchvisionBackbone, norm: Norm, input_size: int, weights: str,
          seed: int | None) -> BackboneSpec:
    head_weight = LAYOUT[model.name][1].split(".", 1)[1]  # the key inside the classifier module
    num_classes = model.head.state_dict()[head_weight].shape[0]
    return BackboneSpec(name=name, norm=norm, clip_len=CLIP_LEN, input_size=input_size,
                        feature_dim=model.feature_dim, num_classes=num_classes, weights=weights, seed=seed)
