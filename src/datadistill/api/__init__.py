"""The Python API behind the CLI. Data flows one way: dataset → method → synthetic set → evaluation
→ files.

* :mod:`datadistill.api.pipeline`: ``distill``, ``evaluate_file``, ``run_distill`` (the output folder).
* :mod:`datadistill.api.checkpointing`: a run's checkpoint (when it is written, resuming, the signals).
* :mod:`datadistill.api.datasets`: what a run reports about its dataset (``dataset_info``).
* :mod:`datadistill.api.runs`: the other commands: ``run_experts``, ``run_scores``, ``run_baseline``,
  ``run_evaluate``, ``evaluate_saved_model``, ``run_import``, ``run_export``.
* :mod:`datadistill.api.ranking`: the DD-Ranking scores of a saved set (``evaluate --scores``, compare's
  ``scores:``): its whole-data baseline, the teacher, the plan, ``run_ranking``.

Callers use the names through this package (``api.run_distill``), so one patch point serves all.
"""

from datadistill.api.checkpointing import RunCheckpoint
from datadistill.api.datasets import class_counts, dataset_info, imbalance_line, spec_line
from datadistill.api.pipeline import (DistillResult, StepCallback, distill, eval_settings, evaluate_file,
                                      join_world, load_dataset_for, run_distill)
from datadistill.api.runs import (evaluate_saved_model, run_baseline, run_evaluate, run_experts, run_export,
                                  run_import, run_scores)
from datadistill.methods import method_config  # the method's config from a run config (api's old name)

__all__ = ["DistillResult", "RunCheckpoint", "StepCallback", "class_counts", "dataset_info", "distill",
           "eval_settings", "evaluate_file", "evaluate_saved_model", "imbalance_line", "join_world", "load_dataset_for",
           "method_config", "run_baseline", "run_distill", "run_evaluate", "run_experts", "run_export", "run_import",
           "run_scores",
           "spec_line"]
