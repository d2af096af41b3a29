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
    """K heads of one HeadConfig with stacked parameters; calling it runs all K on a batch.

    A stack of one is the head itself (its parameters seen as [1, ...]): functional_call and batched matmuls
    cost more than the work of a small head.
    """

    def __init__(self, heads: list[nn.Module], device: torch.device | str = "cpu"):
        if len(heads) == 1:
            self.module = copy.deepcopy(heads[0]).to(device)
            self.leaves, self.buffers = dict(self.module.named_parameters()), {}
        else:
            self.module = copy.deepcopy(heads[0]).to("meta")   # the heads' code; its own weights are never used
            params, buffers = stack_module_state(heads)
            self.leaves = {n: p.detach().to(device).requires_grad_() for n, p in params.items()}
            self.buffers = {n: b.to(device) for n, b in buffers.items()}
        self.single = len(heads) == 1

    def __len__(self) -> int:
        return 1 if self.single else next(iter(self.leaves.values())).shape[0]

    @property
    def params(self) -> dict[str, torch.Tensor]:
        """Every parameter as [K, ...]; update them in place under no_grad (in a stack of one these are views
        of the head's own parameters: read gradients with grads(), not their .grad)."""
        return {n: p.unsqueeze(0) for n, p in self.leaves.items()} if self.single else self.leaves

    def grads(self) -> dict[str, torch.Tensor | None]:
        """The gradients of `params`, [K, ...] (None for a parameter the loss did not reach)."""
        return {n: None if p.grad is None else p.grad.unsqueeze(0) if self.single else p.grad
                for n, p in self.leaves.items()}

    def train(self, mode: bool = True) -> "Stack":
        self.module.train(mode)
        return self

    def eval(self) -> "Stack":
        return self.train(False)

    def __call__(self, x: torch.Tensor, mask: torch.Tensor) -> HeadOutput:
        """x [B, C, d] and mask [B, C] shared by every head, or [K, B, C, d] and [K, B, C] one batch per head
        -> logits [K, B, classes] and att [K, B, C] (or None)."""
        per_head = x.dim() == 4
        if self.single:
            out = self.module(x[0], mask[0]) if per_head else self.module(x, mask)
            return HeadOutput(*(None if t is None else t.unsqueeze(0) for t in out))

        def one(params, buffers, x, mask):
            out = functional_call(self.module, (params, buffers), (x, mask), tie_weights=False)
            return tuple(t for t in out if t is not None)

        dims = 0 if per_head else None
        with warnings.catch_warnings():   # torch runs ops without a batching rule (CPU attention) head by head
            warnings.filterwarnings("ignore", message="There is a performance drop because we have not yet")
            out = vmap(one, in_dims=(0, 0, dims, dims), randomness="different")(self.leaves, self.buffers, x, mask)
        return HeadOutput(out[0], out[1] if len(out) > 1 else None)

    def select(self, keep: torch.Tensor) -> None:
        """Keep only the heads at positions `keep` (training goes on from their current weights)."""
        if self.single:
            assert keep.tolist() == [0], "a stack of one keeps its head or ends"
            return
        self.leaves = {n: p.detach()[keep].requires_grad_() for n, p in self.leaves.items()}
        self.buffers = {n: b[keep] for n, b in self.buffers.items()}

    def zero_grad(self) -> None:
        for p in self.leaves.values():
            p.grad = None


class StackOptimizer:
    """AdamW or SGD over a Stack's parameters with one lr, weight decay, momentum and dampening per head.

    The update rules (and their order of operations) are torch.optim.AdamW's and torch.optim.SGD's with their
    defaults (betas 0.9/0.999, eps 1e-8; no Nesterov); heads that are not `active` are left unchanged.
    """

    betas, eps = (0.9, 0.999), 1e-8

    def __init__(self, stack: Stack, cfgs):
        self.stack, self.kind = stack, cfgs[0].optimizer
        device = next(iter(stack.leaves.values())).device
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
        """One update of every parameter that has a gradient; heads where `active` [K] is False keep their weights.

        In place, as torch.optim does it. An inactive head's gradient (NaN after a bad batch) counts as zero, and
        its factors make the update exactly p * 1 + 0; its moments only decay, so they stay finite.
        """
        self.steps += 1
        (b1, b2), t = self.betas, self.steps
        # per-head factors in float64, rounded to float32 once, as torch rounds its Python-float scalars
        decay = torch.where(active, 1 - self.lr * self.weight_decay, 1.0).float()
        step = torch.where(active, -self.lr / (1 - b1 ** t) if self.kind == "adamw" else -self.lr, 0.0).float()
        wd, momentum, keep = (v.float() for v in (self.weight_decay, self.momentum, 1 - self.dampening))
        grads = self.stack.grads()
        for name, p in self.stack.params.items():
            if grads[name] is None:
                continue
            shape = _per_head(p)
            g = grads[name].masked_fill_(~active.view(shape), 0.0)
            if self.kind == "adamw":
                if name not in self.state:
                    self.state[name] = [torch.zeros_like(p), torch.zeros_like(p)]
                m, v = self.state[name]
                m.lerp_(g, 1 - b1)
                v.mul_(b2).addcmul_(g, g, value=1 - b2)
                p.mul_(decay.view(shape))
                update = (v.sqrt() / math.sqrt(1 - b2 ** t)).add_(self.eps)
                p.add_(torch.div(m, update, out=update).mul_(step.view(shape)))   # p + step * m / denom
            else:
                g.addcmul_(p, wd.view(shape))                   # g + weight_decay * p
                if name not in self.state:
                    self.state[name] = [g.clone()]             # torch: the first buffer is the gradient itself
                else:                                          # momentum 0 (dampening 0 then) keeps buf = g
                    self.state[name][0].mul_(momentum.view(shape)).addcmul_(g, keep.view(shape))
                p.addcmul_(self.state[name][0], step.view(shape))


def _per_head(p: torch.Tensor) -> tuple[int, ...]:
    """The shape that broadcasts a per-head vector [K] over a stacked parameter [K, ...]."""
    return (-1,) + (1,) * (p.dim() - 1)
