"""`gcf predict`, `gcf localize` and `gcf explain`: a trained run on new videos, action intervals from its clip
evidence (or gate att), and 3D Grad-CAM heat maps of the clips they select."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
import numpy as np

from gcf.errors import GcfError, plural


def _threshold(ctx: click.Context, param: click.Parameter, value: float) -> float:
    if not 0.0 < value < 1.0:
        raise GcfError(f"--threshold {value}: att and evidence lie in [0, 1]; give a threshold strictly between "
                       "0 and 1, e.g. 0.5")
    return value


def _backbone(model, weights: str | None, weights_dir: str, device: str):
    """The store's backbone, built once; says plainly when its weights are random."""
    from gcf.analysis.predict import store_backbone
    from gcf.device import check_device

    check_device(device)
    meta = model.meta
    if (weights or meta.weights) == "random":
        click.echo(f"warning: {meta.backbone} with RANDOM weights (seed {meta.extra.get('weights_seed')}), as "
                   f"{model.store} was extracted: the classes come from the head trained on those features only",
                   err=True)
    return store_backbone(meta, weights, device, weights_dir)


def _seconds(intervals) -> str:
    return ", ".join(f"{i.start:.2f}-{i.end:.2f} s" for i in intervals) or "none"


run_option = click.option("--run", "run_dir", required=True, type=click.Path(),
                          help="Run directory written by `gcf train-head`.")
store_option = click.option("--store", help="The run's feature store [default: the path recorded in the run].")
weights_option = click.option("--weights", metavar="PATH|random",
                              help="Backbone weights [default: the store's: its seeded random weights, or the "
                                   "checkpoint it recorded or the published file in --weights-dir, if its sha256 "
                                   "is the store's].")
weights_dir_option = click.option("--weights-dir", envvar="GCF_WEIGHTS", default="~/.cache/gcf/weights",
                                  show_default=True, help="Folder of published checkpoints (env GCF_WEIGHTS), as for "
                                  "`gcf extract`.")
threshold_option = click.option("--threshold", default=0.5, show_default=True, type=float, callback=_threshold,
                                help="A clip whose score (--by) is above this is part of the action.")
by_option = click.option("--by", default="evidence", show_default=True, type=click.Choice(["evidence", "att"]),
                         help="Score that makes intervals: the clip evidence (gradient x input of the predicted "
                              "class, max-normalised) or the head's gate att (paper 3.1); docs/localize.md compares.")
device_option = click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N.")


@click.command("predict")
@click.argument("videos", nargs=-1, required=True)
@run_option
@store_option
@weights_option
@weights_dir_option
@click.option("--top-k", default=5, show_default=True, type=click.IntRange(1), help="Classes to print.")
@threshold_option
@by_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object per video per line.")
@click.option("--plot-dir", type=click.Path(file_okay=False), help="Write an attention timeline PNG per video here.")
@device_option
def predict(videos, run_dir, store, weights, weights_dir, top_k, threshold, by, as_json, plot_dir, device):
    """Classify VIDEOS with a trained run: top-k classes, per-clip attention and evidence, action intervals."""
    from gcf.analysis.predict import open_model, plot_timeline, predict_features, video_clips

    model = open_model(run_dir, store)
    model.check_score(by)
    if not model.gated:
        click.echo(f"note: head {model.head.head_cfg.name!r} has no clip gate: attention is null", err=True)
    backbone = _backbone(model, weights, weights_dir, device)
    names = model.class_names
    if plot_dir:
        Path(plot_dir).mkdir(parents=True, exist_ok=True)
    failed, plotted = 0, set()
    for video in videos:
        try:
            clips = video_clips(backbone, model.meta, video)
        except GcfError as e:                       # a broken video: say so, go on with the others
            click.echo(f"error: {e}", err=True)
            failed += 1
            continue
        pred = predict_features(model.head, video, clips.features, clips.times, clips.duration, threshold, by)
        if as_json:
            click.echo(json.dumps(pred.to_json(names, top_k)))
        else:
            click.echo(f"{video}: {len(clips.times)} clips, {clips.duration:.2f} s")
            width = max(len(names[i]) for i, _ in pred.top(top_k))
            for i, p in pred.top(top_k):
                click.echo(f"  {names[i]:<{width}}  {p:.4f}")
            if pred.attention is not None:
                click.echo("  attention: " + " ".join(f"{a:.2f}" for a in pred.attention))
            click.echo("  evidence:  " + " ".join(f"{a:.2f}" for a in pred.evidence))
            click.echo(f"  intervals ({by} > {threshold:g}): {_seconds(pred.intervals)}")
        if plot_dir:
            stem = Path(video).stem
            name, n = stem, 1
            while name in plotted:
                n += 1
                name = f"{stem}-{n}"
            plotted.add(name)
            plot_timeline(pred, names, threshold, Path(plot_dir) / f"{name}.png")
    if plot_dir and not as_json and plotted:
        click.echo(f"wrote {len(plotted)} attention timelines to {plot_dir}")
    if failed:
        sys.exit(2)


@click.command("localize")
@click.argument("run_dir", metavar="RUN", type=click.Path())
@store_option
@click.option("--split", default="test", show_default=True, type=click.Choice(["train", "val", "test", "all"]),
              help="Videos to localise: a split as the run made it (carved like `gcf eval`), or all.")
@click.option("--segments", type=click.Path(), help="Ground truth CSV video,start,end (seconds), as `gcf synth` "
              "writes: report temporal IoU and mAP.")
@threshold_option
@by_option
@click.option("-o", "--output", help="Intervals as .csv or .json [default: RUN/intervals.csv].")
def localize(run_dir, store, split, segments, threshold, by, output):
    """Action intervals of every video of a store split, from RUN's clip evidence or att."""
    from gcf.analysis.predict import open_model
    from gcf.analysis.localize import evaluate, localize_store, write_intervals

    output = Path(output or Path(run_dir) / "intervals.csv")
    if output.suffix not in (".csv", ".json"):
        raise GcfError(f"{output}: write intervals to a .csv or .json file")
    model = open_model(run_dir, store)
    model.check_score(by)
    truth = None if segments is None else _read_segments(segments)
    videos = localize_store(model, split, threshold, by)
    n_int = sum(len(v.pred.intervals) for v in videos)
    click.echo(f"{model.store}: {plural(len(videos), 'video')} ({split}), {plural(n_int, 'interval')} with {by} > {threshold:g} "
               f"({sum(bool(v.pred.intervals) for v in videos)} videos have one)")
    summary = None
    if truth is not None:
        summary = evaluate(videos, truth, source=segments)
        click.echo(f"ground truth {segments}: {plural(summary['videos'], 'video')}")
        if summary["unmatched"]:
            click.echo(f"note: {summary['unmatched']} of its videos are not among the {len(videos)} localised "
                       f"({split}) ones (other splits, or not in the store): left out")
        if summary["beyond_end"]:
            click.echo(f"warning: {summary['beyond_end']} segments start after their video ends; the start and end "
                       f"columns must be seconds, not frames")
        click.echo(f"  {'':<15} mean tIoU  " + "  ".join(f"mAP@{t:g}" for t in summary["tious"]))
        for name, key in ((f"{by} intervals", "intervals"), ("whole video", "whole")):
            row = summary[key]
            click.echo(f"  {name:<15} {row['tiou']:9.3f}  " + "  ".join(f"{m:7.3f}" for m in row["map"]))
    write_intervals(output, videos, model.class_names, summary)
    click.echo(f"wrote {output}")


def _read_segments(path: str):
    from gcf.analysis.localize import read_segments
    return read_segments(path)


@click.command("explain")
@click.argument("video")
@run_option
@store_option
@weights_option
@weights_dir_option
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Folder for the outputs.")
@threshold_option
@by_option
@click.option("--max-clips", default=8, show_default=True, type=click.IntRange(1),
              help="Explain at most this many clips (the highest scores).")
@click.option("--size", default=224, show_default=True, type=click.IntRange(16), help="Frame side of the outputs.")
@click.option("--format", "fmt", default="mp4", show_default=True, type=click.Choice(["mp4", "gif"]))
@device_option
def explain(video, run_dir, store, weights, weights_dir, out_dir, threshold, by, max_clips, size, fmt, device):
    """3D Grad-CAM (paper eqs. 13-14) of the predicted class on the clips of VIDEO whose score passes the threshold."""
    from gcf.analysis.gradcam import caption, contact_sheet, explain_video, overlay, write_gif
    from gcf.analysis.predict import open_model, predict_features, video_clips
    from gcf.synth import write_video

    model = open_model(run_dir, store)
    model.check_score(by)
    backbone = _backbone(model, weights, weights_dir, device)
    clips = video_clips(backbone, model.meta, video)
    pred = predict_features(model.head, video, clips.features, clips.times, clips.duration, threshold, by)
    exp, shown = explain_video(model, backbone, video, pred, clips.features, threshold, max_clips, size)
    label = model.class_names[exp.target]
    prob = float(pred.probs[exp.target])
    titles = [f"clip {i}: {clips.times[i, 0]:.2f}-{clips.times[i, 1]:.2f} s, {by} {pred.score[i]:.2f}"
              for i in exp.clips]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = Path(video).stem
    frames = np.stack([caption(f, f"{label} {prob:.2f} | {t}") for c, t in zip(overlay(shown, exp.heat), titles)
                       for f in c])
    movie = out / f"{stem}_gradcam.{fmt}"
    fps = clips.fps
    if fmt == "gif":
        write_gif(frames, movie, fps)
    else:
        write_video(movie, frames, max(1, round(fps)))
    sheet = out / f"{stem}_gradcam.png"
    contact_sheet(shown, exp.heat, titles, f"{Path(video).name}: {label} ({prob:.2f}), 3D Grad-CAM on "
                  f"{len(exp.clips)} clips with {by} > {threshold:g}", sheet)
    click.echo(f"{video}: {label} ({prob:.3f}); explained {len(exp.clips)} of {len(clips.times)} clips "
               f"({by} > {threshold:g}): {', '.join(map(str, exp.clips))}")
    click.echo(f"wrote {movie} and {sheet}")
