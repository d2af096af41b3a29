"""Training and evaluation of clip-fusion heads on in-memory features (one code path for train-head and ablate).

Loss (eqs. 9-10): L = CE(W3 v', y) + lam * ||att||_1, both averaged over the batch. Batches are gathered
from the FeatureTable with vectorised indexing; random clip selection is the training augmentation.
"""

from __future__ import annotations

import copy
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
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")


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


@dataclass
class Result:
    """A trained head with everything needed to use and save it."""

    head: nn.Module
    head_cfg: HeadConfig
    cfg: TrainConfig
    standardizer: Standardizer
    history: list[dict] = field(default_factory=list)   # per epoch: epoch, train/val loss and acc, lr, seconds
    metrics: dict = field(default_factory=dict)         # test split: top1, top5, mean_class (fractions)
    best_epoch: int = 0                                 # epoch whose weights were kept (0 = initial)
    stopped: str | None = None                          # why training stopped early on a fault, else None

    def predict(self, x: np.ndarray | torch.Tensor, mask: np.ndarray | torch.Tensor):
        """Raw descriptors [B, C, d] and mask [B, C] -> HeadOutput (standardised, eval mode, no grad)."""
        self.head.eval()
        with torch.no_grad():
            return self.head(self.standardizer(x), torch.as_tensor(mask))


def check_data(data: Data) -> None:
    """Raise GcfError for splits that cannot train or test a classifier."""
    for name in ("train", "val", "test"):
        if len(getattr(data, name)) == 0:
            raise GcfError(f"the {name} split is empty ({'; '.join(data.notes) or 'no videos'}); "
                           "add labelled videos to it")
    classes = np.unique(data.table.labels[data.train])
    if len(classes) < 2:
        raise GcfError(f"the train split has one class only ({data.class_names[classes[0]]!r}); "
                       "a classifier needs at least two")


def make_optimizer(params, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW or SGD (momentum, dampening) with the config's lr and weight decay."""
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, dampening=cfg.dampening,
                               weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def batches(table: FeatureTable, videos: np.ndarray, cfg: TrainConfig, std: Standardizer, select: str,
            rng: np.random.Generator | None = None):
    """Yield (x [B, C, d] float32 standardised, mask [B, C], y [B]) for `videos` in the given order.

    The store's clip_indices picks the clips; one torch gather per batch reads them from the in-memory
    features (torch converts float16 several times faster than numpy, which select_clips uses).
    """
    with warnings.catch_warnings():   # a read-only (memory-mapped) table is fine: it is only gathered from
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        features = torch.from_numpy(table.features)
    for i in range(0, len(videos), cfg.batch_size):
        v = videos[i:i + cfg.batch_size]
        start = table.offsets[v]
        idx, mask = clip_indices(table.offsets[v + 1] - start, cfg.clips, select, rng)
        x = features[torch.from_numpy(start[:, None] + idx)]
        yield std(x), torch.from_numpy(mask), torch.from_numpy(table.labels[v])


def objective(out, y: torch.Tensor, lam: float) -> torch.Tensor:
    """Eqs. 9-10: cross-entropy plus lam times the L1 norm of att, each a batch mean."""
    loss = nn.functional.cross_entropy(out.logits, y)
    if out.att is not None and lam > 0:
        loss = loss + lam * out.att.abs().sum(1).mean()
    return loss


def fit_epoch(head: nn.Module, opt: torch.optim.Optimizer, batches, lam: float):
    """One optimisation pass over (x, mask, y) batches -> (videos seen, summed loss, correct, fault or None).

    Stops at the first batch whose loss is not finite, before that batch changes the weights.
    """
    head.train()
    seen, total, correct = 0, 0.0, 0
    for step, (x, mask, y) in enumerate(batches):
        out = head(x, mask)
        loss = objective(out, y, lam)
        if not torch.isfinite(loss):
            return seen, total, correct, f"loss turned {loss.item()} at batch {step + 1}"
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        seen, total = seen + len(y), total + loss.item() * len(y)
        correct += (out.logits.argmax(1) == y).sum().item()
    return seen, total, correct, None


def run_split(head: nn.Module, table: FeatureTable, videos: np.ndarray, cfg: TrainConfig, std: Standardizer):
    """Eval-mode pass over `videos` -> (logits [V, K], att [V, C] or None, mean objective)."""
    head.eval()
    logits, atts, total = [], [], 0.0
    with torch.no_grad():
        for x, mask, y in batches(table, videos, cfg, std, cfg.select):
            out = head(x, mask)
            total += objective(out, y, cfg.lam).item() * len(y)
            logits.append(out.logits)
            atts.append(out.att)
    att = None if atts[0] is None else torch.cat(atts)
    return torch.cat(logits), att, total / len(videos)


def accuracy(scores: np.ndarray | torch.Tensor, labels: np.ndarray) -> dict:
    """Top-1, top-5 and mean per-class accuracy (over the classes present), as fractions."""
    scores = torch.as_tensor(scores)
    labels = torch.as_tensor(labels)
    top = scores.topk(min(5, scores.shape[1]), dim=1).indices
    hit1 = top[:, 0] == labels
    per_class = [hit1[labels == c].float().mean().item() for c in labels.unique()]
    return {"top1": hit1.float().mean().item(), "top5": (top == labels[:, None]).any(1).float().mean().item(),
            "mean_class": float(np.mean(per_class))}


def train(data: Data, head_cfg: HeadConfig, cfg: TrainConfig, progress: bool = False) -> Result:
    """Train head_cfg on data.train with cfg, keep the weights of the best validation loss, test on data.test.

    in_dim, num_classes and clips of head_cfg are taken from the data and cfg. A loss that turns NaN or
    infinite stops training and keeps the best checkpoint before it; Result.stopped says so.
    """
    cfg.check()
    head_cfg = replace(head_cfg, in_dim=data.table.features.shape[1], num_classes=len(data.class_names),
                       clips=cfg.clips)
    head_cfg.check()
    check_data(data)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    std = Standardizer.fit(data.table, data.train) if cfg.standardize else Standardizer.identity(head_cfg.in_dim)
    head = build(head_cfg)
    result = Result(head, head_cfg, cfg, std)
    opt = make_optimizer(head.parameters(), cfg)
    if cfg.schedule == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs)
    else:
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.1, patience=cfg.patience)
    best_loss, best_state, reductions = math.inf, copy.deepcopy(head.state_dict()), 0
    bar = _progress(cfg.epochs, progress)
    for epoch in range(1, cfg.epochs + 1):
        t0, lr = time.perf_counter(), opt.param_groups[0]["lr"]
        order = rng.permutation(data.train)
        seen, total, correct, fault = fit_epoch(head, opt, batches(data.table, order, cfg, std, cfg.train_select, rng),
                                                cfg.lam)
        if fault:
            result.stopped = (f"{fault} in epoch {epoch}; stopped and kept the last good checkpoint "
                              f"(epoch {result.best_epoch}); lower --lr")
            break
        logits, _, val_loss = run_split(head, data.table, data.val, cfg, std)
        if not math.isfinite(val_loss):
            result.stopped = (f"validation loss turned {val_loss} in epoch {epoch}; stopped and kept the last good "
                              f"checkpoint (epoch {result.best_epoch}); lower --lr")
            break
        if val_loss < best_loss:
            best_loss, best_state, result.best_epoch = val_loss, copy.deepcopy(head.state_dict()), epoch
        val_acc = (logits.argmax(1).numpy() == data.table.labels[data.val]).mean()
        result.history.append({"epoch": epoch, "train_loss": total / seen, "train_acc": correct / seen,
                               "val_loss": val_loss, "val_acc": float(val_acc), "lr": lr,
                               "seconds": time.perf_counter() - t0})
        bar.set_postfix(loss=f"{total / seen:.3f}", val_loss=f"{val_loss:.3f}", val_acc=f"{val_acc:.3f}")
        bar.update()
        if cfg.schedule == "cosine":
            sched.step()
        else:
            sched.step(val_loss)
            if opt.param_groups[0]["lr"] < lr:
                reductions += 1
                if reductions > cfg.reductions:   # stalled again at the lr of the last allowed reduction
                    break
    bar.close()
    head.load_state_dict(best_state)
    result.metrics = evaluate(result, data)[0]
    return result


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


def fit_clip_classifier(data: Data, cfg: TrainConfig, progress: bool = False) -> Result:
    """The C-Clip/D-Clips classifier: a linear layer trained on single clip descriptors labelled by their video."""
    return train(clip_data(data), HeadConfig(name="linear"), replace(cfg, clips=1, lam=0.0), progress)


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
