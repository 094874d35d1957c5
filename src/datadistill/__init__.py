"""datadistill: dataset distillation (condensation) methods, evaluation and tools.

Public API::

    from datadistill import DistillConfig, distill, run_distill, evaluate_file
    from datadistill import load_dataset, build_model, METHODS, load_synthetic_set, save_synthetic_set
"""

__version__ = "0.1.0"

from datadistill.api import DistillResult, distill, evaluate_file, run_distill  # noqa: E402
from datadistill.config import DistillConfig, build_config  # noqa: E402
from datadistill.data import load_dataset  # noqa: E402
from datadistill.io import SyntheticSet, load_synthetic_set, save_synthetic_set  # noqa: E402
from datadistill.methods import METHODS  # noqa: E402
from datadistill.models import build_model  # noqa: E402

__all__ = ["METHODS", "DistillConfig", "DistillResult", "SyntheticSet", "__version__", "build_config",
           "build_model", "distill", "evaluate_file", "load_dataset", "load_synthetic_set", "run_distill",
           "save_synthetic_set"]
