"""`gcf extract`: build an ExtractConfig from the command line, run it, print the summary, exit with its code."""

from __future__ import annotations

import logging
import sys

import click

from gcf.errors import GcfError


def _shard(ctx: click.Context, param: click.Parameter, value: str) -> tuple[int, int]:
    try:
        index, count = (int(x) for x in value.split("/"))
    except ValueError:
        raise click.BadParameter(f"{value!r}: expected I/N, e.g. 0/4") from None
    if not 0 <= index < count:
        raise click.BadParameter(f"{value!r}: need 0 <= I < N")
    return index, count


def _options(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> tuple[tuple[str, object], ...]:
    parsed = []
    for value in values:
        key, sep, text = value.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{value!r}: expected KEY=VALUE, e.g. width=0.5")
        for kind in (int, float):
            try:
                text = kind(text)
                break
            except ValueError:
                pass
        parsed.append((key, text))
    return tuple(parsed)


@click.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("--backbone", required=True, help="Registry name: resnext101, resnet18..101, r2plus1d18..101, "
              "r2plus1d34_ig65m32, r2plus1d34_ig65m8, i3d, s3d, slow_r50, slow_r101, slowfast_r50, slowfast_r50_4x16, "
              "slowfast_r101, i3d_r50, i3d_r50_32x2, i3d_r50_nl_dot, i3d_r50_nl_embedded, i3d_r50_nl_gaussian, "
              "c2d_r50, r2plus1d_r34_8x8, r2plus1d_r34_32x2, ircsn_r152, ipcsn_r152, "
              "ircsn_r50, csn_r101, x3d_xs, x3d_s, x3d_m, x3d_l, c3d, swin_t, swin_s, swin_b, swin_l, "
              "videomae_s, videomae_b, videomae_l, videomae_h, timesformer, timesformer_hr, timesformer_l, "
              "mobilenet, mobilenetv2, shufflenet, shufflenetv2 (tv:NAME with the tv extra).")
@click.option("--weights", metavar="PATH|random",
              help="Checkpoint file (3D-ResNets-PyTorch, Efficient-3DCNNs, MMAction2, PySlowFast, PyTorchVideo, VMZ, "
                   "C3D ports, VideoMAE, Hugging Face .safetensors or a plain state dict), or 'random' "
                   "(tests and demos only: seeded, the seed is recorded in the store) "
                   "[default: the backbone's published file in --weights-dir].")
@click.option("--weights-dir", envvar="GCF_WEIGHTS", default="~/.cache/gcf/weights", show_default=True,
              help="Folder holding published checkpoints under their release names (env GCF_WEIGHTS).")
@click.option("-o", "--output", default="features.zarr", show_default=True,
              help="Feature store: a .zarr folder or an .h5 file.")
@click.option("--root", help="Folder that relative paths in list, CSV and split files point into "
              "(default: the list's folder).")
@click.option("--option", "options", multiple=True, callback=_options, metavar="KEY=VALUE",
              help="Backbone builder option, e.g. width=0.5 or groups=3 (repeatable).")
@click.option("--norm", help="Input normalisation override: kinetics, kinetics-tv, activitynet, activitynet-bgr, "
              "inception, imagenet, slowfast, none (default: the convention of the weights).")
@click.option("--seed", default=0, show_default=True, help="Seed of --weights random.")
@click.option("--clip-len", type=click.IntRange(1),
              help="Frames per clip (default: the backbone's: 16; ig65m 32/8, i3d and s3d 64, slow 8, i3d_r50 8/32, "
                   "slowfast and csn 32, r2plus1d_r34 8/32).")
@click.option("--frame-step", type=click.IntRange(1),
              help="Take every N-th frame into a clip (PySlowFast's sampling rate, MMAction2's frame_interval; "
                   "default: the backbone's: 1; slow and i3d_r50 8, slowfast and csn 2, x3d 5-12, r2plus1d_r34 8/2).")
@click.option("--stride", type=click.IntRange(1),
              help="Frames between clip starts (default: clip length x frame step, clips side by side).")
@click.option("--size", type=click.IntRange(1),
              help="Square crop side in pixels (default: the backbone's: 112; i3d, s3d, slow, slowfast, i3d_r50, "
                   "r2plus1d_r34, csn 224).")
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(1), help="Clips per batch.")
@click.option("--workers", type=click.IntRange(1), help="Decoder processes (default: usable cores - 1, at most 16).")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N.")
@click.option("--dtype", type=click.Choice(["float16", "float32"]), default="float16", show_default=True,
              help="Descriptor dtype in the store.")
@click.option("--logits/--no-logits", default=False, show_default=True,
              help="Also store the backbone classifier's logits per clip.")
@click.option("--shard", default="0/1", show_default=True, callback=_shard, metavar="I/N",
              help="Do only shard I of N (0-based); N processes fill one store together.")
@click.option("--commit-every", default=60.0, show_default=True, type=click.FloatRange(0), metavar="SECONDS",
              help="Commit finished videos to the store at least this often: a kill -9 loses at most this much "
                   "finished work (Ctrl-C loses none); each commit may leave up to one partly filled chunk.")
@click.option("--overwrite", is_flag=True, help="Delete the store first and extract everything again.")
@click.option("--strict", is_flag=True, help="Exit non-zero if any video failed.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar: log lines only.")
def extract(inputs, backbone, weights, weights_dir, output, root, options, norm, seed, clip_len, frame_step, stride,
            size, batch_size, workers, device, dtype, logits, shard, commit_every, overwrite, strict, quiet) -> None:
    """Extract one descriptor per clip of every video in INPUTS (folders, videos, CSV/list or split files)."""
    if overwrite and shard[1] > 1:
        raise GcfError(f"--overwrite with --shard {shard[0]}/{shard[1]} would delete the other shards' work; "
                       f"delete {output} once before starting the shards instead")
    if weights is None:
        from gcf.extract.backbones.registry import default_weights

        weights = str(default_weights(backbone, weights_dir))
    from gcf.device import check_device
    from gcf.extract.pipeline import ExtractConfig, default_workers, extract as run

    check_device(device)
    config = ExtractConfig(inputs=tuple(inputs), backbone=backbone, weights=weights, output=output, root=root,
                           options=options, norm=norm, seed=seed, clip_len=clip_len, frame_step=frame_step,
                           stride=stride, size=size,
                           batch_size=batch_size, workers=workers or default_workers(), device=device,
                           dtype=dtype, logits=logits, shard=shard, overwrite=overwrite, commit_seconds=commit_every,
                           progress=not quiet)
    log = logging.getLogger("gcf")
    log.setLevel(logging.INFO)
    if not log.handlers:                        # once per process: `gcf demo` calls this command in-process
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
    from tqdm.contrib.logging import logging_redirect_tqdm

    resume = f"run the same command again to resume (finished videos are kept in {output})"
    try:
        with logging_redirect_tqdm(loggers=[log]):
            summary = run(config)
    except KeyboardInterrupt:
        click.echo(f"interrupted: {resume}", err=True)
        sys.exit(130)
    click.echo(summary.report())
    if summary.interrupted:
        click.echo(f"interrupted: {resume}", err=True)
    sys.exit(summary.exit_code(strict))

