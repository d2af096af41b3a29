"""VideoMAE (Tong et al. 2022): a plain ViT on 2x16x16 tubelets, fine-tuned on Kinetics, in the names of its
reference code (MCG-NJU/VideoMAE `modeling_finetune.py`: `patch_embed.proj`, `blocks.0.attn.qkv`, `attn.q_bias`,
`fc_norm`, `head`); Hugging Face's `VideoMAEForVideoClassification` files (`videomae.encoder.layer.0.attention.
attention.query`, `classifier`) and MMAction2's (`backbone.patch_embed.projection`, `backbone.blocks.0.mlp.layers.0.0`,
`cls_head.fc_cls`) are renamed on loading. VideoMAE V2 (OpenGVLab/VideoMAEv2) keeps these names: its ViT-g/14
is size g, its distilled ViT-S/B load as s and b.

Tokens get a fixed sine-cosine position table made for the clip shape the weights were trained on (16 frames of
224 px: 8 x 14 x 14 tokens), so that is the only shape the network takes. A is the last block's tokens as a map
[768, 8, 14, 14] (ViT-B); the descriptor is fc_norm of their mean, the classifier's input (`use_mean_pooling`).
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from gcf.errors import GcfError
from gcf.extract.backbones.base import Backbone, Mlp
from gcf.extract.backbones.checkpoint import Checkpoint

# width, depth, heads, patch side, MLP ratio; g is VideoMAE V2's ViT-g/14
SIZES = {"s": (384, 12, 6, 16, 4.0), "b": (768, 12, 12, 16, 4.0), "l": (1024, 24, 16, 16, 4.0),
         "h": (1280, 32, 16, 16, 4.0), "g": (1408, 40, 16, 14, 48 / 11)}
EPS = 1e-6          # the reference code's LayerNorm epsilon (Hugging Face's port runs 1e-12 and 1e-5: ~1e-6 apart)


def sinusoid_table(n: int, dim: int) -> torch.Tensor:
    """The reference code's fixed position encoding: [n, dim], sin on even, cos on odd channels."""
    angle = np.arange(n)[:, None] / np.power(10000, 2 * (np.arange(dim) // 2) / dim)
    angle[:, 0::2], angle[:, 1::2] = np.sin(angle[:, 0::2]), np.cos(angle[:, 1::2])
    return torch.tensor(angle, dtype=torch.float32)


class Attention(nn.Module):
    """Multi-head self-attention; qkv without bias, q and v biases of their own (k has none)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.q_bias, self.v_bias = nn.Parameter(torch.zeros(dim)), nn.Parameter(torch.zeros(dim))
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        bias = torch.cat([self.q_bias, torch.zeros_like(self.v_bias), self.v_bias])
        q, k, v = F.linear(x, self.qkv.weight, bias).reshape(b, n, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        attn = ((q * (c // self.heads) ** -0.5) @ k.transpose(-2, -1)).softmax(-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))



class Block(nn.Module):
    """Pre-norm transformer block: x + attn(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, dim: int, heads: int, hidden: int):
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim, eps=EPS), Attention(dim, heads)
        self.norm2, self.mlp = nn.LayerNorm(dim, eps=EPS), Mlp(dim, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    def __init__(self, dim: int, tubelet: tuple[int, int, int] = (2, 16, 16)):
        super().__init__()
        self.proj = nn.Conv3d(3, dim, tubelet, tubelet)


class TokenMap(nn.Module):
    """Tokens [B, t*h*w, C] -> the map A [B, C, t, h, w] (the module Grad-CAM hooks)."""

    def forward(self, x: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
        return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], *grid)


class VideoMAE(Backbone):
    """ViT-`size` on 16-frame 224 px clips (2 x patch x patch tubelets), mean-pooled tokens, fc_norm, head."""

    def __init__(self, size: str, num_classes: int, width: float = 1.0, frames: int = 16, pixels: int = 224):
        super().__init__()
        dim, depth, heads, patch, ratio = SIZES[size]
        heads = max(1, int(heads * width))
        dim = max(heads, int(dim * width)) // heads * heads
        self.patch_embed = PatchEmbed(dim, (2, patch, patch))
        self.grid, self.patch = (frames // 2, pixels // patch, pixels // patch), patch
        self.register_buffer("pos_embed", sinusoid_table(int(np.prod(self.grid)), dim), persistent=False)
        self.blocks = nn.ModuleList(Block(dim, heads, int(dim * ratio)) for _ in range(depth))
        self.token_map = TokenMap()
        self.fc_norm = nn.LayerNorm(dim, eps=EPS)
        self.head = nn.Linear(dim, num_classes)
        self.feature_dim = dim
        for m in self.modules():                    # the reference code's init (random weights: O(1) descriptors)
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[2:]) != (self.grid[0] * 2, self.grid[1] * self.patch, self.grid[2] * self.patch):
            raise ValueError(f"VideoMAE's position table is for {self.grid[0] * 2}-frame clips of "
                             f"{self.grid[1] * self.patch} px")
        x = self.patch_embed.proj(x)
        grid = tuple(x.shape[2:])
        x = x.flatten(2).transpose(1, 2) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.token_map(x, grid)

    def descriptor(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc_norm(self.feature_map(x).mean(dim=(2, 3, 4)))

    def classify(self, v: torch.Tensor) -> torch.Tensor:
        return self.head(v)

    @property
    def cam_layer(self) -> nn.Module:
        return self.token_map


def videomae(num_classes: int, size: str = "b", width: float = 1.0) -> VideoMAE:
    """VideoMAE ViT-S/B/L/H (`size` s, b, l, h) or VideoMAE V2's ViT-g/14 (g) fine-tuned on 16x224 clips; `width` other than 1 has no published
    weights (tests use it to stay small)."""
    if size not in SIZES:
        raise GcfError(f"videomae size must be one of {', '.join(SIZES)}, not {size!r}")
    return VideoMAE(size, num_classes, width)


# Hugging Face's names -> the reference code's (query/key/value are joined into qkv)
_HF = {"videomae.embeddings.patch_embeddings.projection": "patch_embed.proj", "fc_norm": "fc_norm",
       "classifier": "head"}
_HF_BIAS = {"attention.attention.query": "q_bias", "attention.attention.value": "v_bias"}
_HF_LAYER = {"layernorm_before": "norm1", "layernorm_after": "norm2", "attention.output.dense": "attn.proj",
             "intermediate.dense": "mlp.fc1", "output.dense": "mlp.fc2"}


def _mm_name(key: str) -> str:
    """MMAction2's name of a VideoMAE tensor (`backbone.patch_embed.projection`, mmcv FFN's `mlp.layers.0.0` and
    `mlp.layers.1`, `cls_head.fc_cls`) -> the reference code's."""
    key = key.removeprefix("backbone.").replace("patch_embed.projection.", "patch_embed.proj.")
    key = key.replace(".mlp.layers.0.0.", ".mlp.fc1.").replace(".mlp.layers.1.", ".mlp.fc2.")
    return key.replace("cls_head.fc_cls.", "head.")


def convert(ckpt: Checkpoint) -> Checkpoint:
    """A Hugging Face VideoMAEForVideoClassification or MMAction2 VisionTransformer state dict in the reference
    code's names, and the size its width and depth imply; the reference code's own files (`{'model': ...}`) as
    they are."""
    state = ckpt.state_dict
    if "videomae.embeddings.patch_embeddings.projection.weight" in state:
        out = {}
        for key, value in state.items():
            m = re.fullmatch(r"videomae\.encoder\.layer\.(\d+)\.(.+)\.(weight|bias|q_bias|v_bias)", key)
            if m is None:
                module, _, leaf = key.rpartition(".")
                out[f"{_HF.get(module, module)}.{leaf}"] = value
            elif m[3] in ("q_bias", "v_bias"):                         # transformers 4 saves them so
                out[f"blocks.{m[1]}.attn.{m[3]}"] = value
            elif m[2] in _HF_BIAS and m[3] == "bias":                   # transformers 5: query.bias -> q_bias
                out[f"blocks.{m[1]}.attn.{_HF_BIAS[m[2]]}"] = value
            elif m[2] not in ("attention.attention.query", "attention.attention.key", "attention.attention.value"):
                out[f"blocks.{m[1]}.{_HF_LAYER.get(m[2], m[2])}.{m[3]}"] = value     # (their weights: below)
        for i in sorted({int(k.split(".")[3]) for k in state if k.startswith("videomae.encoder.layer.")}):
            part = f"videomae.encoder.layer.{i}.attention.attention"
            out[f"blocks.{i}.attn.qkv.weight"] = torch.cat([state[f"{part}.{p}.weight"] for p in ("query", "key", "value")])
        ckpt = Checkpoint(out, "huggingface/transformers (MCG-NJU/videomae-*)", "imagenet")
    if "backbone.patch_embed.projection.weight" in ckpt.state_dict:            # MMAction2's VisionTransformer
        ckpt = dataclasses.replace(ckpt, norm="imagenet", state_dict={
            _mm_name(k): v for k, v in ckpt.state_dict.items() if k != "backbone.pos_embed"})   # computed here
    embed = ckpt.state_dict.get("patch_embed.proj.weight")
    depth = len({k.split(".")[1] for k in ckpt.state_dict if k.startswith("blocks.")})
    size = next((s for s, (dim, d, *_) in SIZES.items() if embed is not None and embed.shape[0] == dim and d == depth),
                None)
    return dataclasses.replace(ckpt, options={**ckpt.options, "size": size}) if size else ckpt
