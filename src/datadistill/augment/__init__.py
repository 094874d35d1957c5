"""Augmentation: Differentiable Siamese Augmentation (DSA, :mod:`.dsa`) and DC's non-differentiable
evaluation augmentation (:mod:`.dc`, strategies ``"dc:…"``); :func:`make_augmentation` builds either
from a strategy name."""

from datadistill.augment.dc import DC_OPS, DCAugment, DCAugParams, make_augmentation, parse_dc_strategy
from datadistill.augment.dsa import DSA, OPS, DSAParams, DSATransform, default_strategy, parse_strategy

__all__ = ["DC_OPS", "DCAugParams", "DCAugment", "DSA", "OPS", "DSAParams", "DSATransform", "default_strategy",
           "make_augmentation", "parse_dc_strategy", "parse_strategy"]
