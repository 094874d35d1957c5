"""Coreset selection: pick real images instead of learning synthetic ones (random, herding, k-center),
and per-sample difficulty scores with per-class easy → hard orderings (EL2N, GraNd, forgetting,
uncertainty)."""

from datadistill.selection.coreset import (SELECTIONS, FeatureSettings, class_features, herding_order,
                                           k_center_order, select_coreset)
from datadistill.selection.difficulty import (SCORES, DifficultyScores, ScoreSettings, compute_scores, el2n,
                                              forgetting_events, grand, load_scores, save_scores, uncertainty)

__all__ = ["SELECTIONS", "FeatureSettings", "class_features", "herding_order", "k_center_order", "select_coreset",
           "SCORES", "DifficultyScores", "ScoreSettings", "compute_scores", "el2n", "forgetting_events", "grand",
           "load_scores", "save_scores", "uncertainty"]
