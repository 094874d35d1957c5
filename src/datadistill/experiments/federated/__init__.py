"""Federated learning with synthetic sets: one-shot FedD3 against FedAvg (reference §6).

The real training set is split among N clients (:func:`partition_indices`). Two ways to learn one
model from them are run on the same split, with the same architecture and the same real test set:

* **FedD3** (Song et al., 2023): every client distils its own images once with a registered method
  (:func:`datadistill.api.distill`, the clients in parallel worker processes) and uploads the
  synthetic set; the server trains a fresh network on the union of the uploads under the standard
  evaluation protocol (:func:`datadistill.evaluation.evaluate_synthetic_set`). One round.
* **FedAvg** (McMahan et al., 2017): for R rounds, a seeded fraction of the clients start from the
  global weights, train E local epochs with SGD on their images and upload their weights; the server
  replaces the global weights by the average weighted by the clients' image counts. A plain
  simulation in this process, the clients one after another.

Bytes communicated are counted exactly from the tensors sent: a FedD3 upload is its images as
float32 plus its int64 labels; a FedAvg upload is the model's floating-point state (parameters and
floating buffers) as float32. Both are in bytes (B); times in wall-clock seconds; accuracies in
percent on the real test set. Seeds: every random part (partition, client seeds, client selection,
local training, initial network) derives from the run's ``seed`` through
:mod:`datadistill.experiments.seeds`, one stream per purpose.

:func:`run_federated` runs both and writes, atomically and only after everything succeeded,
``federated.json``, ``federated.csv`` (FedAvg per round), ``federated.md`` (the comparison and the
verdict), ``federated.png`` (accuracy against cumulative bytes uploaded) and
``fedd3_synthetic.safetensors`` (the union the server trained on). Every setting is checked first:
bad input raises one :class:`~datadistill.errors.ConfigError` and writes nothing. The finished FedD3
clients, server networks and FedAvg rounds are recorded as they finish (``federated_run.json``,
``federated_parts/``): an interrupted run rerun into the same folder with the same settings resumes
from them (:mod:`~.resume`).

Modules: :mod:`~.settings` (:class:`FederatedConfig`), :mod:`~.partition`, :mod:`~.payload` (what is
uploaded, in bytes), :mod:`~.fedd3`, :mod:`~.fedavg`, :mod:`~.outputs` (verdict, files, report
section), :mod:`~.resume` (the run record) and :mod:`~.run` (:func:`run_federated`).
"""

from datadistill.experiments.federated.fedavg import (LOCAL_RECIPE, LocalTraining, build_net, client_update,
                                                      local_seed, local_train, run_fedavg, select_clients,
                                                      weighted_average)
from datadistill.experiments.federated.fedd3 import fedd3_client, run_fedd3
from datadistill.experiments.federated.outputs import (CSV_COLUMNS, SECTION, VERDICT, compare_runs, comparison_figure,
                                                       render_csv, render_markdown, write_outputs)
from datadistill.experiments.federated.partition import (PARTITION_FORMS, Partition, describe_partition,
                                                         parse_partition, partition_indices)
from datadistill.experiments.federated.payload import (model_state, safetensors_bytes, synthetic_upload,
                                                       tensor_bytes, upload_bytes)
from datadistill.experiments.federated.run import FederatedResult, run_federated
from datadistill.experiments.federated.settings import FederatedConfig, build_federated_config

__all__ = ["CSV_COLUMNS", "SECTION", "LOCAL_RECIPE", "PARTITION_FORMS", "VERDICT", "FederatedConfig", "FederatedResult",
           "LocalTraining", "Partition", "build_federated_config", "build_net", "client_update", "compare_runs",
           "comparison_figure", "describe_partition", "fedd3_client", "local_seed", "local_train", "model_state",
           "parse_partition", "partition_indices", "render_csv", "render_markdown", "run_fedavg",
           "run_fedd3", "run_federated", "safetensors_bytes", "select_clients", "synthetic_upload", "tensor_bytes",
           "upload_bytes", "weighted_average", "write_outputs"]
