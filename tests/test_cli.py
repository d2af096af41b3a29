from conftest import run_gcf

from gcf import __version__
from gcf.cli import COMMANDS


def test_version_and_help_list_every_command():
    assert __version__ in run_gcf("--version").stdout
    out = run_gcf("--help").stdout
    for name in COMMANDS:
        assert name in out
