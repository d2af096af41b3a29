"""`gcf train-head`, `gcf eval` and `gcf head info`: train a fusion head on a store, compare it with C-Clip/D-Clips."""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from dataclasses import replace
from pathlib import Path

import click

from gcf.device import check_device
from gcf.errors import GcfError, plural
from gcf.head import HeadConfig, complexity, list_heads
from gcf.head.data import load_store, split_ids
from gcf.head.run import load_run, plot_confusion, save_run
from gcf.head.train import (RECIPES, check_data, clip_baselines, clip_scores, evaluate, fit_clip_classifiers, recipe,
                            train)


def pct(m: dict) -> str:
    return f"top-1 {100 * m['top1']:.2f}%  top-5 {100 * m['top5']:.2f}%  mean class {100 * m['mean_class']:.2f}%"


def run_dir(store: str, head: str, out: str | None, overwrite: bool) -> Path:
    """The run directory to write: --out (free, or an old run with --overwrite) or a new runs/<store>-<head>[-N]."""
    if out is None:
        base = Path("runs") / f"{Path(store.rstrip('/')).stem}-{head}"
        path, n = base, 1
        while path.exists():
            n += 1
            path = base.with_name(f"{base.name}-{n}")
        return path
    path = Path(out)
    if path.exists() and any(path.iterdir()):
        if not overwrite:
            raise GcfError(f"{path}: the run directory exists; pass --overwrite to replace it or choose another --out")
        if not (path / "config.json").is_file():
            raise GcfError(f"{path}: exists and is not a gcf run, refusing to overwrite it; choose another --out")
        shutil.rmtree(path)
    return path


@click.command("train-head")
@click.argument("store", type=click.Path())
@click.option("--out", help="Run directory [default: a new runs/<store>-<head>[-N]].")
@click.option("--head", "head_name", default="gcf", show_default=True, type=click.Choice(list_heads()))
@click.option("--recipe", "recipe_name", default="default", show_default=True, type=click.Choice(list(RECIPES)),
              help="Training preset; 'paper' is the paper's SGD recipe (section 3.3).")
@click.option("--clips", type=int, help="Clips per video C [default: 10].")
@click.option("--select", type=click.Choice(["uniform", "random"]), help="Clip selection for val/test [uniform].")
@click.option("--dim", type=int, help="Head width D [default: 256].")
@click.option("--layers", type=int, help="Fusion layers n in BA^n [default: 1].")
@click.option("--norm", type=click.Choice(["softmax", "count"]), help="N(v) of eq. 1 [default: softmax].")
@click.option("--dropout", type=float, help="Dropout on v' [default: 0].")
@click.option("--lam", type=float, help="Sparsity weight lambda on att (eq. 9) [recipe's].")
@click.option("--epochs", type=int, help="Most epochs [recipe's].")
@click.option("--lr", type=float, help="Learning rate [recipe's].")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N.")
@click.option("--overwrite", is_flag=True, help="Replace an existing run directory.")
def train_head(store, out, head_name, recipe_name, clips, select, dim, layers, norm, dropout, lam, epochs, lr, seed,
               device, overwrite):
    """Train a clip-fusion head on the features in STORE and test it; writes a run directory."""
    check_device(device)
    given = lambda **kw: {k: v for k, v in kw.items() if v is not None}  # noqa: E731
    try:
        cfg = recipe(recipe_name, seed=seed, **given(clips=clips, select=select, lam=lam, epochs=epochs, lr=lr))
        head_cfg = HeadConfig(name=head_name, **given(dim=dim, layers=layers, norm=norm, dropout=dropout))
        cfg.check()
        replace(head_cfg, clips=cfg.clips).check()
    except ValueError as e:
        raise GcfError(f"invalid hyper-parameter: {e}") from e
    path = run_dir(store, head_name, out, overwrite)
    data, source, backbone_probs = load_store(store)
    t = data.table
    click.echo(f"{store}: {plural(len(t.labels), 'video')}, {plural(t.features.shape[0], 'clip')}, d={t.features.shape[1]}, "
               f"{len(data.class_names)} classes; train {len(data.train)}, val {len(data.val)}, test {len(data.test)}")
    for note in data.notes:
        click.echo(f"  {note}")
    try:
        check_data(data)
    except GcfError as e:
        raise GcfError(f"{store}: {e}") from None
    head_cfg = replace(head_cfg, in_dim=t.features.shape[1], num_classes=len(data.class_names), clips=cfg.clips)
    click.echo(f"head {head_name}: {complexity(head_cfg)} (C={cfg.clips})")
    result = train(data, head_cfg, cfg, progress=sys.stderr.isatty(), device=device)   # a bar on a terminal only
    clip = None
    if backbone_probs is None:
        clip = fit_clip_classifiers(data, [cfg], device)[0]
    save_run(path, result, clip, {**source, "notes": list(data.notes)}, split_ids(data))
    if clip is not None and clip.stopped:
        click.echo(f"warning: the C-Clip/D-Clips clip classifier stopped early: {clip.stopped}", err=True)
    if result.stopped:
        raise GcfError(f"{path}: {result.stopped}")
    click.echo(f"test ({plural(len(data.test), 'video')}): {pct(result.metrics)} (best epoch {result.best_epoch})")
    click.echo(f"wrote {path}")


@click.command("eval")
@click.argument("run", type=click.Path())
@click.option("--store", help="Store to test on [default: the run's store].")
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON (accuracies as fractions).")
def eval_run(run, store, as_json):
    """Compare C-Clip, D-Clips and the trained head of RUN on the test split (Table 1 style)."""
    r = load_run(run)
    store = store or r.config["store"]
    data, source, backbone_probs = load_store(store, r.splits)
    for key in ("backbone", "feature_dim", "class_names"):
        if source[key] != r.config[key]:
            raise GcfError(f"{store}: {key} {_short(source[key])} differs from the run's {_short(r.config[key])} "
                           f"({Path(run) / 'config.json'}); evaluate on a store made like the run's")
    if len(data.test) == 0:
        raise GcfError(f"{store}: no test videos ({'; '.join(data.notes) or 'the test split is empty'}); "
                       "evaluate on a store with a test split")
    for note in data.notes:
        click.echo(f"  {note}", err=as_json)
    for what, trained in (("head", r.head), ("C-Clip/D-Clips clip classifier", r.clip_classifier)):
        if trained is not None and trained.stopped:
            click.echo(f"warning: the run's {what} stopped early in training: {trained.stopped}", err=True)
    head_metrics, logits = evaluate(r.head, data)
    if r.clip_classifier is not None:
        probs = clip_scores(r.clip_classifier, data.table, data.test)
    elif backbone_probs is not None:
        probs = backbone_probs
    else:
        raise GcfError(f"{run}: the run has no clip classifier and {store} no backbone logits for its classes; "
                       "train the run again on this store")
    table = {**clip_baselines(probs, data.table, data.test), r.head.head_cfg.name: head_metrics}
    where = Path(store).resolve()
    tag = _report_tag(Path(run), where, Path(r.config["store"]))
    report, picture = Path(run) / f"eval{tag}.json", Path(run) / f"confusion{tag}.png"
    report.write_text(json.dumps({"store": str(where), "videos": len(data.test), **table}, indent=1))
    plot_confusion(logits.numpy(), data.table.labels[data.test], data.class_names, picture,
                   f"{r.head.head_cfg.name}: test top-1 {100 * head_metrics['top1']:.1f}%")
    if as_json:
        click.echo(json.dumps(table))
        return
    click.echo(f"{store}: test split, {plural(len(data.test), 'video')}")
    width = max(map(len, table))
    for name, m in table.items():
        click.echo(f"  {name:<{width}}  {pct(m)}")
    click.echo(f"wrote {report} and {picture}")


def _report_tag(run: Path, store: Path, own: Path) -> str:
    """'' for the run's own store; else -STEM, so another store's results sit beside the run's own (eval-ucf2.json),
    and -STEM-HASH when a different store of that name (ucf/features.zarr, hmdb/features.zarr) wrote -STEM."""
    if store == own.resolve():
        return ""
    tag = f"-{store.stem}"
    try:
        if Path(json.loads((run / f"eval{tag}.json").read_text())["store"]).resolve() != store:
            return f"{tag}-{hashlib.sha256(str(store).encode()).hexdigest()[:8]}"
    except (OSError, ValueError, KeyError, TypeError):    # none yet (or unreadable): the plain name is free
        pass
    return tag


def _short(value) -> str:
    """A value for an error line: lists shortened to their first items."""
    if isinstance(value, (list, tuple)):
        return f"[{len(value)} classes: {', '.join(map(str, value[:3]))}{', ...' if len(value) > 3 else ''}]"
    return repr(value)


@click.group("head")
def head() -> None:
    """Inspect fusion heads."""


@head.command("info")
@click.option("--in-dim", type=int, default=2048, show_default=True, help="Descriptor width d.")
@click.option("--dim", type=int, default=HeadConfig.dim, show_default=True, help="Head width D.")
@click.option("--clips", type=int, default=10, show_default=True, help="Clips per video C.")
@click.option("--classes", type=int, default=600, show_default=True, help="Number of classes K.")
@click.option("--head", "head_name", default="gcf", show_default=True, type=click.Choice(list_heads()))
@click.option("--layers", type=int, default=1, show_default=True, help="Fusion layers n.")
@click.option("--reduction", type=int, default=2, show_default=True, help="Gate reduction ratio r.")
def info(in_dim, dim, clips, classes, head_name, layers, reduction):
    """Parameters and MFLOPs per video of a head (the paper's Table 3)."""
    cfg = HeadConfig(name=head_name, in_dim=in_dim, num_classes=classes, clips=clips, dim=dim, layers=layers,
                     reduction=reduction)
    try:
        cfg.check()
    except ValueError as e:
        raise GcfError(f"invalid hyper-parameter: {e}") from e
    click.echo(f"{head_name} (d={in_dim}, D={dim}, C={clips}, K={classes}, layers={layers}, r={reduction}): "
               f"{complexity(cfg)}")
