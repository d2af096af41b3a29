"""Video Swin Transformer (Liu et al. 2022) in MMAction2's names (`backbone.patch_embed.proj`,
`backbone.layers.0.blocks.0.attn.qkv`, `backbone.norm3`, `cls_head.fc_cls`), so its Kinetics files load unchanged.

A 2x4x4 patch embedding, four stages of Swin blocks (window attention over 8x7x7 token windows with a learnt 3D
relative position bias, every other block's windows shifted by half a window, then an MLP; pre-norm, residual),
2x2 patch merging between stages, a final LayerNorm. A 32x224x224 clip gives A = [768, 16, 7, 7] (tiny). Windows
larger than the map shrink to it (and lose their shift in that dimension), as the reference code does; maps that
do not fill whole windows are zero padded. The original repository's files (SwinTransformer/Video-Swin-Transformer:
`backbone.norm`) are renamed on loading; the relative position index is computed, not loaded.
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import nn

from gcf.errors import GcfError
from gcf.extract.backbones.base import Mlp
from gcf.extract.backbones.checkpoint import Checkpoint
from gcf.extract.backbones.slow import Recognizer

ARCHS = {"t": (96, (2, 2, 6, 2), (3, 6, 12, 24)), "s": (96, (2, 2, 18, 2), (3, 6, 12, 24)),
         "b": (128, (2, 2, 18, 2), (4, 8, 16, 32)), "l": (192, (2, 2, 18, 2), (6, 12, 24, 48))}
WINDOW = (8, 7, 7)


def fitted(size: tuple[int, ...], window: tuple[int, ...], shift: tuple[int, ...]) -> tuple[tuple, tuple]:
    """Window and shift for a map of `size`: a window no larger than the map, no shift where it is the map."""
    return (tuple(min(w, s) for w, s in zip(window, size)),
            tuple(0 if s <= w else h for w, s, h in zip(window, size, shift)))


def partition(x: torch.Tensor, window: tuple[int, int, int]) -> torch.Tensor:
    """[B, D, H, W, C] -> windows [B * nW, wd * wh * ww, C]."""
    b, d, h, w, c = x.shape
    x = x.view(b, d // window[0], window[0], h // window[1], window[1], w // window[2], window[2], c)
    return x.permute(0, 1, 3, 5, 2, 4, 6, 7).reshape(-1, math.prod(window), c)


def merge(windows: torch.Tensor, window: tuple[int, int, int], b: int, d: int, h: int, w: int) -> torch.Tensor:
    """partition's inverse: windows -> [B, D, H, W, C]."""
    x = windows.view(b, d // window[0], h // window[1], w // window[2], *window, -1)
    return x.permute(0, 1, 4, 2, 5, 3, 6, 7).reshape(b, d, h, w, -1)


def shift_mask(size: tuple[int, int, int], window: tuple[int, int, int], shift: tuple[int, int, int],
               device: torch.device) -> torch.Tensor:
    """[nW, N, N] additive mask (0 or -100) keeping a shifted window's tokens from attending across the regions
    the cyclic shift brought together."""
    region = torch.zeros(1, *size, 1, device=device)
    cuts = [(slice(-w), slice(-w, -s), slice(-s, None)) for w, s in zip(window, shift)]
    count = 0
    for d in cuts[0]:
        for h in cuts[1]:
            for w in cuts[2]:
                region[:, d, h, w, :] = count
                count += 1
    ids = partition(region, window).squeeze(-1)
    differ = ids.unsqueeze(1) - ids.unsqueeze(2)
    return differ.masked_fill(differ != 0, -100.0).masked_fill(differ == 0, 0.0)


class WindowAttention3D(nn.Module):
    """Multi-head self-attention inside a window, with a relative position bias per head."""

    def __init__(self, dim: int, heads: int, window: tuple[int, int, int] = WINDOW):
        super().__init__()
        self.heads, self.scale = heads, (dim // heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros(math.prod(2 * w - 1 for w in window), heads))
        coords = torch.stack(torch.meshgrid(*[torch.arange(w) for w in window], indexing="ij")).flatten(1)
        rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + torch.tensor(window) - 1
        index = rel[..., 0] * (2 * window[1] - 1) * (2 * window[2] - 1) + rel[..., 1] * (2 * window[2] - 1) + rel[..., 2]
        self.register_buffer("relative_position_index", index, persistent=False)
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        attn = (q * self.scale) @ k.transpose(-2, -1)
        bias = self.relative_position_bias_table[self.relative_position_index[:n, :n].reshape(-1)]
        attn = attn + bias.reshape(n, n, -1).permute(2, 0, 1).unsqueeze(0)
        if mask is not None:
            windows = mask.shape[0]
            attn = (attn.view(b // windows, windows, self.heads, n, n) + mask[None, :, None]).view(-1, self.heads, n, n)
        return self.proj((attn.softmax(-1) @ v).transpose(1, 2).reshape(b, n, c))



class SwinBlock3D(nn.Module):
    """x + W-MSA(LN(x)) (windows cyclically shifted by `shift`), then x + MLP(LN(x)); on [B, D, H, W, C]."""

    def __init__(self, dim: int, heads: int, shift: tuple[int, int, int]):
        super().__init__()
        self.shift = shift
        self.norm1, self.attn = nn.LayerNorm(dim), WindowAttention3D(dim, heads)
        self.norm2, self.mlp = nn.LayerNorm(dim), Mlp(dim, 4 * dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, d, h, w, c = x.shape
        window, shift = fitted((d, h, w), WINDOW, self.shift)
        y = self.norm1(x)
        pad = [(-s) % k for s, k in zip((d, h, w), window)]
        y = F.pad(y, (0, 0, 0, pad[2], 0, pad[1], 0, pad[0]))
        dp, hp, wp = y.shape[1:4]
        shifted = any(shift)
        if shifted:
            y = torch.roll(y, [-s for s in shift], (1, 2, 3))
        y = self.attn(partition(y, window), mask if shifted else None)
        y = merge(y, window, b, dp, hp, wp)
        if shifted:
            y = torch.roll(y, list(shift), (1, 2, 3))
        x = x + y[:, :d, :h, :w]
        return x + self.mlp(self.norm2(x))


class PatchMerging(nn.Module):
    """2x2 neighbouring tokens concatenated (zero padded to even sizes), LN, linear to twice the channels."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm, self.reduction = nn.LayerNorm(4 * dim), nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, (0, 0, 0, x.shape[3] % 2, 0, x.shape[2] % 2))
        x = torch.cat([x[:, :, 0::2, 0::2], x[:, :, 1::2, 0::2], x[:, :, 0::2, 1::2], x[:, :, 1::2, 1::2]], -1)
        return self.reduction(self.norm(x))


class Stage(nn.Module):
    """MMAction2's BasicLayer: `depth` blocks (odd ones shifted by half a window), then patch merging if any."""

    def __init__(self, dim: int, depth: int, heads: int, downsample: bool):
        super().__init__()
        self.shift = tuple(w // 2 for w in WINDOW)
        self.blocks = nn.ModuleList(SwinBlock3D(dim, heads, self.shift if i % 2 else (0, 0, 0)) for i in range(depth))
        self.downsample = PatchMerging(dim) if downsample else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[1:4]
        window, shift = fitted(size, WINDOW, self.shift)
        mask = shift_mask(tuple(-(-s // w) * w for s, w in zip(size, window)), window, shift, x.device)
        for block in self.blocks:
            x = block(x, mask)
        return x


class PatchEmbed3D(nn.Module):
    """2x4x4 patches (the clip zero padded to whole patches) -> `dim` channels, LN."""

    def __init__(self, dim: int, patch: tuple[int, int, int] = (2, 4, 4)):
        super().__init__()
        self.patch = patch
        self.proj, self.norm = nn.Conv3d(3, dim, patch, patch), nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad = [(-s) % p for s, p in zip(x.shape[2:], self.patch)]
        x = self.proj(F.pad(x, (0, pad[2], 0, pad[1], 0, pad[0])))
        return self.norm(x.permute(0, 2, 3, 4, 1))                    # [B, D, H, W, C]


class OutputNorm(nn.LayerNorm):
    """The final LayerNorm (MMAction2's `norm3`), returning A channels first, [B, C, D, H, W]."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x).permute(0, 4, 1, 2, 3)


class Trunk(nn.Module):
    """MMAction2's SwinTransformer3D with out_indices (3,): patch embedding, four stages, norm3."""

    def __init__(self, dim: int, depths: tuple[int, ...], heads: tuple[int, ...]):
        super().__init__()
        self.patch_embed = PatchEmbed3D(dim)
        self.layers = nn.ModuleList(Stage(dim * 2 ** i, d, h, i < len(depths) - 1)
                                    for i, (d, h) in enumerate(zip(depths, heads)))
        self.out_channels = dim * 2 ** (len(depths) - 1)
        self.norm3 = OutputNorm(self.out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        for layer in self.layers:
            x = layer(x)
            if layer.downsample is not None:
                x = layer.downsample(x)
        return self.norm3(x)


class SwinTransformer3D(Recognizer):
    """Video Swin in MMAction2's recognizer layout; the descriptor is A's global average, as its I3DHead pools."""

    def __init__(self, arch: str, num_classes: int, width: float = 1.0):
        dim, depths, heads = ARCHS[arch]
        dim, heads = max(1, int(dim * width)), tuple(max(1, int(h * width)) for h in heads)
        if any(dim * 2 ** i % h for i, h in enumerate(heads)):
            raise GcfError(f"swin width {width}: {dim} channels do not split into {heads[0]} heads; use another width")
        super().__init__(Trunk(dim, depths, heads), num_classes)
        for m in self.modules():                  # MMAction2's init: truncated normal linears, unit LayerNorms
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, WindowAttention3D):
                nn.init.trunc_normal_(m.relative_position_bias_table, std=0.02)

    @property
    def cam_layer(self) -> nn.Module:
        return self.backbone.norm3


def swin(num_classes: int, arch: str = "t", width: float = 1.0) -> SwinTransformer3D:
    """Video Swin-T, -S, -B or -L (`arch` t, s, b, l), window 8x7x7, patch 2x4x4; `width` other than 1 has no
    published weights (tests use it to stay small)."""
    if arch not in ARCHS:
        raise GcfError(f"swin arch must be one of {', '.join(ARCHS)}, not {arch!r}")
    return SwinTransformer3D(arch, num_classes, width)


def convert(ckpt: Checkpoint) -> Checkpoint:
    """The original repository's names (its final `backbone.norm`) in MMAction2's (`backbone.norm3`), without the
    relative position indices (computed here), and the arch the file's widths and depths imply."""
    state = {("backbone.norm3." + k[len("backbone.norm."):] if k.startswith("backbone.norm.") else k): v
             for k, v in ckpt.state_dict.items() if not k.endswith("relative_position_index")}
    embed = state.get("backbone.patch_embed.proj.weight")
    depth = sum(k.startswith("backbone.layers.2.blocks.") and k.endswith(".norm1.weight") for k in state)
    arch = next((a for a, (dim, depths, _) in ARCHS.items()
                 if embed is not None and embed.shape[0] == dim and depths[2] == depth), None)
    options = {**ckpt.options, "arch": arch} if arch else ckpt.options
    return dataclasses.replace(ckpt, state_dict=state, options=options)
