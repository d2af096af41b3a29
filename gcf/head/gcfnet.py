"""The GCF-Net head (paper section 3.1, eqs. 1-8 and 11-12) and its Table 2 ablation variants.

Symbols follow the paper: V = {v_i} raw clip descriptors (d), B = {b_i} bi-directional clip descriptors (D),
g clip-wise statistics, att the clip gate, S the re-weighted clips, R = B + S, v' the video descriptor.
Every tensor carries a mask [B, C] (True = real clip); padded clips are zeroed and left out of every mean.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from gcf.head.registry import HeadConfig, HeadOutput, dropout, masked_mean, register


class BA(nn.Module):
    """Bi-directional inter-clip fusion, eq. 1: b_i = W_z sum_j (W_q v_i)(W_k v_j)^T / N(v) (W_v v_j).

    The W are affine (nn.Linear with bias), as in non-local blocks: without a bias, (W_q v_i)(W_k v_j)^T is a
    pure bilinear form of standardised descriptors and cannot score clip j the same from every i (see head.md).
    """

    def __init__(self, in_dim: int, dim: int, norm: str):
        super().__init__()
        self.w_q = nn.Linear(in_dim, dim)
        self.w_k = nn.Linear(in_dim, dim)
        self.w_v = nn.Linear(in_dim, dim)
        self.w_z = nn.Linear(dim, dim)
        self.norm = norm

    def forward(self, v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        rel = self.w_q(v) @ self.w_k(v).transpose(1, 2)             # (W_q v_i)(W_k v_j)^T, [B, C, C]
        keys = mask.unsqueeze(1)                                     # j runs over the valid clips only
        if self.norm == "count":                                     # N(v) = number of clips (non-local 'dot product')
            f = rel.masked_fill(~keys, 0.0) / mask.sum(1).clamp(min=1).to(rel.dtype)[:, None, None]
        else:                                                        # N(v) = sum_j exp(.): scaled dot-product softmax
            f = (rel / math.sqrt(self.w_q.out_features)).masked_fill(~keys, -math.inf).softmax(-1)
        b = self.w_z(f @ self.w_v(v))                                # W_z sum_j f_ij (W_v v_j)
        return b * mask.unsqueeze(-1).to(b.dtype)


class PaperGate(nn.Module):
    """Clip-wise gate, eq. 3: att = sigmoid(W2 ReLU(W1 g)), W1 and W2 fully connected over the C clip positions."""

    def __init__(self, clips: int, reduction: int):
        super().__init__()
        self.clips = clips
        self.w1 = nn.Linear(clips, max(1, clips // reduction))
        self.w2 = nn.Linear(max(1, clips // reduction), clips)

    def forward(self, b: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        n = b.shape[1]
        if n > self.clips:
            raise ValueError(f"the paper's gate is tied to {self.clips} clip positions, got {n}; "
                             "select at most that many clips or use the per-clip gate (gcf-clipgate)")
        g = b.mean(-1) * mask.to(b.dtype)                            # eq. 2: g_i = mean(b_i), 0 where padded
        g = nn.functional.pad(g, (0, self.clips - n))                # positions beyond the video count as padding
        att = torch.sigmoid(self.w2(torch.relu(self.w1(g))))[:, :n]  # eq. 3
        return att * mask.to(att.dtype)


class ClipGate(nn.Module):
    """Per-clip gate: att_i = sigmoid(w2 ReLU(W1 b_i)), from b_i alone, so it works for any clip count."""

    def __init__(self, dim: int, reduction: int):
        super().__init__()
        self.w1 = nn.Linear(dim, max(1, dim // reduction))
        self.w2 = nn.Linear(max(1, dim // reduction), 1)

    def forward(self, b: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        att = torch.sigmoid(self.w2(torch.relu(self.w1(b)))).squeeze(-1)
        return att * mask.to(att.dtype)


class GCFHead(nn.Module):
    """GCF-Net head: optional BA^n fusion (eqs. 1, 11-12), optional gate (eqs. 2-6), mean (eq. 7), W3 (eq. 8)."""

    def __init__(self, cfg: HeadConfig, fusion: bool, gate: str | None):
        super().__init__()
        width = cfg.dim if fusion else cfg.in_dim
        self.fuse = nn.ModuleList(
            [BA(cfg.in_dim if n == 0 else cfg.dim, cfg.dim, cfg.norm) for n in range(cfg.layers if fusion else 0)])
        self.gate = {"paper": lambda: PaperGate(cfg.clips, cfg.reduction),
                     "clip": lambda: ClipGate(width, cfg.reduction),
                     None: lambda: None}[gate]()
        self.drop = dropout(cfg.dropout)
        self.w3 = nn.Linear(width, cfg.num_classes)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> HeadOutput:
        b = x * mask.unsqueeze(-1).to(x.dtype)                       # without fusion B is V (attention-only)
        for ba in self.fuse:
            b = ba(b, mask)                                          # BA^n = BA(BA^{n-1}), eqs. 11-12
        if self.gate is None:
            return HeadOutput(self.w3(self.drop(masked_mean(b, mask))), None)   # fusion-only: v' = mean_i b_i
        att = self.gate(b, mask)                                     # eqs. 2-3
        s = att.unsqueeze(-1) * b                                    # eqs. 4-5: s_i = att_i b_i
        r = b + s                                                    # eq. 6: R = B + S
        v = masked_mean(r, mask)                                     # eq. 7: v' = sum_i r_i / C
        return HeadOutput(self.w3(self.drop(v)), att)                # eq. 8: logits, softmax is in the loss


@register("gcf", reads=("clips", "dim", "layers", "norm", "reduction", "dropout"))
def gcf(cfg: HeadConfig) -> nn.Module:
    """The paper's GCF-Net head: BA^n fusion and the clip-position gate."""
    return GCFHead(cfg, fusion=True, gate="paper")


@register("gcf-clipgate", reads=("dim", "layers", "norm", "reduction", "dropout"))
def gcf_clipgate(cfg: HeadConfig) -> nn.Module:
    """GCF-Net with a per-clip gate (att_i from b_i alone): not tied to a fixed number of clips."""
    return GCFHead(cfg, fusion=True, gate="clip")


@register("fusion-only", reads=("dim", "layers", "norm", "dropout"), att=False)
def fusion_only(cfg: HeadConfig) -> nn.Module:
    """Table 2 'Inter-Clip Fusion only': v' = mean_i b_i."""
    return GCFHead(cfg, fusion=True, gate=None)


@register("attention-only", reads=("clips", "reduction", "dropout"))
def attention_only(cfg: HeadConfig) -> nn.Module:
    """Table 2 'Clip-Wise Attention only': the paper gate on the raw descriptors V, in d dimensions."""
    return GCFHead(cfg, fusion=False, gate="paper")
