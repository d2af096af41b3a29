"""One registry of clip-fusion heads: name -> builder taking a HeadConfig (timm-style)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, NamedTuple

import torch
from torch import nn


class HeadOutput(NamedTuple):
    """What every head returns: video logits [B, K] and per-clip attention [B, C] (or None)."""

    logits: torch.Tensor
    att: torch.Tensor | None


@dataclass(frozen=True)
class HeadConfig:
    """Everything needed to rebuild a head; options a head does not use are ignored by it."""

    name: str = "gcf"
    in_dim: int = 2048        # d, descriptor width from the backbone
    num_classes: int = 600    # K
    clips: int = 10           # C, clip positions the head sees (the paper's gate is tied to it)
    dim: int = 256            # D, width of b_i, r_i and v' (measured better than 512; docs/head.md)
    layers: int = 1           # n in BA^n (eqs. 11-12); encoder layers for `transformer`
    norm: str = "softmax"     # N(v) in eq. 1: "softmax" (scaled dot product) or "count" (divide by clip count)
    reduction: int = 2        # gate bottleneck: C/r hidden units (paper gate) or D/r (clip gate)
    dropout: float = 0.0      # on v' before the classifier W3

    def check(self) -> None:
        """Raise ValueError naming the first invalid field."""
        if self.name not in HEADS:
            raise ValueError(f"unknown head {self.name!r}; choose one of {', '.join(sorted(HEADS))}")
        for field in ("in_dim", "num_classes", "clips", "dim", "layers", "reduction"):
            if getattr(self, field) < 1:
                raise ValueError(f"{field} must be >= 1, got {getattr(self, field)}")
        if self.norm not in ("softmax", "count"):
            raise ValueError(f"norm must be 'softmax' or 'count', got {self.norm!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


@dataclass(frozen=True)
class HeadSpec:
    """A registered head: its builder, the HeadConfig fields it reads and whether it returns att."""

    build: Callable[[HeadConfig], nn.Module]
    reads: frozenset[str]   # fields beyond name, in_dim and num_classes that change the module or its output
    att: bool               # returns per-clip attention, so lambda of eq. 9 changes its training


HEADS: dict[str, HeadSpec] = {}
OPTIONS = ("clips", "dim", "layers", "norm", "reduction", "dropout")   # the HeadConfig fields a head may read


def register(name: str, reads: tuple[str, ...] = OPTIONS, att: bool = True) -> Callable:
    """Decorator adding a builder `fn(cfg) -> nn.Module` to the registry under `name`.

    `reads` and `att` let `gcf ablate` train configurations that differ only in what a head ignores once;
    the defaults (every option, att) are always safe.
    """
    unknown = set(reads) - set(OPTIONS)
    if unknown:
        raise ValueError(f"head {name!r}: unknown HeadConfig fields {sorted(unknown)}; choose from {OPTIONS}")

    def add(fn: Callable[[HeadConfig], nn.Module]) -> Callable[[HeadConfig], nn.Module]:
        HEADS[name] = HeadSpec(fn, frozenset(reads), att)
        return fn

    return add


def list_heads() -> list[str]:
    """Registered head names, sorted."""
    return sorted(HEADS)


def build_head(name: str = "gcf", **options) -> nn.Module:
    """Build head `name`; options are HeadConfig fields (in_dim, num_classes, clips, dim, layers, ...)."""
    return build(HeadConfig(name=name, **options))


def build(cfg: HeadConfig) -> nn.Module:
    """Build the head a HeadConfig describes; the module keeps its config as `.cfg`."""
    cfg.check()
    head = HEADS[cfg.name].build(cfg)
    head.cfg = cfg
    return head


def canonical(cfg: HeadConfig) -> HeadConfig:
    """cfg with the options its head does not read set to their defaults: equal heads get equal configs."""
    unread = {f: getattr(HeadConfig, f) for f in OPTIONS if f not in HEADS[cfg.name].reads}
    return replace(cfg, **unread)


def dropout(p: float) -> nn.Module:
    """Dropout on v', or nothing at p = 0 (torch's dropout still samples a mask then: ~0.1 ms a step)."""
    return nn.Dropout(p) if p > 0 else nn.Identity()


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of x [B, C, D] over the valid clips of mask [B, C] -> [B, D]."""
    m = mask.unsqueeze(-1).to(x.dtype)
    return (x * m).sum(1) / m.sum(1).clamp(min=1.0)
