"""Class-incremental continual learning with a condensed memory (reference §6, the DM repository's
experiment): does a memory of synthetic images beat a memory of random real images?

Protocol (one call compares several memory methods on the same class orders and steps):

* **Class orders.** Order ``k`` (k = 0 … ``orders`` − 1) is the permutation of the dataset's
  classes drawn with seed ``k`` by NumPy's legacy generator (``RandomState(k).permutation``, the
  same draw as the DM repository's ``np.random.seed(k); np.random.permutation(num_classes)``).
  The order is cut into ``steps`` consecutive groups of ``num_classes / steps`` classes (``steps``
  must divide the class count: no class is dropped or left over).
* **Memory.** At step ``t`` each memory method condenses ``memory_ipc`` images per class of that
  step's classes **from that step's training images only**: a :class:`SplitDataset` holding just
  those classes (:func:`datadistill.data.class_subset`: labels remapped to 0 … c−1 in the order's
  order, a :class:`DatasetSpec` with their names) goes through :func:`datadistill.api.distill` (no
  evaluation). The set's labels are mapped back to global class ids
  (:func:`datadistill.data.to_global`) and appended to the method's memory; earlier steps' images
  are kept unchanged. Coreset methods (``random``, ``herding``, ``k_center``, ``el2n`` …) select
  real images; learning methods (``dm``, ``datadam``, ``dc``, ``dsa``, ``cafe`` …) learn them, by
  default from init ``real``.
* **Seeds.** Step ``t`` of order ``k`` condenses and evaluates with seed
  ``seed + k * steps + t`` for every method (:func:`step_seed`, the offset scheme of
  :mod:`datadistill.experiments.seeds`), so ``random``'s selection is exactly the initial set of
  the learning methods (init real draws the same images at the same seed), and every method's
  evaluation networks start from the same weights.
* **Evaluation.** After each step, ``num_eval`` fresh networks (``eval_model``) are trained from
  scratch on the whole memory under the evaluation protocol
  (:func:`datadistill.evaluation.evaluate_synthetic_set`: ``epochs`` epochs, SGD lr ``eval_lr``,
  DSA with the dataset's default strategy) and tested on the real test images of **all classes
  seen so far**. The networks have an output per class of the dataset and the labels stay global.
* **Parallelism.** Each (memory method, class order) pair is one task: its steps run in turn (the
  memory grows), the pairs are independent. With ``workers`` ≥ 2 they run in that many worker
  processes (:func:`datadistill.experiments.workers.run_tasks`); every pair seeds itself, so the
  results do not depend on ``workers``.
* **Report.** Accuracy on the seen classes (percent) after each step, per memory method: the mean
  over the orders of each order's mean over its networks, ± the population std over the orders;
  also the per-order values, the DM repository's pooled figure (all networks of all orders), the
  memory size (images) and the wall times (condensation, training). :func:`last_step_verdict` says
  whether the DM or DataDAM memory beats the random memory at the last step by more than the std
  over the orders.

Output folder (files written atomically; refreshed after every finished (memory method, class
order) pair, so an interrupted run keeps the pairs done, and a rerun into the same folder with the
same settings resumes: it computes only the missing pairs): ``continual.json`` (settings, class
orders, per-method per-order per-step records, summaries, verdict), ``continual.csv`` (one row per
method, order and step), ``continual.md`` (table: a row per method, a column per step, mean ± std;
the verdict) and ``continual.png`` (accuracy against step, a line per method with a ± std band).

Not supported as memory methods: the expert-based methods (``needs_experts``: ``mtt``, ``datm``,
``pad``), whose expert trajectories would have to be trained on each step's classes, and a
``scores_file`` for the difficulty coresets (it scores the whole training set; leave it unset and
the scores are computed on each step's data). Soft labels are hardened (argmax) and a learned lr is
not used: the memory is trained with ``eval_lr``. ZCA is not offered (one whitening per step would
put the steps' images in different spaces).

Modules: :mod:`~.settings` (:class:`ContinualSettings`, :func:`memory_config`), :mod:`~.protocol`
(orders, steps, seeds, :func:`memory_run`), :mod:`~.results` (:class:`StepRecord`,
:func:`summarize`, :class:`ContinualResult`), :mod:`~.verdict` (:func:`last_step_verdict`),
:mod:`~.outputs` (the files, the report section) and :mod:`~.run` (:func:`run_continual`, resume).

Units: accuracies in percent, times in wall-clock seconds, std the population std.
"""

from datadistill.data import class_subset, to_global
from datadistill.experiments.continual.outputs import (CSV_COLUMNS, SECTION, continual_figure, render_csv, render_markdown,
                                                       write_outputs)
from datadistill.experiments.continual.protocol import (check_against_data, class_orders, memory_run, memory_set,
                                                        seen_test_subset, step_classes, step_seed)
from datadistill.experiments.continual.results import FORMAT, FORMAT_VERSION, ContinualResult, StepRecord, summarize
from datadistill.experiments.continual.run import RESUME_INDEPENDENT, run_continual
from datadistill.experiments.continual.settings import (METHOD_SETTING_KEYS, SETTING_KEYS, ContinualSettings,
                                                        check_memory_config, load_continual_settings,
                                                        memory_config)
from datadistill.experiments.continual.verdict import BASELINE, FOCUS, beats, last_step_verdict

__all__ = ["BASELINE", "CSV_COLUMNS", "SECTION", "FOCUS", "FORMAT", "FORMAT_VERSION", "METHOD_SETTING_KEYS",
           "RESUME_INDEPENDENT", "SETTING_KEYS", "ContinualResult", "ContinualSettings", "StepRecord", "beats",
           "check_against_data", "check_memory_config", "class_orders", "class_subset", "continual_figure",
           "last_step_verdict", "load_continual_settings", "memory_config", "memory_run", "memory_set",
           "render_csv", "render_markdown", "run_continual", "seen_test_subset",
           "step_classes", "step_seed", "summarize", "to_global", "write_outputs"]
