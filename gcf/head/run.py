"""A run directory: config.json, splits.json, weights (safetensors), history.csv, metrics.json, curves.png; and
loading it back."""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from gcf import __version__
from gcf.errors import GcfError
from gcf.head.complexity import complexity
from gcf.head.data import SPLIT_NAMES, Standardizer
from gcf.head.registry import HeadConfig, build
from gcf.head.train import Result, TrainConfig

HEAD_WEIGHTS = "head.safetensors"
CLIP_WEIGHTS = "clip_classifier.safetensors"
SPLITS = "splits.json"


@dataclass
class Run:
    """A loaded run: the trained head, the clip classifier behind C-Clip/D-Clips (if any) and config.json."""

    path: Path
    config: dict
    head: Result
    clip_classifier: Result | None
    splits: dict[str, list[str]] | None     # video ids of train/val/test as trained (None: a run from gcf < 0.2.1)

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(self.config["class_names"])


def _standardizer_json(std: Standardizer) -> dict:
    return {"mean": std.mean.tolist(), "std": std.std.tolist()}


def _trained_json(r: Result) -> dict:
    return {"head": asdict(r.head_cfg), "train": asdict(r.cfg), "standardizer": _standardizer_json(r.standardizer),
            "best_epoch": r.best_epoch, "stopped": r.stopped}


def save_run(out: Path, result: Result, clip: Result | None, source: dict, splits: dict[str, list[str]]) -> None:
    """Write the run directory `out` (created, must be free); `source` names the store: path, backbone, weights;
    `splits` the video ids of train/val/test, which eval and localize reuse."""
    out.mkdir(parents=True, exist_ok=True)
    config = {"gcf_version": __version__, **source, "feature_dim": result.head_cfg.in_dim,
              "class_names": list(source["class_names"]), "seed": result.cfg.seed, **_trained_json(result),
              "complexity": asdict(complexity(result.head_cfg)),
              "clip_classifier": None if clip is None else _trained_json(clip)}
    (out / "config.json").write_text(json.dumps(config, indent=1))
    (out / SPLITS).write_text(json.dumps(splits))
    save_file({k: v.contiguous() for k, v in result.head.state_dict().items()}, str(out / HEAD_WEIGHTS))
    if clip is not None:
        save_file({k: v.contiguous() for k, v in clip.head.state_dict().items()}, str(out / CLIP_WEIGHTS))
    with open(out / "history.csv", "w", newline="") as f:
        fields = ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds"]
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(result.history)
    metrics = dict(result.metrics, best_epoch=result.best_epoch, stopped=result.stopped)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    plot_curves(result.history, out / "curves.png")


def plot_curves(history: list[dict], path: Path) -> None:
    """Loss and accuracy per epoch, train and validation, as a PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    epochs = [h["epoch"] for h in history]
    for ax, key in zip(axes, ("loss", "acc")):
        for split in ("train", "val"):
            ax.plot(epochs, [h[f"{split}_{key}"] for h in history], label=split)
        ax.set_xlabel("epoch")
        ax.set_ylabel(key)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _load_trained(block: dict, weights: Path) -> Result:
    head_cfg, cfg = HeadConfig(**block["head"]), TrainConfig(**block["train"])
    head = build(head_cfg)
    try:
        head.load_state_dict(load_file(str(weights)))
    except (OSError, RuntimeError, ValueError) as e:
        raise GcfError(f"{weights}: cannot load the weights ({e}); train the run again") from e
    head.eval()
    std = Standardizer(torch.tensor(block["standardizer"]["mean"], dtype=torch.float32),
                       torch.tensor(block["standardizer"]["std"], dtype=torch.float32))
    return Result(head, head_cfg, cfg, std, best_epoch=block["best_epoch"], stopped=block["stopped"])


def load_run(path: str | Path) -> Run:
    """Rebuild the head (and the clip classifier) of the run directory `path`, in eval mode."""
    path = Path(path)
    try:
        config = json.loads((path / "config.json").read_text())
    except (OSError, ValueError) as e:
        raise GcfError(f"{path / 'config.json'}: not a readable gcf run ({e}); give a directory written by "
                       "`gcf train-head`") from e
    head = _load_trained(config, path / HEAD_WEIGHTS)
    clip = config.get("clip_classifier")
    splits = None
    if (path / SPLITS).exists():
        try:
            splits = json.loads((path / SPLITS).read_text())
            if not all(isinstance(splits.get(n), list) for n in SPLIT_NAMES):
                raise ValueError("expected lists of video ids under train, val and test")
        except (OSError, ValueError, AttributeError) as e:
            raise GcfError(f"{path / SPLITS}: not readable ({e}); train the run again") from e
    return Run(path, config, head, None if clip is None else _load_trained(clip, path / CLIP_WEIGHTS), splits)


def plot_confusion(scores: np.ndarray, labels: np.ndarray, class_names: tuple[str, ...], path: Path,
                   title: str) -> None:
    """Row-normalised confusion matrix (true class rows, predicted class columns) as a PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = len(class_names)
    cm = np.zeros((k, k))
    np.add.at(cm, (labels, np.asarray(scores).argmax(1)), 1)
    cm /= np.maximum(cm.sum(1, keepdims=True), 1)
    size = min(20, 3 + 0.25 * k)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(cm, vmin=0, vmax=1, cmap="Blues")
    if k <= 40:
        ax.set_xticks(range(k), class_names, rotation=90, fontsize=7)
        ax.set_yticks(range(k), class_names, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
