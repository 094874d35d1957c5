"""datadistill: dataset distillation (condensation) methods, evaluation and tools.

Public API::

    from datadistill import DistillConfig, distill, run_distill, evaluate_file
    from datadistill import load_dataset, build_model, METHODS, load_synthetic_set, save_synthetic_set
"""

from datadistill._version import __version__
from datadistill.api import DistillResult, distill, evaluate_file, run_distill
from datadistill.config import DistillConfig, build_config
from datadistill.data import load_dataset
from datadistill import experiments  # noqa: F401  (the experiments register their report sections)
from datadistill.io import SyntheticSet, load_synthetic_set, save_synthetic_set
from datadistill.methods import METHODS
from datadistill.models import build_model

__all__ = ["METHODS", "DistillConfig", "DistillResult", "SyntheticSet", "__version__", "build_config",
           "build_model", "distill", "evaluate_file", "load_dataset", "load_synthetic_set", "run_distill",
           "save_synthetic_set"]
