"""K heads of one configuration trained as one: stacked parameters [K, ...] run through torch.func.vmap.

A fusion head is a few small matmuls, so training one at a time leaves a GPU idle and a CPU core waiting on
per-op overhead. Stacking K heads turns each layer's K small matmuls into one batched matmul. Every head keeps
its own seed, learning rate, weight decay and lambda; StackOptimizer applies torch.optim's AdamW and SGD update
rules with those per-head values.
"""

from __future__ import annotations

import copy
import math
import warnings

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from gcf.head.registry import HeadOutput


class Stack:
    """K heads of one HeadConfig with stacked parameters; calling it runs all K on a batch."""

    def __init__(self, heads: list[nn.Module], device: torch.device | str = "cpu"):
        params, buffers = stack_module_state(heads)
        self.params = {n: p.detach().to(device).requires_grad_() for n, p in params.items()}
        self.buffers = {n: b.to(device) for n, b in buffers.items()}
        self.base = copy.deepcopy(heads[0]).to("meta")   # the code of the heads; its own weights are never used

    def __len__(self) -> int:
        return next(iter(self.params.values())).shape[0]

    def train(self, mode: bool = True) -> "Stack":
        self.base.train(mode)
        return self

    def eval(self) -> "Stack":
        return self.train(False)

    def __call__(self, x: torch.Tensor, mask: torch.Tensor) -> HeadOutput:
        """x [B, C, d] and mask [B, C] shared by every head, or [K, B, C, d] and [K, B, C] one batch per head
        -> logits [K, B, classes] and att [K, B, C] (or None)."""
        def one(params, buffers, x, mask):
            return tuple(t for t in functional_call(self.base, (params, buffers), (x, mask)) if t is not None)

        per_head = x.dim() == 4
        if len(self) == 1:   # a stack of one runs the head itself: plain matmuls are faster than batched ones
            x, mask = (x[0], mask[0]) if per_head else (x, mask)
            out = one(*({n: t[0] for n, t in d.items()} for d in (self.params, self.buffers)), x, mask)
            out = tuple(t.unsqueeze(0) for t in out)
        else:
            dims = 0 if per_head else None
            with warnings.catch_warnings():   # torch runs ops without a batching rule (CPU attention) head by head
                warnings.filterwarnings("ignore", message="There is a performance drop because we have not yet")
                out = vmap(one, in_dims=(0, 0, dims, dims), randomness="different")(self.params, self.buffers, x,
                                                                                     mask)
        return HeadOutput(out[0], out[1] if len(out) > 1 else None)

    def select(self, keep: torch.Tensor) -> None:
        """Keep only the heads at positions `keep` (training goes on from their current weights)."""
        self.params = {n: p.detach()[keep].requires_grad_() for n, p in self.params.items()}
        self.buffers = {n: b[keep] for n, b in self.buffers.items()}

    def zero_grad(self) -> None:
        for p in self.params.values():
            p.grad = None


class StackOptimizer:
    """AdamW or SGD over a Stack's parameters with one lr, weight decay, momentum and dampening per head.

    The update rules (and their order of operations) are torch.optim.AdamW's and torch.optim.SGD's with their
    defaults (betas 0.9/0.999, eps 1e-8; no Nesterov); heads that are not `active` are left unchanged.
    """

    betas, eps = (0.9, 0.999), 1e-8

    def __init__(self, stack: Stack, cfgs):
        self.stack, self.kind = stack, cfgs[0].optimizer
        device = next(iter(stack.params.values())).device
        column = lambda values: torch.tensor(values, dtype=torch.float64, device=device)  # noqa: E731
        self.lr = column([c.lr for c in cfgs])
        self.weight_decay = column([c.weight_decay for c in cfgs])
        self.momentum = column([c.momentum for c in cfgs])
        self.dampening = column([c.dampening if c.momentum else 0.0 for c in cfgs])   # torch ignores it then
        self.state: dict[str, list[torch.Tensor]] = {}
        self.steps = 0

    def select(self, keep: torch.Tensor) -> None:
        """Follow Stack.select: keep the per-head settings and state of the heads at positions `keep`."""
        for name in ("lr", "weight_decay", "momentum", "dampening"):
            setattr(self, name, getattr(self, name)[keep])
        self.state = {n: [s[keep] for s in states] for n, states in self.state.items()}

    @torch.no_grad()
    def step(self, active: torch.Tensor) -> None:
        """One update of every parameter that has a gradient; heads where `active` [K] is False keep their weights."""
        self.steps += 1
        (b1, b2), t = self.betas, self.steps
        # per-head factors in float64, rounded to float32 once, as torch rounds its Python-float scalars
        decay, step_size = (1 - self.lr * self.weight_decay).float(), (-self.lr / (1 - b1 ** t)).float()
        wd, momentum, keep, lr = (v.float() for v in (self.weight_decay, self.momentum, 1 - self.dampening, -self.lr))
        for name, p in self.stack.params.items():
            if p.grad is None:
                continue
            shape, g = _per_head(p), p.grad
            if self.kind == "adamw":
                m, v = self.state.setdefault(name, [torch.zeros_like(p), torch.zeros_like(p)])
                m.lerp_(g, 1 - b1)
                v.mul_(b2).addcmul_(g, g, value=1 - b2)
                denom = (v.sqrt() / math.sqrt(1 - b2 ** t)).add_(self.eps)
                new = p * decay.view(shape) + step_size.view(shape) * (m / denom)
            else:
                g = g + wd.view(shape) * p
                if name not in self.state:
                    self.state[name] = [g.clone()]             # torch: the first buffer is the gradient itself
                else:
                    self.state[name][0].mul_(momentum.view(shape)).add_(keep.view(shape) * g)
                g = torch.where(self.momentum.view(shape) != 0, self.state[name][0], g)
                new = p + lr.view(shape) * g
            p.copy_(torch.where(active.view(shape), new, p))


def _per_head(p: torch.Tensor) -> tuple[int, ...]:
    """The shape that broadcasts a per-head vector [K] over a stacked parameter [K, ...]."""
    return (-1,) + (1,) * (p.dim() - 1)
