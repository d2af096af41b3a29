"""The `gcf` command line: a click group whose subcommands are imported only when used.

Lazy loading keeps `gcf --help` and `gcf store info` fast (no torch import) and lets each
area own its commands (gcf/store/cli.py, gcf/extract/cli.py, gcf/head/cli.py, ...).
"""

from __future__ import annotations

import importlib
import sys

import click

from gcf import __version__
from gcf.errors import GcfError

# command name -> "module:attribute" of a click command or group
COMMANDS: dict[str, str] = {
    "demo": "gcf.demo:demo",
    "extract": "gcf.extract.cli:extract",
    "store": "gcf.store.cli:store",
    "synth": "gcf.synth:synth",
    "train-head": "gcf.head.cli:train_head",
    "eval": "gcf.head.cli:eval_run",
    "head": "gcf.head.cli:head",
    "ablate": "gcf.head.ablate:ablate",
    "predict": "gcf.analysis.cli:predict",
    "localize": "gcf.analysis.cli:localize",
    "explain": "gcf.analysis.cli:explain",
}


class LazyGroup(click.Group):
    """A click group that imports each subcommand's module on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = COMMANDS.get(name)
        if target is None:
            return None
        module, attr = target.split(":")
        return getattr(importlib.import_module(module), attr)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except GcfError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(2)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="gcf")
def main() -> None:
    """GCF-Net video action recognition: extract clip features once, train fusion heads in minutes."""


if __name__ == "__main__":
    main()
