"""`gcf demo`: the whole pipeline on built-in synthetic videos: synth -> extract -> train-head -> eval.

Each step is the real command, run in-process from the same argument list a user would type, so the demo exercises
exactly what a user runs; rerunning it resumes: videos and features already on disk are kept.
"""

from __future__ import annotations

from pathlib import Path

import click

DEMO_BACKBONE = "resnet18"


@click.command()
@click.option("--out", default="gcf-demo", show_default=True, type=click.Path(file_okay=False),
              help="Folder for the videos, the feature store and the run.")
@click.option("--backbone", default=DEMO_BACKBONE, show_default=True, help="Backbone registry name.")
@click.option("--weights", default="random", show_default=True, metavar="PATH|random",
              help="Backbone checkpoint; 'random' (seeded) unless you have the published file.")
@click.option("--classes", default=4, show_default=True, type=click.IntRange(2), help="Synthetic classes.")
@click.option("--per-class", default=10, show_default=True, type=click.IntRange(3), help="Videos per class.")
@click.option("--head", "head_name", default="gcf", show_default=True, help="Head to train.")
@click.option("--seed", default=0, show_default=True)
def demo(out: str, backbone: str, weights: str, classes: int, per_class: int, head_name: str,
         seed: int) -> None:
    """Synthesise a small action dataset, extract clip features, train the GCF head and compare it with the baselines."""
    from gcf.extract.cli import extract
    from gcf.head.cli import eval_run, train_head
    from gcf.synth import synth

    root = Path(out)
    videos, store, run = root / "videos", root / "features.zarr", root / f"run-{head_name}"
    if weights == "random":
        click.secho("note: the backbone has RANDOM weights (no download here); accuracies show the heads' "
                    "fusion on random-projection features, not a pretrained model's. Pass --weights for real ones.",
                    fg="yellow", err=True)

    click.secho(f"[1/4] synthetic videos -> {videos}", bold=True)
    if (videos / "labels.csv").is_file():
        click.echo("  already there, kept")
    else:
        _run(synth, videos, "--classes", classes, "--per-class", per_class, "--seed", seed)

    click.secho(f"[2/4] extract {backbone} clip features -> {store}", bold=True)
    _run(extract, videos, "--backbone", backbone, "--weights", weights, "-o", store, "--seed", seed)

    click.secho(f"[3/4] train the {head_name} head -> {run}", bold=True)
    _run(train_head, store, "--out", run, "--head", head_name, "--seed", seed, "--overwrite")

    click.secho("[4/4] evaluate on the test split (paper Table 1 style)", bold=True)
    _run(eval_run, run)

    click.echo(f"\nvideos {videos}\nstore  {store}\nrun    {run}\n"
               f"next: gcf store info {store}; gcf predict {next(iter(sorted(videos.rglob('*.mp4'))), 'VIDEO')} "
               f"--run {run}")


def _run(command: click.Command, *args) -> None:
    """Run a gcf command as the shell would (same parsing, defaults and callbacks); stop the demo if it fails."""
    try:
        command.main([str(a) for a in args], prog_name=f"gcf {command.name}", standalone_mode=False)
    except SystemExit as e:
        if e.code:
            raise
