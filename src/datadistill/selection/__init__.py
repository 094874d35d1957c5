"""Coreset selection: pick real images instead of learning synthetic ones (random, herding, k-center)."""

from datadistill.selection.coreset import (SELECTIONS, FeatureSettings, class_features, herding_order,
                                           k_center_order, select_coreset)

__all__ = ["SELECTIONS", "FeatureSettings", "class_features", "herding_order", "k_center_order", "select_coreset"]
