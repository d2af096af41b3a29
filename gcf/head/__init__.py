"""Stage two: clip-fusion heads (GCF-Net and baselines), training and evaluation on stored features."""
