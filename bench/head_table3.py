"""Which GCF head settings reproduce the paper's Table 3 row (0.86M params, 15 MFLOPs; d=2048, K=600, C=10)?

    python bench/head_table3.py

Counts every setting with gcf.head.complexity (torch's flop counter) over D and fusion layers (the gate's
reduction ratio changes at most 220 parameters at C=10, so it is fixed at 2), keeps those within 5% of 0.86M
parameters and prints the closest in compute, reading the paper's MFLOPs as FLOPs (2 per multiply-add) and
as multiply-adds (MACs).
"""

from __future__ import annotations

from gcf.head import HeadConfig, complexity

PARAMS, MFLOPS = 0.86e6, 15e6


def main() -> None:
    rows = [(dim, layers, complexity(HeadConfig(in_dim=2048, num_classes=600, clips=10, dim=dim, layers=layers)))
            for layers in (1, 2, 3, 4) for dim in range(16, 257, 8)]
    near = [r for r in rows if abs(r[2].params / PARAMS - 1) <= 0.05]
    for unit, count in (("FLOPs", lambda c: c.flops), ("MACs", lambda c: c.macs)):
        print(f"within 5% of 0.86M params, closest to 15 M{unit}:")
        for dim, layers, c in sorted(near, key=lambda r: abs(count(r[2]) / MFLOPS - 1))[:3]:
            print(f"  D={dim:4d} layers={layers}: {c.params / 1e6:.3f}M params, {c.flops / 1e6:.2f} MFLOPs, "
                  f"{c.macs / 1e6:.2f}M MACs")


if __name__ == "__main__":
    main()
