"""The GCF head against hand computations of the paper's equations on tiny tensors, and mask behaviour."""

import math

import pytest
import torch

from gcf.head import HeadConfig, build, complexity, list_heads

D_IN, D, K, C = 5, 4, 3, 4


def make(name="gcf", **kw):
    torch.manual_seed(0)
    cfg = HeadConfig(name=name, in_dim=D_IN, num_classes=K, clips=C, dim=D, **kw)
    return build(cfg).eval()


def lin(layer, x):
    """W x (+ bias) by explicit sums over the weight matrix."""
    w = layer.weight
    out = [sum(w[o, i] * x[i] for i in range(w.shape[1])) for o in range(w.shape[0])]
    if layer.bias is not None:
        out = [o + layer.bias[n] for n, o in enumerate(out)]
    return torch.stack(out)


def ba_by_hand(ba, v, n, norm):
    """Eq. 1 with explicit loops over target i and other clips j (only the first n clips are valid)."""
    q = [lin(ba.w_q, v[i]) for i in range(n)]
    k = [lin(ba.w_k, v[j]) for j in range(n)]
    val = [lin(ba.w_v, v[j]) for j in range(n)]
    out = []
    for i in range(n):
        rel = [sum(q[i][c] * k[j][c] for c in range(len(q[i]))) for j in range(n)]
        if norm == "count":
            f = [r / n for r in rel]
        else:
            e = [math.exp(r / math.sqrt(len(q[i]))) for r in rel]
            f = [x / sum(e) for x in e]
        y = sum(f[j] * val[j] for j in range(n))
        out.append(lin(ba.w_z, y))
    return out


def gate_by_hand(gate, b, clips):
    """Eqs. 2-3: g_i = mean over the D dims of b_i (0 for absent positions), att = sigmoid(W2 ReLU(W1 g))."""
    g = [sum(b[i]) / len(b[i]) if i < len(b) else torch.tensor(0.0) for i in range(clips)]
    h = [max(x, torch.tensor(0.0)) for x in lin(gate.w1, torch.stack(g))]
    return [1 / (1 + math.exp(-x)) for x in lin(gate.w2, torch.stack(h))][: len(b)]


@pytest.mark.parametrize("norm", ["count", "softmax"])
@pytest.mark.parametrize("n", [C, 2])
def test_gcf_head_matches_equations_1_to_8(norm, n):
    head = make(norm=norm)
    x = torch.randn(1, C, D_IN)
    mask = torch.arange(C) < n
    out = head(x, mask[None])
    with torch.no_grad():
        b = ba_by_hand(head.fuse[0], x[0], n, norm)                           # eq. 1
        att = gate_by_hand(head.gate, b, C)                                   # eqs. 2-3
        r = [b[i] + att[i] * b[i] for i in range(n)]                          # eqs. 4-6
        v = sum(r) / n                                                        # eq. 7
        logits = lin(head.w3, v)                                              # eq. 8
    assert torch.allclose(out.logits[0], logits, atol=1e-5)
    assert torch.allclose(out.att[0, :n], torch.tensor(att, dtype=torch.float32), atol=1e-6)
    assert (out.att[0, n:] == 0).all()


def test_stacked_fusion_is_ba_of_ba():
    """Eqs. 11-12: BA^2 = BA(BA^1)."""
    head = make("fusion-only", layers=2, norm="count")
    x = torch.randn(1, C, D_IN)
    mask = torch.ones(1, C, dtype=torch.bool)
    with torch.no_grad():
        b1 = torch.stack(ba_by_hand(head.fuse[0], x[0], C, "count"))
        b2 = torch.stack(ba_by_hand(head.fuse[1], b1, C, "count"))
        expected = lin(head.w3, b2.mean(0))                                   # fusion-only: v' = mean_i b_i
    assert torch.allclose(head(x, mask).logits[0], expected, atol=1e-5)


def test_attention_only_gates_raw_descriptors():
    head = make("attention-only")
    x = torch.randn(1, C, D_IN)
    mask = torch.ones(1, C, dtype=torch.bool)
    with torch.no_grad():
        v = list(x[0])
        att = gate_by_hand(head.gate, v, C)                                   # g_i = mean(v_i)
        expected = lin(head.w3, sum(v[i] * (1 + att[i]) for i in range(C)) / C)
    assert torch.allclose(head(x, mask).logits[0], expected, atol=1e-5)
    assert len(head.fuse) == 0


def test_clip_gate_uses_each_clip_alone():
    head = make("gcf-clipgate")
    x = torch.randn(1, C, D_IN)
    mask = torch.ones(1, C, dtype=torch.bool)
    with torch.no_grad():
        b = ba_by_hand(head.fuse[0], x[0], C, "softmax")
        att = [torch.sigmoid(lin(head.gate.w2, torch.relu(lin(head.gate.w1, bi))))[0] for bi in b]
    assert torch.allclose(head(x, mask).att[0], torch.stack(att), atol=1e-6)


@pytest.mark.parametrize("name", list_heads())
def test_padded_clips_change_nothing(name):
    """Padded clip content and extra padding positions never change the logits or the valid att."""
    head = make(name, layers=2 if name == "transformer" else 1)
    x = torch.randn(2, C, D_IN)
    mask = torch.tensor([[True, True, True, False], [True, False, False, False]])
    noisy = torch.where(mask[..., None], x, 1e3 * torch.randn_like(x))
    a, b = head(x, mask), head(noisy, mask)
    assert torch.allclose(a.logits, b.logits, atol=1e-5)
    short = head(x[:, :3], mask[:, :3])                                         # fewer positions than C
    assert torch.allclose(a.logits, short.logits, atol=1e-5)
    if a.att is not None:
        assert torch.allclose(a.att * mask, b.att * mask, atol=1e-6)
        assert (a.att[~mask] == 0).all()


@pytest.mark.parametrize("name", [n for n in list_heads() if n not in ("gcf", "attention-only")])
def test_position_free_heads_take_any_clip_count(name):
    head = make(name)
    x = torch.randn(2, 3 * C, D_IN)
    mask = torch.ones(2, 3 * C, dtype=torch.bool)
    assert head(x, mask).logits.shape == (2, K)


def test_paper_gate_refuses_more_clips_than_c():
    with pytest.raises(ValueError, match="tied to 4 clip positions"):
        make("gcf")(torch.randn(1, C + 1, D_IN), torch.ones(1, C + 1, dtype=torch.bool))


def test_complexity_counts_params_and_matmul_flops():
    cfg = HeadConfig(in_dim=2048, num_classes=600, clips=10, dim=128, reduction=2)
    c = complexity(cfg)
    gate = (10 * 5 + 5) + (5 * 10 + 10)
    assert c.params == 3 * (2048 * 128 + 128) + (128 * 128 + 128) + gate + 128 * 600 + 600
    matmul_macs = 10 * (3 * 2048 * 128 + 128 * 128) + 2 * 10 * 10 * 128 + 10 * 5 + 5 * 10 + 128 * 600
    assert c.flops == 2 * matmul_macs


def test_invalid_config_names_the_field():
    with pytest.raises(ValueError, match="dim must be >= 1"):
        HeadConfig(dim=0).check()
    with pytest.raises(ValueError, match="unknown head"):
        HeadConfig(name="nope").check()


@pytest.mark.parametrize("dim, heads", [(32, 1), (128, 2), (129, 1), (192, 3), (200, 2), (256, 4)])
def test_transformer_builds_for_any_width(dim, heads):
    """Attention heads are ~64 wide and must divide D: any D >= 1 builds (D=129 once failed in nn.MultiheadAttention)."""
    head = build(HeadConfig(name="transformer", in_dim=D_IN, num_classes=K, clips=C, dim=dim)).eval()
    assert head.encoder.layers[0].self_attn.num_heads == heads
    assert head(torch.randn(2, C, D_IN), torch.ones(2, C, dtype=torch.bool)).logits.shape == (2, K)


@pytest.mark.parametrize("dim", [64, 128, 129])
def test_transformer_flops_count_every_matmul(dim):
    """torch's fused encoder path hid its matmuls from the flop counter (even head counts): count by hand.
    torch's counter sees no CPU attention kernel, so the C x C score products (4 C^2 D a layer) are left out."""
    c, n, k = C, 2, K
    layer = 2 * c * dim * 3 * dim + 2 * c * dim * dim + 2 * 2 * c * dim * 2 * dim   # qkv, out projection, ffn
    expected = 2 * c * D_IN * dim + n * layer + 2 * dim * k
    cfg = HeadConfig(name="transformer", in_dim=D_IN, num_classes=K, clips=C, dim=dim, layers=n)
    assert complexity(cfg).flops == expected
