"""Stage two: clip-fusion heads (GCF-Net and baselines), training and evaluation on stored features."""

from gcf.head.registry import HEADS, HeadConfig, HeadOutput, build, build_head, list_heads, register
from gcf.head import gcfnet, pools  # noqa: F401  (register the heads)
from gcf.head.complexity import Complexity, complexity

__all__ = ["HEADS", "HeadConfig", "HeadOutput", "build", "build_head", "list_heads", "register",
           "Complexity", "complexity"]
