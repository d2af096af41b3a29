"""TimeSformer (Bertasius et al. 2021), divided space-time attention, in the names of facebookresearch/TimeSformer
(`model.patch_embed.proj`, `model.blocks.0.temporal_attn.qkv`, `model.blocks.0.temporal_fc`, `model.head`), so
its `TimeSformer_divST_*.pyth` files load unchanged; MMAction2's divided space-time files (mmcv layers,
`nn.MultiheadAttention`) are renamed on loading.

A ViT-B/16 on each frame's patches plus a class token; each block attends over time (per patch position, then a
linear `temporal_fc`) and then over space (per frame, with the class token copied into every frame and averaged
back), then an MLP. Tokens are ordered patch-major, frame-minor, as the reference code orders them. The descriptor
is the class token after the final LayerNorm (what the head classifies). A for Grad-CAM is the patch tokens that
enter the last block, as a map [768, T, 14, 14]: the class token reaches the output only through that block.
"""

from __future__ import annotations

import dataclasses
import re

import torch
import torch.nn.functional as F
from torch import nn

from gcf.errors import GcfError
from gcf.extract.backbones.base import Backbone, Mlp
from gcf.extract.backbones.checkpoint import Checkpoint

EPS = 1e-6


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        attn = ((q @ k.transpose(-2, -1)) * (c // self.heads) ** -0.5).softmax(-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))



class Block(nn.Module):
    """Divided space-time attention on [B, 1 + P*T, C] (patch-major tokens after the class token)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim, eps=EPS), Attention(dim, heads)
        self.temporal_norm1, self.temporal_attn = nn.LayerNorm(dim, eps=EPS), Attention(dim, heads)
        self.temporal_fc = nn.Linear(dim, dim)
        self.norm2, self.mlp = nn.LayerNorm(dim, eps=EPS), Mlp(dim, 4 * dim)

    def forward(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        b, _, c = x.shape
        cls, patches = x[:, :1], x[:, 1:]
        p = patches.shape[1] // frames
        xt = patches.reshape(b * p, frames, c)                                           # attention over time
        xt = patches + self.temporal_fc(self.temporal_attn(self.temporal_norm1(xt)).reshape(b, p * frames, c))
        xs = xt.reshape(b, p, frames, c).transpose(1, 2).reshape(b * frames, p, c)      # then over space
        xs = torch.cat([cls.repeat_interleave(frames, 0), xs], 1)
        ys = self.attn(self.norm1(xs))
        cls_out = ys[:, 0].reshape(b, frames, c).mean(1, keepdim=True)                 # the class token: frame mean
        ys = ys[:, 1:].reshape(b, frames, p, c).transpose(1, 2).reshape(b, p * frames, c)
        x = torch.cat([cls, xt], 1) + torch.cat([cls_out, ys], 1)
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, 16, 16)


class TokenMap(nn.Module):
    """Patch tokens [B, h*w*T, C] (patch-major) -> A [B, C, T, h, w] (the module Grad-CAM hooks)."""

    def forward(self, x: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
        t, h, w = grid
        return x.reshape(x.shape[0], h, w, t, -1).permute(0, 4, 3, 1, 2)


class VisionTransformer(nn.Module):
    """The reference code's `model`: embeddings (class, position, time), blocks, norm, head."""

    def __init__(self, num_classes: int, dim: int, depth: int, heads: int, frames: int = 8, pixels: int = 224):
        super().__init__()
        self.patch_embed = PatchEmbed(dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, (pixels // 16) ** 2 + 1, dim))
        self.time_embed = nn.Parameter(torch.zeros(1, frames, dim))
        self.blocks = nn.ModuleList(Block(dim, heads) for _ in range(depth))
        self.token_map = TokenMap()
        self.norm = nn.LayerNorm(dim, eps=EPS)
        self.head = nn.Linear(dim, num_classes)

    def embed(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int]]:
        """Clips [B, 3, T, H, W] -> tokens [B, 1 + h*w*T, C] and the grid (T, h, w); the position and time tables
        are resized (nearest) for other clip shapes, as the reference code does."""
        b, _, t, _, _ = x.shape
        x = self.patch_embed.proj(x.transpose(1, 2).flatten(0, 1))                  # [(B T), C, h, w]
        h, w = x.shape[2:]
        x = x.flatten(2).transpose(1, 2)                                             # [(B T), h*w, C]
        pos = self.pos_embed
        if h * w + 1 != pos.shape[1]:
            side = int((pos.shape[1] - 1) ** 0.5)
            grid = pos[:, 1:].transpose(1, 2).reshape(1, -1, side, side)
            grid = F.interpolate(grid, size=(h, w), mode="nearest")
            pos = torch.cat([pos[:, :1], grid.flatten(2).transpose(1, 2)], 1)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], 1) + pos
        cls = x[:b, :1]                                                              # the first clip's first frame
        time = self.time_embed if t == self.time_embed.shape[1] else \
            F.interpolate(self.time_embed.transpose(1, 2), size=t, mode="nearest").transpose(1, 2)
        x = x[:, 1:].reshape(b, t, h * w, -1).transpose(1, 2) + time[:, None]       # [B, h*w, T, C]
        return torch.cat([cls, x.flatten(1, 2)], 1), (t, h, w)


class TimeSformer(Backbone):
    """TimeSformer (divided space-time) in the reference layout (`model.*`)."""

    def __init__(self, num_classes: int, width: float = 1.0, frames: int = 8, pixels: int = 224):
        super().__init__()
        heads = max(1, int(12 * width))
        dim = max(heads, int(768 * width)) // heads * heads
        self.model = VisionTransformer(num_classes, dim, 12, heads, frames, pixels)
        self.feature_dim = dim
        for m in self.modules():                    # the reference code's init, for random weights
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        for p in (self.model.pos_embed, self.model.cls_token):
            nn.init.trunc_normal_(p, std=0.02)

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        return self._run(x)[1]

    def _run(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int, int]]:
        """(class token, A, grid) entering the last block."""
        x, grid = self.model.embed(x)
        for block in self.model.blocks[:-1]:
            x = block(x, grid[0])
        return x[:, :1], self.model.token_map(x[:, 1:], grid), grid

    def descriptor(self, x: torch.Tensor) -> torch.Tensor:
        cls, a, grid = self._run(x)
        patches = a.permute(0, 3, 4, 2, 1).flatten(1, 3)                             # back to patch-major tokens
        x = self.model.blocks[-1](torch.cat([cls, patches], 1), grid[0])
        return self.model.norm(x)[:, 0]

    def classify(self, v: torch.Tensor) -> torch.Tensor:
        return self.model.head(v)

    @property
    def cam_layer(self) -> nn.Module:
        return self.model.token_map


def timesformer(num_classes: int, frames: int = 8, pixels: int = 224, width: float = 1.0) -> TimeSformer:
    """TimeSformer ViT-B/16, divided space-time attention, its time and position tables made for `frames` x
    `pixels` clips (8x224; HR 16x448; L 96x224)."""
    return TimeSformer(num_classes, width, frames, pixels)


# MMAction2's names (mmcv BaseTransformerLayer: attentions.0 temporal, attentions.1 spatial, nn.MultiheadAttention's
# in_proj / out_proj, FFN layers.0.0 / layers.1) -> the reference code's, within a block
_MM_BLOCK = {"attentions.0.norm": "temporal_norm1", "attentions.0.attn.in_proj": "temporal_attn.qkv",
             "attentions.0.attn.out_proj": "temporal_attn.proj", "attentions.0.temporal_fc": "temporal_fc",
             "attentions.1.norm": "norm1", "attentions.1.attn.in_proj": "attn.qkv",
             "attentions.1.attn.out_proj": "attn.proj", "ffns.0.norm": "norm2", "ffns.0.layers.0.0": "mlp.fc1",
             "ffns.0.layers.1": "mlp.fc2"}
_MM_TOP = {"backbone.patch_embed.projection": "model.patch_embed.proj", "cls_head.fc_cls": "model.head"}


def _mm_name(key: str) -> str:
    """MMAction2's name of a divided space-time TimeSformer tensor -> the reference code's."""
    m = re.fullmatch(r"backbone\.transformer_layers\.layers\.(\d+)\.(.+?)(?:_|\.)(weight|bias)", key)
    if m and m[2] in _MM_BLOCK:
        return f"model.blocks.{m[1]}.{_MM_BLOCK[m[2]]}.{m[3]}"
    module, _, leaf = key.rpartition(".")
    if module in _MM_TOP:
        return f"{_MM_TOP[module]}.{leaf}"
    return "model." + key.removeprefix("backbone.") if key.startswith("backbone.") else key   # cls_token, norm ...


def convert(ckpt: Checkpoint) -> Checkpoint:
    """An MMAction2 TimeSformer (divided space-time) in the reference code's names, with its configs' input
    convention (mean and std 127.5); the clip shape the file's time and position tables were trained on (frames,
    pixels)."""
    if "backbone.transformer_layers.layers.0.attentions.0.attn.in_proj_weight" in ckpt.state_dict:
        if "backbone.transformer_layers.layers.0.attentions.0.temporal_fc.weight" not in ckpt.state_dict:
            raise GcfError("the file is an MMAction2 TimeSformer with space-only or joint space-time attention; "
                           "gcf takes the divided space-time model (timesformer_divST_*)")
        ckpt = dataclasses.replace(ckpt, norm="inception",
                                   state_dict={_mm_name(k): v for k, v in ckpt.state_dict.items()})
    time, pos = ckpt.state_dict.get("model.time_embed"), ckpt.state_dict.get("model.pos_embed")
    if time is None or pos is None:
        return ckpt
    options = {"frames": int(time.shape[1]), "pixels": 16 * round((pos.shape[1] - 1) ** 0.5)}
    return dataclasses.replace(ckpt, options={**ckpt.options, **options})
