"""Heads trained together as a Stack: the same forward, torch.optim's updates, and each head as if trained alone."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from gcf.head import HEADS, HeadConfig, build, list_heads
from gcf.head.registry import OPTIONS, canonical
from gcf.head.stack import Stack, StackOptimizer
from gcf.head.synthetic import SynthConfig, synthesize
from gcf.head.train import PER_HEAD, recipe, shared_part, train, train_stack
from gcf.store import select_clips

torch.set_num_threads(1)

SMALL = SynthConfig(classes=4, train_per_class=40, test_per_class=15, dim=24, min_clips=4, max_clips=12,
                    min_relevant=2, max_relevant=3, signal=4.0)
CFG = HeadConfig(in_dim=24, num_classes=4, clips=6, dim=16, layers=2)


@pytest.fixture(scope="module")
def data():
    return synthesize(SMALL).data()


def heads_of(cfg: HeadConfig, seeds=(0, 1, 2)):
    out = []
    for s in seeds:
        torch.manual_seed(s)
        out.append(build(cfg))
    return out


def batch(k=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    shape = (5, 6, 24) if k is None else (k, 5, 6, 24)
    mask = torch.rand(shape[:-1], generator=g) > 0.3
    mask[..., 0] = True
    return torch.randn(shape, generator=g), mask


def batch_of(data):
    """The first test videos' uniform clips, raw: what Result.predict takes."""
    return select_clips(data.table, data.test[:16], 10, "uniform")


@pytest.mark.parametrize("name", list_heads())
def test_a_stack_computes_what_each_head_computes(name):
    heads = heads_of(replace(CFG, name=name))
    stack = Stack(heads).eval()
    for h in heads:
        h.eval()
    x, mask = batch()
    out = stack(x, mask)                                              # one batch shared by every head
    xs, masks = batch(k=3, seed=1)
    each = stack(xs, masks)                                           # a batch per head
    for i, h in enumerate(heads):
        torch.testing.assert_close(out.logits[i], h(x, mask).logits, rtol=1e-5, atol=1e-6)
        ref = h(xs[i], masks[i])
        torch.testing.assert_close(each.logits[i], ref.logits, rtol=1e-5, atol=1e-6)
        assert (each.att is None) == (ref.att is None) == (not HEADS[name].att)
        if ref.att is not None:
            torch.testing.assert_close(each.att[i], ref.att, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", list_heads())
def test_registry_declares_what_each_head_reads(name):
    """Changing an option the head does not declare leaves its weights and outputs as they were."""
    cfg = replace(CFG, name=name)
    other = {"clips": 4, "dim": 8, "layers": 1, "norm": "count", "reduction": 3, "dropout": 0.0}
    x, mask = batch()
    torch.manual_seed(0)
    ref = build(cfg).eval()
    for option in OPTIONS:
        if option in HEADS[name].reads:
            continue
        changed = replace(cfg, **{option: other[option]})
        assert canonical(changed) == canonical(cfg)
        torch.manual_seed(0)
        head = build(changed).eval()
        assert {k: v.shape for k, v in head.state_dict().items()} == {k: v.shape for k, v in ref.state_dict().items()}
        torch.testing.assert_close(head(x, mask).logits, ref(x, mask).logits, rtol=0, atol=0)


def torch_optimizer(params, cfg):
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, dampening=cfg.dampening,
                               weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


@pytest.mark.parametrize("cfgs", [
    [recipe(lr=1e-2, weight_decay=0.5), recipe(lr=3e-3, weight_decay=0.0), recipe(lr=1e-1, weight_decay=0.05)],
    [recipe("paper"), recipe("paper", lr=0.01, momentum=0.0, dampening=0.9), recipe("paper", dampening=0.0)],
], ids=["adamw", "sgd"])
def test_stack_optimizer_follows_torch_optim(cfgs):
    """The same gradients give each head the update torch.optim gives it (random ones: a backward pass leaves
    float noise in gradients that are zero in theory, which Adam then scales up)."""
    alone = heads_of(CFG)
    stack = Stack(heads_of(CFG))
    opt = StackOptimizer(stack, cfgs)
    refs = [torch_optimizer(h.parameters(), c) for h, c in zip(alone, cfgs)]
    g = torch.Generator().manual_seed(0)
    active = torch.tensor([True, True, True])
    for step in range(6):
        if step == 3:
            active = torch.tensor([True, False, True])                # head 1 stops: it keeps its weights
            frozen = {n: p[1].detach().clone() for n, p in stack.params.items()}
        for n, p in stack.params.items():
            p.grad = torch.randn(p.shape, generator=g)
            for i, h in enumerate(alone):
                h.get_parameter(n).grad = p.grad[i].clone()
        opt.step(active)
        for ref, on in zip(refs, active):
            if on:
                ref.step()
    for i, h in enumerate(alone):
        for n, p in h.named_parameters():
            if i != 1:
                torch.testing.assert_close(stack.params[n][i], p, rtol=1e-6, atol=1e-7)
    for n, p in stack.params.items():
        assert torch.equal(p[1], frozen[n])


def test_stacked_heads_train_as_each_would_alone(data):
    """Seeds, learning rates, lambdas and plateau settings per head; the same histories and test accuracy."""
    fast = dict(epochs=6, batch_size=32)
    cfgs = [recipe(**fast, seed=0), recipe(**fast, seed=1, lr=3e-3), recipe(**fast, seed=0, lam=0.0),
            recipe(**fast, seed=2, weight_decay=0.0)]
    head = HeadConfig(dim=16)
    together = train_stack(data, head, cfgs)
    for cfg, r in zip(cfgs, together):
        alone = train(data, head, cfg)
        assert r.cfg == cfg and r.best_epoch == alone.best_epoch and r.stopped is None
        assert [h["epoch"] for h in r.history] == list(range(1, 7))
        np.testing.assert_allclose([h["val_loss"] for h in r.history], [h["val_loss"] for h in alone.history],
                                   rtol=1e-4)
        assert r.metrics == pytest.approx(alone.metrics, abs=1e-9)
        x, mask = batch_of(data)
        torch.testing.assert_close(r.predict(x, mask).logits, alone.predict(x, mask).logits, rtol=1e-3, atol=1e-4)


def test_plateau_heads_stop_on_their_own(data):
    cfgs = [recipe("paper", epochs=40, batch_size=32, patience=1, reductions=0, lr=0.3),
            recipe("paper", epochs=40, batch_size=32, patience=2, reductions=1, lr=0.3, seed=1)]
    together = train_stack(data, HeadConfig(dim=16), cfgs)
    for cfg, r in zip(cfgs, together):
        alone = train(data, HeadConfig(dim=16), cfg)
        assert len(r.history) == len(alone.history) < 40
        assert [h["lr"] for h in r.history] == pytest.approx([h["lr"] for h in alone.history])
    assert len(together[0].history) < len(together[1].history)


def test_a_diverging_head_stops_alone(data):
    cfgs = [recipe(epochs=3, batch_size=32), recipe(epochs=3, batch_size=32, lr=1e30, seed=1)]
    good, bad = train_stack(data, HeadConfig(dim=16), cfgs)
    assert bad.stopped and "kept the last good checkpoint (epoch 0)" in bad.stopped and not bad.history
    assert all(torch.isfinite(p).all() for p in bad.head.parameters())
    assert good.stopped is None and len(good.history) == 3
    assert good.metrics == pytest.approx(train(data, HeadConfig(dim=16), cfgs[0]).metrics, abs=1e-9)


def test_only_per_head_fields_may_differ(data):
    assert set(PER_HEAD) < set(recipe().__dataclass_fields__)
    assert shared_part(recipe(seed=3, lr=0.5, lam=0)) == shared_part(recipe())
    with pytest.raises(ValueError, match="may differ only in seed, lr"):
        train_stack(data, HeadConfig(dim=16), [recipe(epochs=2), recipe(epochs=3)])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_training_on_cuda_matches_cpu(data):
    cfgs = [recipe(epochs=3, batch_size=32), recipe(epochs=3, batch_size=32, seed=1)]
    for cpu, gpu in zip(train_stack(data, HeadConfig(dim=16), cfgs),
                        train_stack(data, HeadConfig(dim=16), cfgs, device="cuda")):
        assert next(gpu.head.parameters()).device.type == "cpu"       # results are CPU modules, ready to save
        np.testing.assert_allclose([h["val_loss"] for h in gpu.history], [h["val_loss"] for h in cpu.history],
                                   rtol=1e-3)
