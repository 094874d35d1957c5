"""Experiments built on the core: the method-comparison grid (``compare``) and the applications of
synthetic sets (reference §6): neural architecture search (``nas``), continual learning
(``continual``) and one-shot federated learning (``federated``, FedD3). Each answers "does the
synthetic set make this cheaper without changing the conclusion?" with a measured comparison against
the same task on real data, and writes JSON/CSV/markdown results and plots to its output folder.

Shared pieces: :mod:`~datadistill.record` (run fingerprint, reuse of finished units; below this layer, so the experts use it too),
:mod:`~datadistill.experiments.tables` (CSV/markdown/JSON rendering),
:mod:`~datadistill.experiments.outputs` (one atomic bundle writer),
:mod:`~datadistill.experiments.seeds` (how a run's seed becomes its units' seeds) and
:mod:`~datadistill.experiments.workers` (parallel worker processes)."""

# Each experiment registers its section of the HTML report (datadistill.io.report) when imported; the
# order of these imports is the order of the sections in a report. The package top imports this
# package, so the sections are known wherever datadistill is.
from datadistill.experiments import nas  # noqa: E402,F401  (registers "nas")
from datadistill.experiments import continual  # noqa: E402,F401  (registers "continual")
from datadistill.experiments import federated  # noqa: E402,F401  (registers "federated")
