"""Preprocessing fitted on the real training set and stored with the synthetic set (ZCA whitening)."""

from datadistill.preprocess.zca import ZCA

__all__ = ["ZCA"]
