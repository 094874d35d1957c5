"""``datadistill compare``: run a grid of distillation runs (methods × IPC × init × seed) one after
another and tabulate them in the papers' layout.

The grid comes from a YAML file (or a mapping)::

    out: docs/compare/mnist        # optional; run_compare's ``out`` overrides it
    base:                          # DistillConfig fields shared by every cell (not method/ipc/init/seed)
      dataset: mnist
      iterations: 200
      max_seconds: 120
      num_eval: 2
      eval_epochs: 300
    methods:                       # a name, or a mapping: method, optional label, DistillConfig
      - random                     # overrides, optional init (one fixed init for this method) and
      - dm                         # optional by_ipc: {IPC: {overrides for that IPC only}}
      - {method: datm, label: datm, model: convnet_w32, method_args: {experts: runs/experts/mnist_w32}}
    ipc: [1, 10]
    init: [real]                   # default [real]; ignored by coreset methods (their init is their name)
    seeds: [0, 1]                  # default [0]
    scores: true                   # optional: also the DD-Ranking scores of every cell (or a mapping of
                                   # their settings: lr_grid, select_epochs, val_size, baseline, teacher …)

Every cell's :class:`~datadistill.config.DistillConfig` is defaults ← ``base`` ← the method entry ←
its ``by_ipc`` entry ← {method, ipc, init, seed} (``method_args`` are merged key by key), and every
cell is validated before the first one runs. Coreset methods (``random``, ``herding``, ``k_center``,
``el2n`` …) learn nothing: they get one cell per (IPC, seed) whatever ``init`` lists, with
``iterations`` 0 and no ``max_seconds`` (so changing the learning budget does not recompute them).

Each cell runs :func:`datadistill.api.run_distill` into ``OUT/cells/<label>_ipc<k>_<init>_seed<s>``
and is reused on a later run when that folder holds ``metrics.json`` and a ``cell.json`` whose
resolved config equals the current one. Cells run seed by seed (all of seed 0 first), so an
interrupted grid still covers every method. Outputs in ``OUT`` (written atomically, refreshed after
every cell; the plots at the end): ``results.csv`` / ``results.json`` (one row per cell),
``summary.csv`` / ``summary.json`` (per label, IPC and init, all seeds' evaluation networks pooled),
``results.md`` (accuracy and time tables), ``accuracy_vs_ipc.png``, ``accuracy_vs_time.png`` and
``compare.yaml`` (the grid as read). With ``scores:``, each cell's set is also scored
(:mod:`~datadistill.experiments.compare.scores`: ``ranking_scores.json`` in the cell's folder, the
score columns of the CSV files, LRS and ARS tables in ``results.md``; the whole-data baselines under
``OUT/baselines/``).

Units: accuracies in percent, times in wall-clock seconds; std is the population std (as
:class:`~datadistill.evaluation.EvalResult`).

Modules: :mod:`~datadistill.experiments.compare.settings` (:class:`CompareSettings`, the cells),
:mod:`~datadistill.experiments.compare.run` (:func:`run_compare`),
:mod:`~datadistill.experiments.compare.report` (tables and plots) and
:mod:`~datadistill.experiments.compare.scores` (the cells' DD-Ranking scores).
"""
from datadistill.experiments.compare.report import (CSV_COLUMNS, SUMMARY_COLUMNS, render_markdown, summarize,
                                                     write_plots, write_tables)
from datadistill.experiments.compare.run import CompareResult, cell_row, run_compare
from datadistill.experiments.compare.settings import Cell, ComparePlan, CompareSettings, MethodEntry, load_compare

__all__ = ["CSV_COLUMNS", "SUMMARY_COLUMNS", "Cell", "CompareResult", "ComparePlan", "CompareSettings", "MethodEntry",
           "cell_row", "load_compare", "render_markdown", "run_compare", "summarize", "write_plots", "write_tables"]
