"""Head complexity as in the paper's Table 3: parameters and MFLOPs of one video's forward pass."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from gcf.head.registry import HeadConfig, build


@dataclass(frozen=True)
class Complexity:
    """Parameter count and forward FLOPs for one video of `clips` clips (1 multiply-add = 2 FLOPs)."""

    params: int
    flops: int

    @property
    def macs(self) -> int:
        return self.flops // 2

    def __str__(self) -> str:
        return f"{self.params / 1e6:.3f}M params, {self.flops / 1e6:.2f} MFLOPs ({self.macs / 1e6:.2f}M MACs) per video"


def count_flops(fn, *args) -> int:
    """FLOPs torch's flop counter sees while running fn(*args) (matmuls, convs; not elementwise ops, nor the
    CPU attention kernel of nn.MultiheadAttention: 4 C^2 D a transformer layer, under 1% at C = 10)."""
    with FlopCounterMode(display=False) as counter:
        fn(*args)
    return counter.get_total_flops()


def complexity(cfg: HeadConfig, head: nn.Module | None = None) -> Complexity:
    """Params and forward FLOPs of the head `cfg` describes, on one video with cfg.clips valid clips."""
    head = build(cfg) if head is None else head
    x = torch.zeros(1, cfg.clips, cfg.in_dim)
    mask = torch.ones(1, cfg.clips, dtype=torch.bool)
    was_training = head.training
    head.eval()
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)   # the fused encoder kernel hides its matmuls from the counter
    try:
        with torch.no_grad():
            flops = count_flops(head, x, mask)
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
        head.train(was_training)
    return Complexity(sum(p.numel() for p in head.parameters()), flops)
