"""gcf: GCF-Net video action recognition on frozen clip features (extract -> store -> head)."""

__version__ = "0.3.0"
