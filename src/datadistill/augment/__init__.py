"""Augmentation: Differentiable Siamese Augmentation (DSA)."""

from datadistill.augment.dsa import DSA, OPS, DSAParams, DSATransform, default_strategy, parse_strategy

__all__ = ["DSA", "OPS", "DSAParams", "DSATransform", "default_strategy", "parse_strategy"]
