"""Heads beyond the paper, for an honest comparison: linear on the mean, max-pool, attention-pool, transformer."""

from __future__ import annotations

import math

import torch
from torch import nn

from gcf.head.registry import HeadConfig, HeadOutput, dropout, masked_mean, register


class LinearHead(nn.Module):
    """Linear classifier on the mean clip descriptor; with one clip it is the C-Clip/D-Clips clip classifier."""

    def __init__(self, cfg: HeadConfig):
        super().__init__()
        self.drop = dropout(cfg.dropout)
        self.w3 = nn.Linear(cfg.in_dim, cfg.num_classes)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> HeadOutput:
        return HeadOutput(self.w3(self.drop(masked_mean(x, mask))), None)


class MaxPoolHead(nn.Module):
    """Project each clip to D with ReLU, max over the valid clips, classify."""

    def __init__(self, cfg: HeadConfig):
        super().__init__()
        self.proj = nn.Linear(cfg.in_dim, cfg.dim)
        self.drop = dropout(cfg.dropout)
        self.w3 = nn.Linear(cfg.dim, cfg.num_classes)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> HeadOutput:
        h = torch.relu(self.proj(x)).masked_fill(~mask.unsqueeze(-1), -math.inf)
        return HeadOutput(self.w3(self.drop(h.amax(1))), None)


class AttentionPoolHead(nn.Module):
    """Softmax-weighted clip pooling (attention MIL): a = softmax_i(w . tanh(W v_i)), v' = sum_i a_i v_i."""

    def __init__(self, cfg: HeadConfig):
        super().__init__()
        self.score = nn.Sequential(nn.Linear(cfg.in_dim, cfg.dim), nn.Tanh(), nn.Linear(cfg.dim, 1))
        self.drop = dropout(cfg.dropout)
        self.w3 = nn.Linear(cfg.in_dim, cfg.num_classes)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> HeadOutput:
        a = self.score(x).squeeze(-1).masked_fill(~mask, -math.inf).softmax(-1)   # att sums to 1 over the clips
        return HeadOutput(self.w3(self.drop((a.unsqueeze(-1) * x).sum(1))), a)


class TransformerHead(nn.Module):
    """Project to D, `layers` pre-norm transformer encoder layers over the clips, masked mean, classify."""

    def __init__(self, cfg: HeadConfig):
        super().__init__()
        self.proj = nn.Linear(cfg.in_dim, cfg.dim)
        heads = max(h for h in range(1, max(1, cfg.dim // 64) + 1) if cfg.dim % h == 0)   # 64 wide, dividing D
        layer = nn.TransformerEncoderLayer(cfg.dim, nhead=heads, dim_feedforward=2 * cfg.dim,
                                           dropout=cfg.dropout, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, cfg.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(cfg.dim)
        self.w3 = nn.Linear(cfg.dim, cfg.num_classes)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> HeadOutput:
        h = self.encoder(self.proj(x), src_key_padding_mask=~mask)
        return HeadOutput(self.w3(self.norm(masked_mean(h, mask))), None)


register("linear", reads=("dropout",), att=False)(LinearHead)
register("max-pool", reads=("dim", "dropout"), att=False)(MaxPoolHead)
register("attention-pool", reads=("dim", "dropout"))(AttentionPoolHead)
register("transformer", reads=("dim", "layers", "dropout"), att=False)(TransformerHead)
