"""Evaluation protocol: train fresh networks on a synthetic set, test on the real test set."""

from datadistill.evaluation.parts import EvalParts
from datadistill.evaluation.progress import EvalProgress
from datadistill.evaluation.protocol import EvalResult, EvalSettings, accuracy, evaluate_synthetic_set, train_network

__all__ = ["EvalParts", "EvalProgress", "EvalResult", "EvalSettings", "accuracy", "evaluate_synthetic_set", "train_network"]
