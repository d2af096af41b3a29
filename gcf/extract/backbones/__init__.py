"""3D-CNN backbones by name, in the module layouts of their published Kinetics checkpoints (docs/backbones.md)."""

from gcf.extract.backbones.base import Backbone, BackboneSpec
from gcf.extract.backbones.checkpoint import read_checkpoint, weights_identity
from gcf.extract.backbones.norm import NORMS, Norm, get_norm
from gcf.extract.backbones.registry import (REGISTRY, backbone_spec, build_backbone, check_geometry,
                                            list_backbones)

__all__ = ["Backbone", "BackboneSpec", "NORMS", "Norm", "REGISTRY", "backbone_spec", "build_backbone",
           "check_geometry", "get_norm", "list_backbones", "read_checkpoint", "weights_identity"]
