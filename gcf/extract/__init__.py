"""Stage one: decode videos into clips, run a 3D-CNN backbone, write pooled clip descriptors to the store."""
