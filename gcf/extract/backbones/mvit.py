"""Multiscale Vision Transformers: MViT (Fan et al. 2021) and MViTv2 (Li et al. 2022), in PySlowFast's names
(`patch_embed.proj`, `blocks.0.attn.qkv`, `blocks.0.attn.pool_q`, `blocks.0.attn.rel_pos_h`, `norm`,
`head.projection`), so its `MViTv2_*_k400_*.pyth` and MViT-B files load unchanged; MMAction2's (`backbone.
patch_embed.projection`, `backbone.norm3`, `cls_head.fc_cls`) and PyTorchVideo's (`patch_embed.patch_model`,
`blocks.0.attn.q` / `k` / `v`, `norm_embed`, `head.proj`) are renamed on loading.

Tokens from a 3x7x7 patch convolution (stride 2x4x4) plus a class token pass through stages of blocks; a stage's
first block pools the queries 2x in space and doubles channels and heads, and every block pools keys and values
(depthwise conv, stride 8x8 in space at first, 4, 2 and 1 in later stages) before attending. MViTv2 adds decomposed
relative positions (t, h, w), a residual from the pooled queries and doubles channels in the attention; MViT v1
adds a separable absolute position table instead and doubles channels in the previous block's MLP.

The descriptor is the class token after the final LayerNorm, what the head classifies. A for Grad-CAM is the patch
tokens that enter the last block, as a map [768, 8, 7, 7] (v2-S): the class token reaches the output only through
that block (as in TimeSformer).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from gcf.errors import GcfError
from gcf.extract.backbones.base import Backbone, Mlp
from gcf.extract.backbones.checkpoint import Checkpoint

EPS = 1e-6


@dataclass(frozen=True)
class Arch:
    """An MViT's shape: blocks, first width and heads, the blocks that start a stage, and the version."""

    depth: int
    dim: int
    heads: int
    stages: tuple[int, ...]  # blocks that pool the queries 2x in space and double channels and heads
    v2: bool = True  # relative positions, residual pooling, channels doubled in the attention
    kernel: tuple[int, int, int] | None = (3, 3, 3)  # pooling kernel; None: stride + 1 where pooling (MViT-B 32x3)


ARCHS = {"s": Arch(16, 96, 1, (1, 3, 14)), "b": Arch(24, 96, 1, (2, 5, 21)), "l": Arch(48, 144, 2, (2, 8, 44)),
         "v1_b": Arch(16, 96, 1, (1, 3, 14), v2=False),
         "v1_b24": Arch(24, 96, 1, (2, 5, 21), v2=False, kernel=None)}


def pool(x: torch.Tensor, op: nn.Module | None, norm: nn.Module | None,
         grid: tuple[int, int, int]) -> tuple[torch.Tensor, tuple[int, int, int]]:
    """Pool the patch tokens of [B, heads, 1 + t*h*w, C] on their grid (the class token passes by), then norm."""
    if op is None:
        return x, grid
    b, n, _, c = x.shape
    cls, patches = x[:, :, :1], x[:, :, 1:]
    patches = op(patches.reshape(b * n, *grid, c).permute(0, 4, 1, 2, 3))
    grid = tuple(patches.shape[2:])
    x = torch.cat([cls, patches.reshape(b, n, c, -1).transpose(2, 3)], 2)
    return (norm(x) if norm is not None else x), grid


def rel_positions(table: torch.Tensor, q: int, k: int) -> torch.Tensor:
    """The [q, k, C] embeddings of query-key offsets along one axis; the table is resized (linear) when the axis
    is another length than it was trained on, and offsets are scaled where q and k are pooled differently."""
    n = 2 * max(q, k) - 1
    if table.shape[0] != n:
        table = F.interpolate(table.T[None], size=n, mode="linear")[0].T
    q_ratio, k_ratio = max(k / q, 1.0), max(q / k, 1.0)
    dist = (torch.arange(q, device=table.device)[:, None] * q_ratio
            - torch.arange(k, device=table.device)[None] * k_ratio + (k - 1) * k_ratio)
    return table[dist.long()]


class Attention(nn.Module):
    """Multi-head pooling attention: q, k, v pooled by depthwise convolutions, each followed by a LayerNorm."""

    def __init__(self, dim: int, dim_out: int, heads: int, grid: tuple[int, int, int], kernel_q: tuple | None,
                 kernel_kv: tuple | None, stride_q: tuple, stride_kv: tuple, v2: bool):
        super().__init__()
        self.heads, self.dim_out, self.v2 = heads, dim_out, v2
        head_dim = dim_out // heads
        self.qkv, self.proj = nn.Linear(dim, 3 * dim_out), nn.Linear(dim_out, dim_out)

        def pooling(kernel, stride):
            if kernel is None:
                return None, None
            conv = nn.Conv3d(head_dim, head_dim, kernel, stride, [k // 2 for k in kernel], groups=head_dim,
                             bias=False)
            return conv, nn.LayerNorm(head_dim, eps=EPS)

        self.pool_q, self.norm_q = pooling(kernel_q, stride_q)
        self.pool_k, self.norm_k = pooling(kernel_kv, stride_kv)
        self.pool_v, self.norm_v = pooling(kernel_kv, stride_kv)
        if v2:
            side = 2 * max(grid[1] // stride_q[1], grid[1] // stride_kv[1]) - 1
            self.rel_pos_h = nn.Parameter(torch.zeros(side, head_dim))
            self.rel_pos_w = nn.Parameter(torch.zeros(side, head_dim))
            self.rel_pos_t = nn.Parameter(torch.zeros(2 * grid[0] - 1, head_dim))

    def forward(self, x: torch.Tensor, grid: tuple[int, int, int]) -> tuple[torch.Tensor, tuple[int, int, int]]:
        b, n, _ = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        q, q_grid = pool(q, self.pool_q, self.norm_q, grid)
        k, k_grid = pool(k, self.pool_k, self.norm_k, grid)
        v, _ = pool(v, self.pool_v, self.norm_v, grid)
        attn = (q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)
        if self.v2:                                            # decomposed relative positions, along t, h and w
            r_q = q[:, :, 1:].reshape(b, self.heads, *q_grid, -1)
            rel = [torch.einsum(f"bnthwc,{axis}kc->bnthwk", r_q, rel_positions(table, qs, ks))
                   for axis, table, qs, ks in zip("thw", (self.rel_pos_t, self.rel_pos_h, self.rel_pos_w),
                                                  q_grid, k_grid)]
            bias = rel[0][..., :, None, None] + rel[1][..., None, :, None] + rel[2][..., None, None, :]
            patches = attn[:, :, 1:, 1:].reshape(b, self.heads, *q_grid, *k_grid) + bias
            attn = torch.cat([attn[:, :, :1], torch.cat([attn[:, :, 1:, :1],
                              patches.reshape(b, self.heads, attn.shape[2] - 1, -1)], 3)], 2)
        x = attn.softmax(-1) @ v
        if self.v2:                                            # residual pooling: + the pooled queries
            x = torch.cat([x[:, :, :1], x[:, :, 1:] + q[:, :, 1:]], 2)
        return self.proj(x.transpose(1, 2).reshape(b, -1, self.dim_out)), q_grid


class Block(nn.Module):
    """x + attention(LN(x)) on the pooled skip, then + MLP(LN(x)); channels change through `proj`: of LN(x) before
    the attention (v2) or after it (v1)."""

    def __init__(self, dim: int, dim_out: int, heads: int, grid: tuple[int, int, int], kernel_q: tuple | None,
                 kernel_kv: tuple | None, stride_q: tuple, stride_kv: tuple, v2: bool):
        super().__init__()
        self.v2 = v2
        att_dim = dim_out if v2 else dim
        self.norm1 = nn.LayerNorm(dim, eps=EPS)
        self.attn = Attention(dim, att_dim, heads, grid, kernel_q, kernel_kv, stride_q, stride_kv, v2)
        self.norm2 = nn.LayerNorm(att_dim, eps=EPS)
        self.mlp = Mlp(att_dim, 4 * att_dim, dim_out)
        self.proj = nn.Linear(dim, dim_out) if dim != dim_out else None
        skip = [s + 1 if s > 1 else s for s in stride_q]
        self.pool_skip = nn.MaxPool3d(skip, stride_q, [k // 2 for k in skip]) if max(stride_q) > 1 else None

    def forward(self, x: torch.Tensor, grid: tuple[int, int, int]) -> tuple[torch.Tensor, tuple[int, int, int]]:
        x_norm = self.norm1(x)
        x_attn, new_grid = self.attn(x_norm, grid)
        if self.v2 and self.proj is not None:
            x = self.proj(x_norm)
        x = pool(x[:, None], self.pool_skip, None, grid)[0][:, 0] + x_attn
        x_norm = self.norm2(x)
        if not self.v2 and self.proj is not None:
            return self.proj(x_norm) + self.mlp(x_norm), new_grid
        return x + self.mlp(x_norm), new_grid


class PatchEmbed(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.proj = nn.Conv3d(3, dim, (3, 7, 7), (2, 4, 4), (1, 3, 3))


class Head(nn.Module):
    def __init__(self, dim: int, num_classes: int):
        super().__init__()
        self.projection = nn.Linear(dim, num_classes)


class TokenMap(nn.Module):
    """Patch tokens [B, t*h*w, C] -> A [B, C, t, h, w] (the module Grad-CAM hooks)."""

    def forward(self, x: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
        return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], *grid)


class MViT(Backbone):
    """MViT / MViTv2 with `arch`'s stages, its tables (relative or absolute positions) made for `frames` x `pixels`
    clips; other clip shapes resize them, as MMAction2 does."""

    def __init__(self, num_classes: int, arch: str = "s", frames: int = 16, pixels: int = 224, width: float = 1.0):
        super().__init__()
        a = ARCHS[arch]
        dim, heads = max(a.heads, int(a.dim * width)) // a.heads * a.heads, a.heads
        self.patch_embed = PatchEmbed(dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        grid = (frames // 2, pixels // 4, pixels // 4)
        self.v2 = a.v2
        if not a.v2:
            self.pos_embed_spatial = nn.Parameter(torch.zeros(1, grid[1] * grid[2], dim))
            self.pos_embed_temporal = nn.Parameter(torch.zeros(1, grid[0], dim))
            self.pos_embed_class = nn.Parameter(torch.zeros(1, 1, dim))
        self.blocks = nn.ModuleList()
        stride_kv = (1, 8, 8)
        for i in range(a.depth):
            stride_q = (1, 2, 2) if i in a.stages else (1, 1, 1)
            heads *= 2 if i in a.stages else 1
            stride_kv = tuple(max(s // q, 1) for s, q in zip(stride_kv, stride_q))
            dim_out = dim * 2 if i + (0 if a.v2 else 1) in a.stages else dim
            kernel_q = a.kernel or tuple(s + 1 if s > 1 else s for s in stride_q)
            kernel_kv = a.kernel or tuple(s + 1 if s > 1 else s for s in stride_kv)
            pooled = a.v2 or i in a.stages
            self.blocks.append(Block(dim, dim_out, heads, grid, kernel_q if pooled else None,
                                     kernel_kv if max(kernel_kv + stride_kv) > 1 else None, stride_q, stride_kv,
                                     a.v2))
            grid = tuple(g // s for g, s in zip(grid, stride_q))
            dim = dim_out
        self.token_map = TokenMap()
        self.norm = nn.LayerNorm(dim, eps=EPS)
        self.head = Head(dim, num_classes)
        self.feature_dim = dim
        for m in self.modules():                    # the reference code's init, for random weights
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        for name, p in self.named_parameters():
            if name.endswith(("cls_token", "rel_pos_h", "rel_pos_w", "rel_pos_t")) or "pos_embed_" in name:
                nn.init.trunc_normal_(p, std=0.02)

    def embed(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int]]:
        """Clips [B, 3, T, H, W] -> tokens [B, 1 + t*h*w, C] (class token first) and the grid (t, h, w)."""
        x = self.patch_embed.proj(x)
        grid = tuple(x.shape[2:])
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x.flatten(2).transpose(1, 2)], 1)
        if self.v2:
            return x, grid
        t, s = self.pos_embed_temporal.shape[1], self.pos_embed_spatial.shape[1]
        pos = self.pos_embed_spatial.repeat(1, t, 1) + self.pos_embed_temporal.repeat_interleave(s, 1)
        if (t, s) != (grid[0], grid[1] * grid[2]):             # trained on another clip shape (PySlowFast's resize)
            side = round(s ** 0.5)
            pos = F.interpolate(pos.reshape(1, t, side, side, -1).permute(0, 4, 1, 2, 3), size=grid,
                                mode="trilinear").flatten(2).transpose(1, 2)
        return x + torch.cat([self.pos_embed_class, pos], 1), grid

    def _run(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int, int]]:
        """(class token, A, grid) entering the last block."""
        x, grid = self.embed(x)
        for block in self.blocks[:-1]:
            x, grid = block(x, grid)
        return x[:, :1], self.token_map(x[:, 1:], grid), grid

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        return self._run(x)[1]

    def descriptor(self, x: torch.Tensor) -> torch.Tensor:
        cls, a, grid = self._run(x)
        x, _ = self.blocks[-1](torch.cat([cls, a.flatten(2).transpose(1, 2)], 1), grid)
        return self.norm(x)[:, 0]

    def classify(self, v: torch.Tensor) -> torch.Tensor:
        return self.head.projection(v)

    @property
    def cam_layer(self) -> nn.Module:
        return self.token_map


def mvit(num_classes: int, arch: str = "s", frames: int = 16, pixels: int = 224, width: float = 1.0) -> MViT:
    """MViTv2-S/B/L (`arch` s, b, l) or MViT v1 B (v1_b; v1_b24: 24 blocks, PySlowFast's MVIT_B_32x3_CONV), its
    position tables made for `frames` x `pixels` clips; `width` other than 1 has no published weights (tests)."""
    if arch not in ARCHS:
        raise GcfError(f"mvit arch must be one of {', '.join(ARCHS)}, not {arch!r}")
    return MViT(num_classes, arch, frames, pixels, width)


def _mm_name(key: str) -> str:
    """MMAction2's name of an MViT tensor -> PySlowFast's (its final norm is `norm3`, the last stage's)."""
    key = key.removeprefix("backbone.")
    for theirs, ours in (("patch_embed.projection.", "patch_embed.proj."), ("norm3.", "norm."),
                         ("cls_head.fc_cls.", "head.projection.")):
        if key.startswith(theirs):
            return ours + key.removeprefix(theirs)
    return key


_PTV_TOP = {"patch_embed.patch_model.": "patch_embed.proj.", "cls_positional_encoding.": "", "norm_embed.": "norm.",
            "head.proj.": "head.projection."}


def _from_pytorchvideo(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """PyTorchVideo's MViT names -> PySlowFast's: q, k, v Linears joined into qkv; its pools saved twice (`pool_q`
    and `_attention_pool_q.pool`, one module under two names) kept once."""
    out = {}
    for key, value in state.items():
        theirs = next((t for t in _PTV_TOP if key.startswith(t)), None)
        m = re.fullmatch(r"(blocks\.\d+\.attn\.)_attention_pool_([qkv])\.(pool|norm)\.(.+)", key)
        if theirs is not None:
            out[_PTV_TOP[theirs] + key.removeprefix(theirs)] = value
        elif m:
            out[f"{m[1]}{m[3]}_{m[2]}.{m[4]}"] = value
        elif not re.fullmatch(r"blocks\.\d+\.attn\.[qkv]\.(weight|bias)", key):
            out[key] = value
    for key in [k for k in state if re.fullmatch(r"blocks\.\d+\.attn\.q\.(weight|bias)", k)]:
        out[key.replace(".attn.q.", ".attn.qkv.")] = torch.cat([state[key.replace(".q.", f".{p}.")] for p in "qkv"])
    return out


def convert(ckpt: Checkpoint) -> Checkpoint:
    """An MMAction2 or PyTorchVideo MViT in PySlowFast's names; the arch and the clip shape its tables were made
    for, read from the file (blocks, stage starts, pooling kernels; relative or absolute position tables)."""
    state = ckpt.state_dict
    if "backbone.patch_embed.projection.weight" in state or "patch_embed.projection.weight" in state:
        state = {_mm_name(k): v for k, v in state.items()}              # (a backbone-only file has no prefix)
        ckpt = dataclasses.replace(ckpt, state_dict=state, norm="slowfast")   # its configs' 114.75 / 57.375
    if "patch_embed.patch_model.weight" in state:
        state = _from_pytorchvideo(state)
        ckpt = dataclasses.replace(ckpt, state_dict=state)
    if "patch_embed.proj.weight" not in state or "blocks.0.norm1.weight" not in state:
        return ckpt
    depth = len({k.split(".")[1] for k in state if k.startswith("blocks.")})
    v2 = "blocks.0.attn.rel_pos_t" in state
    stages = tuple(i for i in range(depth) if f"blocks.{i if v2 else i - 1}.proj.weight" in state)
    kernel = state.get("blocks.0.attn.pool_k.weight")
    kernel = (3, 3, 3) if kernel is not None and tuple(kernel.shape[2:]) == (3, 3, 3) else None
    arch = next((n for n, a in ARCHS.items() if (a.depth, a.stages, a.v2, a.kernel) == (depth, stages, v2, kernel)),
                None)
    options = {"arch": arch} if arch else {}
    time, space = (("blocks.0.attn.rel_pos_t", "blocks.0.attn.rel_pos_h") if v2 else
                   ("pos_embed_temporal", "pos_embed_spatial"))
    time, space = state.get(time), state.get(space)          # (a file without them fails to load, naming them)
    if v2:
        options |= {"frames": time.shape[0] + 1} | ({"pixels": 2 * (space.shape[0] + 1)} if space is not None else {})
    else:
        options |= ({"frames": 2 * time.shape[1]} if time is not None else {}) | (
            {"pixels": 4 * round(space.shape[1] ** 0.5)} if space is not None else {})
    return dataclasses.replace(ckpt, options={**ckpt.options, **options})
