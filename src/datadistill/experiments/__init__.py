"""Experiments built on the core: the method-comparison grid (``compare``) and the applications of
synthetic sets (reference §6): neural architecture search (``nas``), continual learning
(``continual``) and one-shot federated learning (``federated``, FedD3). Each answers "does the
synthetic set make this cheaper without changing the conclusion?" with a measured comparison against
the same task on real data, and writes JSON/CSV/markdown results and plots to its output folder.

Shared pieces: :mod:`~datadistill.experiments.record` (run fingerprint, reuse of finished units),
:mod:`~datadistill.experiments.tables` (CSV/markdown/JSON rendering),
:mod:`~datadistill.experiments.outputs` (one atomic bundle writer),
:mod:`~datadistill.experiments.sections` (an experiment's section of the HTML report),
:mod:`~datadistill.experiments.seeds` (how a run's seed becomes its units' seeds) and
:mod:`~datadistill.experiments.workers` (parallel worker processes)."""
