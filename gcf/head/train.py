"""Training and evaluation of clip-fusion heads on in-memory features (one code path for train-head and ablate).

Loss (eqs. 9-10): L = CE(W3 v', y) + lam * ||att||_1, both averaged over the batch. Batches are gathered
from the FeatureTable with vectorised indexing; random clip selection is the training augmentation. Heads are
trained as a Stack (gcf.head.stack): `train` is a stack of one, `train_stack` trains many settings at once.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch import nn

from gcf.errors import GcfError
from gcf.head.data import Data, Standardizer, clip_table, rows_of
from gcf.head.registry import HeadConfig, build
from gcf.head.stack import Stack, StackOptimizer
from gcf.store import FeatureTable, clip_indices


@dataclass(frozen=True)
class TrainConfig:
    """How to train a head; `recipe` names the preset the other fields started from."""

    recipe: str = "default"
    optimizer: str = "adamw"      # "adamw" | "sgd"
    lr: float = 1e-3
    weight_decay: float = 0.5     # measured better than 0.05 on synthetic stores (docs/head.md)
    momentum: float = 0.9         # sgd only
    dampening: float = 0.0        # sgd only
    batch_size: int = 64
    epochs: int = 40              # the most epochs; plateau schedules may stop earlier
    schedule: str = "cosine"      # "cosine" (to 0 over epochs) | "plateau" (x0.1 when val loss stalls)
    patience: int = 3             # plateau: epochs without improvement before a reduction
    reductions: int = 3           # plateau: stop when the loss stalls again after this many reductions
    lam: float = 1e-3             # lambda of the sparsity loss on att (eqs. 9-10)
    clips: int = 10               # C, clips per video the head sees
    select: str = "uniform"       # clip selection for validation and test
    train_select: str = "random"  # clip selection while training (augmentation)
    standardize: bool = True      # per-dimension standardisation fitted on the training clips
    seed: int = 0

    def check(self) -> None:
        """Raise ValueError naming the first invalid field."""
        if self.recipe not in RECIPES:
            raise ValueError(f"unknown recipe {self.recipe!r}; choose one of {', '.join(RECIPES)}")
        if self.optimizer not in ("adamw", "sgd"):
            raise ValueError(f"optimizer must be 'adamw' or 'sgd', got {self.optimizer!r}")
        if self.schedule not in ("cosine", "plateau"):
            raise ValueError(f"schedule must be 'cosine' or 'plateau', got {self.schedule!r}")
        for name in ("select", "train_select"):
            if getattr(self, name) not in ("uniform", "random"):
                raise ValueError(f"{name} must be 'uniform' or 'random', got {getattr(self, name)!r}")
        for name in ("batch_size", "epochs", "clips", "patience"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a positive number, got {self.lr}")
        for name in ("weight_decay", "lam", "momentum", "dampening", "reductions"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")


    def canonical(self, att: bool = True) -> "TrainConfig":
        """This config with the fields that cannot change training at their defaults: momentum and dampening
        unless SGD (dampening without momentum), patience and reductions unless plateau, and lam for a head
        without att. Equal runs then compare equal."""
        unused = []
        if self.optimizer != "sgd":
            unused += ["momentum", "dampening"]
        elif self.momentum == 0:
            unused += ["dampening"]
        if self.schedule != "plateau":
            unused += ["patience", "reductions"]
        if not att:
            unused += ["lam"]
        return replace(self, **{f: getattr(TrainConfig, f) for f in unused})


RECIPES: dict[str, TrainConfig] = {
    "default": TrainConfig(),
    "paper": TrainConfig(recipe="paper", optimizer="sgd", lr=0.1, momentum=0.9, dampening=0.9, weight_decay=1e-3,
                         batch_size=128, epochs=300, schedule="plateau", patience=3, reductions=3),
}


def recipe(name: str = "default", **overrides) -> TrainConfig:
    """The preset `name` with some fields replaced, e.g. recipe("paper", lam=0, seed=1)."""
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; choose one of {', '.join(RECIPES)}")
    return replace(RECIPES[name], **overrides)


PER_HEAD = ("seed", "lr", "weight_decay", "momentum", "dampening", "lam", "patience", "reductions")


def shared_part(cfg: TrainConfig) -> TrainConfig:
    """What heads trained together (train_stack) must share: cfg with its per-head fields at their defaults."""
    return replace(cfg, **{f: getattr(TrainConfig, f) for f in PER_HEAD})


@dataclass
class Result:
    """A trained head with everything needed to use and save it."""

    head: nn.Module
    head_cfg: HeadConfig
    cfg: TrainConfig
    standardizer: Standardizer
    history: list[dict] = field(default_factory=list)   # per epoch: epoch, train/val loss and acc, lr, seconds
    metrics: dict = field(default_factory=dict)         # test split: top1, top5, mean_class (fractions)
    val_metrics: dict = field(default_factory=dict)     # val split, kept checkpoint: top1, top5, mean_class, loss
    best_epoch: int = 0                                 # epoch whose weights were kept (0 = initial)
    stopped: str | None = None                          # why training stopped early on a fault, else None

    def predict(self, x: np.ndarray | torch.Tensor, mask: np.ndarray | torch.Tensor):
        """Raw descriptors [B, C, d] and mask [B, C] -> HeadOutput (standardised, eval mode, no grad)."""
        self.head.eval()
        with torch.no_grad():
            return self.head(self.standardizer(x), torch.as_tensor(mask))


def check_data(data: Data) -> None:
    """Raise GcfError for splits that cannot train or test a classifier."""
    labelled = len(data.train) + len(data.val) + len(data.test)
    if labelled == 0:
        left = [n for n in data.notes if n.startswith("left out")]
        fix = ("extract labelled videos (a labels.csv, or <class>/<video> folders)"
               if not left or any("unlabelled" in n for n in left)
               else "fix those videos and extract them again into a new store (or with --overwrite)")
        raise GcfError(f"no labelled videos to train on ({'; '.join(left) or 'the store holds no videos'}); {fix}")
    if len(data.train) == 0:
        raise GcfError(f"the train split is empty: all {labelled} labelled videos are in the store's val and test "
                       "splits; give some the split train (or none) in the labels")
    for name in ("val", "test"):
        if len(getattr(data, name)) == 0:
            raise GcfError(f"the {name} split is empty ({'; '.join(data.notes) or 'no videos'}); "
                           "add labelled videos to it")
    classes = np.unique(data.table.labels[data.train])
    if len(classes) < 2:
        raise GcfError(f"the train split has one class only ({data.class_names[classes[0]]!r}); "
                       "a classifier needs at least two")


def batches(table: FeatureTable, videos: np.ndarray, cfg: TrainConfig, std: Standardizer, select: str,
            rng: np.random.Generator | None = None):
    """Yield (x [B, C, d] float32 standardised, mask [B, C], y [B]) for `videos` in order, on std's device
    (a GPU trains from the store's features in host memory: each batch is copied as it is needed).

    The store's clip_indices picks the clips; one torch gather per batch reads them from the in-memory
    features (torch converts float16 several times faster than numpy, which select_clips uses).
    """
    with warnings.catch_warnings():   # a read-only (memory-mapped) table is fine: it is only gathered from
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        features = torch.from_numpy(table.features)
    device = std.mean.device
    for i in range(0, len(videos), cfg.batch_size):
        v = videos[i:i + cfg.batch_size]
        start = table.offsets[v]
        idx, mask = clip_indices(table.offsets[v + 1] - start, cfg.clips, select, rng)
        x = features[torch.from_numpy(start[:, None] + idx)]
        yield std(_to(x, device)), _to(torch.from_numpy(mask), device), _to(torch.from_numpy(table.labels[v]), device)


def _to(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """t on device; to a GPU through pinned memory without waiting, so the host never waits for the GPU."""
    return t.pin_memory().to(device, non_blocking=True) if device.type == "cuda" else t


def stacked(streams: list, stream_of: torch.Tensor):
    """Batches for a Stack from several batch iterators: one shared batch, or [K, ...] with head k's from
    stream stream_of[k] (heads of one seed see the same batches, as each would alone)."""
    for parts in zip(*streams):
        if len(parts) == 1:
            yield parts[0]
        else:
            yield tuple(torch.stack(t)[stream_of] for t in zip(*parts))


def objective(out, y: torch.Tensor, lam: float | torch.Tensor) -> torch.Tensor:
    """Eqs. 9-10: cross-entropy plus lam times the L1 norm of att, each a batch mean; one per head for a Stack."""
    logp = out.logits.log_softmax(-1)
    loss = -logp.gather(-1, y.expand(logp.shape[:-1]).unsqueeze(-1)).squeeze(-1).mean(-1)
    if out.att is not None:
        loss = loss + lam * out.att.abs().sum(-1).mean(-1)
    return loss


@dataclass
class Epoch:
    """One optimisation pass of a Stack: per head the summed loss, correct videos and its first bad batch."""

    seen: int
    total: torch.Tensor      # [K] summed loss (float64) over the batches the head trained on
    correct: torch.Tensor    # [K]
    bad_batch: torch.Tensor  # [K] first batch (1-based) whose loss was not finite, 0 if none
    bad_loss: torch.Tensor   # [K] that loss


def fit_epoch(stack: Stack, opt: StackOptimizer, batches, lam: torch.Tensor) -> Epoch:
    """One optimisation pass over (x, mask, y) batches; a head stops at its first batch whose loss is not
    finite, before that batch changes its weights. No host sync per step: a GPU runs ahead."""
    stack.train()
    active = torch.ones(len(stack), dtype=torch.bool, device=lam.device)
    losses, hits, sizes = [], [], []
    for x, mask, y in batches:
        out = stack(x, mask)
        loss = objective(out, y, lam)
        active = active & torch.isfinite(loss)
        stack.zero_grad()
        torch.where(active, loss, 0.0).sum().backward()
        opt.step(active)
        losses.append(loss.detach())
        hits.append((out.logits.argmax(-1) == y).sum(-1))
        sizes.append(y.shape[-1])
    loss, bad = torch.stack(losses), ~torch.isfinite(torch.stack(losses))          # [steps, K]
    trained = ~bad.cumsum(0).bool()                                  # the head's steps before its first bad one
    n = torch.tensor(sizes, dtype=torch.float64, device=loss.device)[:, None]
    first = bad.int().argmax(0)                                      # first bad step (0 where none)
    return Epoch(sum(sizes), (torch.where(trained, loss, 0.0).double() * n).sum(0),
                 torch.where(trained, torch.stack(hits), 0).sum(0), torch.where(bad.any(0), first + 1, 0),
                 loss.gather(0, first[None])[0])


def run_split(head, table: FeatureTable, videos: np.ndarray, cfg: TrainConfig, std: Standardizer,
              lam: float | torch.Tensor | None = None):
    """Eval-mode pass of a head (or Stack) over `videos` -> (logits [(K,) V, classes], att [(K,) V, C] or None,
    mean objective (a 0-d or [K] tensor); lam defaults to cfg.lam). select=random draws from a generator seeded
    afresh each call: every pass, head and seed sees the same clips of a split, so results reproduce."""
    head.eval()
    lam = cfg.lam if lam is None else lam
    logits, atts, total = [], [], 0.0
    with torch.no_grad():
        for x, mask, y in batches(table, videos, cfg, std, cfg.select, np.random.default_rng(0)):
            out = head(x, mask)
            total = total + objective(out, y, lam).double() * len(y)   # summed in float64, like Python floats
            logits.append(out.logits)
            atts.append(out.att)
    att = None if atts[0] is None else torch.cat(atts, -2)
    return torch.cat(logits, -2), att, total / len(videos)


def accuracy(scores: np.ndarray | torch.Tensor, labels: np.ndarray) -> dict:
    """Top-1, top-5 and mean per-class accuracy (over the classes present), as fractions."""
    scores = torch.as_tensor(scores).cpu()
    labels = torch.as_tensor(labels)
    top = scores.topk(min(5, scores.shape[1]), dim=1).indices
    hit1 = top[:, 0] == labels
    per_class = [hit1[labels == c].double().mean().item() for c in labels.unique()]   # float64: 11/24, not
    return {"top1": hit1.double().mean().item(),                                       # 0.4583333432674408
            "top5": (top == labels[:, None]).any(1).double().mean().item(), "mean_class": float(np.mean(per_class))}


class Schedule:
    """One head's learning rate per epoch: cosine to 0 over the epochs, or x0.1 when the validation loss
    stalls (torch's ReduceLROnPlateau: relative threshold 1e-4, no cooldown)."""

    def __init__(self, cfg: TrainConfig):
        self.cfg, self.lr, self.best, self.bad, self.reductions = cfg, cfg.lr, math.inf, 0, 0

    def step(self, epoch: int, val_loss: float) -> bool:
        """Set lr for the next epoch after `epoch`; False once the loss stalled again after the last reduction."""
        if self.cfg.schedule == "cosine":
            self.lr = self.cfg.lr * (1 + math.cos(math.pi * epoch / self.cfg.epochs)) / 2
            return True
        if val_loss < self.best * (1 - 1e-4):
            self.best, self.bad = val_loss, 0
        else:
            self.bad += 1
        if self.bad > self.cfg.patience:
            self.bad = 0
            if self.lr - self.lr * 0.1 > 1e-8:
                self.lr *= 0.1
                self.reductions += 1
        return self.reductions <= self.cfg.reductions


class Progress:
    """One head's side of training: its lr schedule, best validation loss and history, epoch after epoch."""

    def __init__(self, result: Result):
        self.result, self.schedule, self.best_loss = result, Schedule(result.cfg), math.inf

    def end_epoch(self, epoch: int, stats: dict, fault: str | None) -> tuple[bool, bool]:
        """Record an epoch (train/val loss and accuracy, seconds) -> (improved: keep these weights, go on)."""
        r = self.result
        if fault:
            r.stopped = (f"{fault} in epoch {epoch}; stopped and kept the last good checkpoint "
                         f"(epoch {r.best_epoch}); lower the learning rate")
            return False, False
        improved = stats["val_loss"] < self.best_loss
        if improved:
            self.best_loss, r.best_epoch = stats["val_loss"], epoch
        r.history.append({"epoch": epoch, **stats, "lr": self.schedule.lr})
        return improved, self.schedule.step(epoch, stats["val_loss"])


def train(data: Data, head_cfg: HeadConfig, cfg: TrainConfig, progress: bool = False,
          device: str | torch.device = "cpu") -> Result:
    """Train head_cfg on data.train with cfg, keep the weights of the best validation loss, test on data.test.

    in_dim, num_classes and clips of head_cfg are taken from the data and cfg. A loss that turns NaN or
    infinite stops training and keeps the best checkpoint before it; Result.stopped says so.
    """
    return train_stack(data, head_cfg, [cfg], progress, device)[0]


def train_stack(data: Data, head_cfg: HeadConfig, cfgs: list[TrainConfig], progress: bool = False,
                device: str | torch.device = "cpu") -> list[Result]:
    """Train one head of head_cfg per TrainConfig, all together as one Stack, each as `train` would alone.

    The configs may differ only in PER_HEAD fields (seed, lr, weight decay, momentum, dampening, lambda, plateau
    patience and reductions); every head has its own initialisation, batch order, clip sampling, learning
    rate schedule, best-validation checkpoint and NaN guard. Results (CPU modules) come in the order of cfgs.
    With dropout > 0 the stack draws every head's masks from torch's one generator, so such a head equals its
    run alone only in a stack of one (gcf ablate trains them one by one).
    """
    for cfg in cfgs:
        cfg.check()
    base = cfgs[0]
    if any(shared_part(c) != shared_part(base) for c in cfgs):
        raise ValueError(f"heads trained together may differ only in {', '.join(PER_HEAD)}")
    head_cfg = replace(head_cfg, in_dim=data.table.features.shape[1], num_classes=len(data.class_names),
                       clips=base.clips)
    head_cfg.check()
    check_data(data)
    device = torch.device(device)
    std = Standardizer.fit(data.table, data.train) if base.standardize else Standardizer.identity(head_cfg.in_dim)
    on_device = std.to(device)
    heads = []
    for cfg in cfgs:
        torch.manual_seed(cfg.seed)                                # each head starts as it would alone
        heads.append(build(head_cfg))
    results = [Result(h, head_cfg, c, std) for h, c in zip(heads, cfgs)]
    heads_progress = [Progress(r) for r in results]
    stack, lam = Stack(heads, device), torch.tensor([c.lam for c in cfgs], device=device)
    opt = StackOptimizer(stack, cfgs)
    rngs = {c.seed: np.random.default_rng(c.seed) for c in cfgs}    # heads of one seed share batches
    best = {n: p.detach().clone() for n, p in stack.params.items()}
    ids, lam_now = np.arange(len(cfgs)), lam                       # stack position -> index into cfgs; its lam
    bar = _progress(base.epochs, progress)
    for epoch in range(1, base.epochs + 1):
        t0 = time.perf_counter()
        opt.lr = torch.tensor([heads_progress[i].schedule.lr for i in ids], dtype=torch.float64, device=device)
        seeds = list(dict.fromkeys(cfgs[i].seed for i in ids))
        streams = [batches(data.table, rngs[s].permutation(data.train), base, on_device, base.train_select, rngs[s])
                   for s in seeds]
        stream_of = torch.tensor([seeds.index(cfgs[i].seed) for i in ids], device=device)
        ep = fit_epoch(stack, opt, stacked(streams, stream_of), lam_now)
        logits, _, val_loss = run_split(stack, data.table, data.val, base, on_device, lam_now)
        val_acc = (logits.argmax(-1).cpu().numpy() == data.table.labels[data.val]).mean(-1)
        val_loss, bad_batch, bad_loss = val_loss.cpu().numpy(), ep.bad_batch.cpu().numpy(), ep.bad_loss.cpu().numpy()
        total, correct = ep.total.cpu().numpy(), ep.correct.cpu().numpy()
        improved, going = np.zeros(len(ids), dtype=bool), np.zeros(len(ids), dtype=bool)
        for pos, i in enumerate(ids):
            fault = (f"loss turned {bad_loss[pos]} at batch {bad_batch[pos]}" if bad_batch[pos] else
                     None if math.isfinite(val_loss[pos]) else f"validation loss turned {val_loss[pos]}")
            stats = {"train_loss": float(total[pos] / ep.seen), "train_acc": float(correct[pos] / ep.seen),
                     "val_loss": float(val_loss[pos]), "val_acc": float(val_acc[pos]),
                     "seconds": time.perf_counter() - t0}
            improved[pos], going[pos] = heads_progress[i].end_epoch(epoch, stats, fault)
        for n, p in stack.params.items():                          # the best-validation checkpoints
            best[n][torch.from_numpy(ids[improved]).to(device)] = p.detach()[torch.from_numpy(improved).to(device)]
        if len(ids) == 1 and going[0]:
            bar.set_postfix({k: f"{v:.3f}" for k, v in stats.items() if k != "seconds"})
        bar.update()
        if not going.any():
            break
        if not going.all():                                        # stopped heads leave the stack
            keep = torch.from_numpy(np.flatnonzero(going)).to(device)
            stack.select(keep)
            opt.select(keep)
            ids, lam_now = ids[going], lam_now[keep]
    bar.close()
    with torch.no_grad():
        for i, r in enumerate(results):
            for n, p in r.head.named_parameters():
                p.copy_(best[n][i])
    _test_stack(results, data, on_device, device)
    return results


def _test_stack(results: list[Result], data: Data, std: Standardizer, device: torch.device) -> None:
    """Set each Result's val_metrics (with the loss) and test metrics, running the trained heads as one Stack."""
    stack = Stack([r.head for r in results], device)
    lam = torch.tensor([r.cfg.lam for r in results], device=device)
    for videos, name in ((data.val, "val_metrics"), (data.test, "metrics")):
        logits, _, loss = run_split(stack, data.table, videos, results[0].cfg, std, lam)
        for i, r in enumerate(results):
            m = accuracy(logits[i], data.table.labels[videos])
            setattr(r, name, dict(m, loss=float(loss[i])) if name == "val_metrics" else m)


def evaluate(result: Result, data: Data) -> tuple[dict, torch.Tensor]:
    """Test-split top-1, top-5 and mean per-class accuracy of a trained head -> (metrics, logits [V, K])."""
    logits, _, _ = run_split(result.head, data.table, data.test, result.cfg, result.standardizer)
    return accuracy(logits, data.table.labels[data.test]), logits


def _progress(epochs: int, enabled: bool):
    """A tqdm bar over epochs on stderr, or a silent stand-in."""
    from tqdm import tqdm
    return tqdm(total=epochs, desc="epochs", unit="ep", disable=not enabled, leave=False)


def clip_data(data: Data) -> Data:
    """The same splits with every clip as its own one-clip video: training data for a clip classifier."""
    t = data.table
    return Data(clip_table(t), rows_of(t, data.train), rows_of(t, data.val), rows_of(t, data.test),
                data.class_names, data.notes)


def clip_config(cfg: TrainConfig) -> TrainConfig:
    """What the C-Clip/D-Clips clip classifier of a run trains with: one clip, no att loss, and at least the
    recipe's epochs: a short `--epochs` look at a head would otherwise leave the baseline underfit and the head
    looking better than it is. Idempotent, so a cache can key on it."""
    return replace(cfg, clips=1, lam=0.0, epochs=max(cfg.epochs, RECIPES[cfg.recipe].epochs))


def fit_clip_classifiers(data: Data, cfgs: list[TrainConfig], device: str | torch.device = "cpu") -> list[Result]:
    """C-Clip/D-Clips classifiers, one per config (trained together, each with clip_config): a linear layer on
    single clip descriptors labelled by their video."""
    return train_stack(clip_data(data), HeadConfig(name="linear"), [clip_config(c) for c in cfgs], device=device)


def clip_scores(clf: Result, table: FeatureTable, videos: np.ndarray) -> np.ndarray:
    """Softmax class probabilities of every clip of `videos` under the clip classifier -> [n_clips, K]."""
    single = clip_table(table)
    rows = rows_of(table, videos)
    logits, _, _ = run_split(clf.head, single, rows, replace(clf.cfg, batch_size=4096), clf.standardizer)
    return logits.softmax(1).numpy()


def clip_baselines(probs: np.ndarray, table: FeatureTable, videos: np.ndarray) -> dict:
    """C-Clip (central clip's prediction) and D-Clips (mean of all clips' predictions) from per-clip probabilities.

    probs holds the clips of `videos`, video after video, as rows_of(table, videos) orders them.
    """
    counts = table.offsets[videos + 1] - table.offsets[videos]
    first = np.cumsum(counts) - counts
    labels = table.labels[videos]
    dense = np.add.reduceat(probs, first, axis=0) / counts[:, None]
    return {"C-Clip": accuracy(probs[first + counts // 2], labels), "D-Clips": accuracy(dense, labels)}
