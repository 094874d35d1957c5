"""``datadistill federated``: :func:`run_federated` runs FedD3 and FedAvg on the same partition of the
real training set and writes the comparison (every file at the end, after everything succeeded).
The finished FedD3 clients, server networks and FedAvg rounds are recorded as they finish, and a
rerun into the same folder resumes from them (:mod:`.resume`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from datadistill.data import SplitDataset
from datadistill.errors import ConfigError
from datadistill.experiments.federated.fedavg import LocalTraining, run_fedavg
from datadistill.experiments.federated.fedd3 import run_fedd3
from datadistill.experiments.federated.outputs import compare_runs, write_outputs
from datadistill.experiments.federated.partition import describe_partition, parse_partition, partition_indices
from datadistill.experiments.federated.resume import RECORD_FILE, FederatedRecord
from datadistill.experiments.federated.settings import FederatedConfig, Progress, UnitProgress
from datadistill.distributed import broadcast_object, world
from datadistill.fsutil import check_output_folder
from datadistill.io import SyntheticSet


@dataclass
class FederatedResult:
    """What :func:`run_federated` returns: ``summary`` (the ``federated.json`` content), the FedD3
    union ``synthetic_set`` and the FedAvg ``final_state`` (name → float32 tensor)."""

    summary: dict[str, Any]
    synthetic_set: SyntheticSet
    final_state: dict[str, torch.Tensor]

    @property
    def verdict(self) -> bool | None:
        """True / False / None (undetermined) for :data:`~datadistill.experiments.federated.VERDICT`."""
        return self.summary["comparison"]["value"]


def run_federated(config: FederatedConfig | Mapping[str, Any], out: str | os.PathLike, *,
                  dataset: SplitDataset | None = None, progress: Progress | None = None,
                  on_unit: UnitProgress | None = None) -> FederatedResult:
    """Run FedD3 and FedAvg on the same partition and write the comparison to ``out``
    (``datadistill federated``).

    Args:
        config: the :class:`FederatedConfig` (the CLI builds it from ``--config`` and its flags with
            :meth:`FederatedConfig.build`), or a mapping of its fields (:meth:`FederatedConfig.from_mapping`).
        out: the output folder: ``fedd3_synthetic.safetensors``, ``federated.png``, ``federated.csv``,
            ``federated.md``, ``federated.json`` (written atomically at the end), and the run record
            ``federated_run.json`` with ``federated_parts/`` (the finished clients, server networks
            and rounds, kept as they finish: a rerun with the same settings resumes from them,
            :mod:`~datadistill.experiments.federated.resume`).
        dataset: an already loaded, in-memory dataset (else
            ``config.dataset`` from ``config.data_root``).
        progress: called ``(stage, message)`` as the run advances (the messages are also logged).
        on_unit: called ``(stage, done, total, reused)`` as clients, server epochs and rounds finish
            (progress displays; :data:`~datadistill.experiments.federated.settings.UnitProgress`).

    Raises:
        ConfigError / UnknownNameError: an invalid setting (unknown partition form, method or model,
            clients < 1 or more than the training images, K > classes, alpha ≤ 0, an output path
            that is a file, an output folder holding a federated run of other settings (the keys
            that differ listed), …), raised before anything runs or is written.
        DatasetNotFoundError: the dataset is not on disk.
        Whatever a client's distillation raises (e.g. NonFiniteLossError), re-raised here.
    """
    from datadistill._version import __version__
    from datadistill.data import load_dataset
    from datadistill.runtime import select_device

    cfg = config if isinstance(config, FederatedConfig) else FederatedConfig.from_mapping(config)
    check_output_folder(out)
    device = str(select_device(cfg.device))
    data = dataset if dataset is not None else load_dataset(cfg.dataset, cfg.data_root, stream="off")
    if data.train.streamed:
        raise ConfigError(f"dataset {data.spec.name} is streamed from its files: federated runs need it in memory "
                          "(load it with stream off)")
    spec = data.spec
    parts = partition_indices(data.train.labels, cfg.clients, cfg.partition, cfg.seed, spec.num_classes)
    clients_info = describe_partition(data.train.labels.cpu(), parts, spec.num_classes)
    if not any(n >= cfg.client_ipc for c in clients_info for n in c["class_counts"]):
        raise ConfigError(f"client_ipc = {cfg.client_ipc} is invalid for partition {cfg.partition} of "
                          f"{cfg.clients} clients: no client holds {cfg.client_ipc} images of any class "
                          "(expected a smaller client_ipc)")
    record = FederatedRecord(out, cfg, device, (len(data.train), len(data.test)))

    def say(stage: str, message: str, logger: logging.Logger = logging.getLogger("datadistill")) -> None:
        logger.info("%s: %s", stage, message)
        if progress:
            progress(stage, message)

    if record.resume():
        say("partition", f"resuming {out}: {len(record.done)} finished units in {RECORD_FILE}",
            logging.getLogger("datadistill.notice"))
    sizes = [c["images"] for c in clients_info]
    say("partition", f"{cfg.partition}: {cfg.clients} clients of {min(sizes)}–{max(sizes)} images")
    main = world().is_main  # under torchrun every rank runs the clients it claims; rank 0 keeps and writes
    # what rank 0 reads of the folder decides for every rank
    fedd3 = run_fedd3(cfg, data, parts, say, done=broadcast_object(record.clients()),
                      on_client=record.client_finished, server_parts=record.server_parts(), on_unit=on_unit)
    union = fedd3.pop("synthetic_set")
    local = LocalTraining(epochs=cfg.local_epochs, lr=cfg.local_lr, batch_size=cfg.local_batch,
                          momentum=cfg.local_momentum, weight_decay=cfg.local_weight_decay)
    fedavg = run_fedavg(data.train, data.test, spec, parts, model=cfg.model, rounds=cfg.rounds,
                        fraction=cfg.client_fraction, settings=local, seed=cfg.seed, device=device,
                        progress=say, resume_from=broadcast_object(record.fedavg()),
                        on_round=record.round_finished if main else None, on_unit=on_unit)
    final_state = fedavg.pop("final_state")
    summary = {"config": {**cfg.as_dict(), "partition": str(parse_partition(cfg.partition))},
               "package_version": __version__, "dataset": {"name": spec.name, "train_images": len(data.train),
                                                           "test_images": len(data.test), "classes": spec.num_classes},
               "partition": clients_info, "fedd3": fedd3, "fedavg": fedavg,
               "comparison": compare_runs(fedd3, fedavg)}
    if main:
        write_outputs(summary, union, out)
    return FederatedResult(summary, union, final_state)


__all__ = ["FederatedResult", "run_federated"]
