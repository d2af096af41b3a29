"""Stage one: decode videos into clips, run a 3D-CNN backbone, write pooled clip descriptors to the store."""

_BACKBONE_API = ("build_backbone", "backbone_spec", "check_geometry", "list_backbones")


def __getattr__(name: str):
    """Import the backbones (and torch) only when one of their names is used, so `import gcf.extract` stays light."""
    if name in _BACKBONE_API:
        from gcf.extract import backbones
        return getattr(backbones, name)
    raise AttributeError(f"module 'gcf.extract' has no attribute {name!r}")
