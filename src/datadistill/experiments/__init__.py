"""Experiments built on the core: the method-comparison grid (``compare``) and the applications of
synthetic sets (reference §6): neural architecture search (``nas``), continual learning
(``continual``) and one-shot federated learning (``federated``, FedD3). Each answers "does the
synthetic set make this cheaper without changing the conclusion?" with a measured comparison against
the same task on real data, and writes JSON/CSV/markdown results and plots to its output folder.

Shared pieces: :mod:`~datadistill.experiments.record` (run fingerprint, reuse of finished units),
:mod:`~datadistill.experiments.tables` (CSV/markdown/JSON rendering),
:mod:`~datadistill.experiments.outputs` (one atomic bundle writer) and
:mod:`~datadistill.experiments.workers` (parallel worker processes)."""

# Each experiment registers its section of the HTML report (datadistill.io.report) when imported; the
# order of the registrations is the order of the sections in a report. The package top imports this
# package, so the sections are known wherever datadistill is.
from datadistill.experiments import nas  # noqa: E402,F401  (registers "nas")
from datadistill.io.report import register_report_section  # noqa: E402

# continual and federated are single modules still; their packages will register their own sections
# (register_report_section replaces an entry in its place, so the order stays).
register_report_section("continual", "Continual learning (datadistill continual)")
register_report_section("federated", "Federated learning, FedD3 against FedAvg (datadistill federated)")
