"""The settings of a federated run (:class:`FederatedConfig`) and of one FedD3 client's distillation
(:meth:`FederatedConfig.client_distill_config`).

Built as every settings class is (:class:`datadistill.settings.SettingsBase`): defaults ← a YAML file
← overrides (None ignored; ``client_args`` merged key by key), scalar values coerced from YAML or CLI
strings, unknown keys refused with the accepted ones and a "did you mean", every value checked on
construction, before any data is read.

Seeds: the run's one ``seed`` is turned into the seeds of its parts by
:mod:`datadistill.experiments.seeds`, one stream number per purpose (:data:`PARTITION_STREAM` …).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

from datadistill.config import DistillConfig
from datadistill.errors import ConfigError
from datadistill.experiments.federated.partition import PARTITION_STREAM, parse_partition
from datadistill.settings import SettingsBase, refuse_unknown

# the stream numbers after the seed (datadistill.experiments.seeds): one per purpose, never shared
SELECTION_STREAM = 2  # derived_rng(seed, 2, round): the FedAvg clients of a round
FEDD3_STREAM = 3  # derived_seed(seed, 3, client): a FedD3 client's distillation seed
LOCAL_STREAM = 4  # derived_seed(seed, 4, round, client): a FedAvg client's local-training seed
INIT_STREAM = 5  # derived_seed(seed, 5): the initial global FedAvg network

# DistillConfig fields a FedD3 client takes from the run itself, not from ``client_args``.
_CLIENT_FIXED = ("dataset", "method", "ipc", "iterations", "seed", "num_eval", "device", "data_root", "image_size",
                 "stream", "num_workers", "eval_init")

Progress = Callable[[str, str], None]  # (stage: "partition" | "fedd3" | "server" | "fedavg", message)
#: (stage: "fedd3" (clients) | "server" (epochs of its networks) | "fedavg" (rounds), done, total, reused)
UnitProgress = Callable[[str, int, int, bool], None]


@dataclass
class FederatedConfig(SettingsBase):
    """Settings of :func:`~datadistill.experiments.federated.run_federated`. Defaults: 10 MNIST
    clients, DM at IPC 10, the FedD3 paper's server setting (500 epochs, lr 0.001, batch 50, momentum
    0.9) and a 20-round FedAvg; the CPU-sized setting is ``configs/federated/mnist_cpu.yaml``. Build
    one with :meth:`build` (defaults ← YAML file ← overrides) or :meth:`from_mapping`, as the CLI does.

    Attributes:
        dataset: registered dataset name (loaded in memory).
        data_root: where datasets live; None = ``$DATADISTILL_DATA`` or the user cache.
        clients: N, clients sharing the training set (1 … training images).
        partition: ``iid``, ``noniid:K`` or ``dirichlet:ALPHA``
            (:func:`~datadistill.experiments.federated.partition_indices`).
        seed: seeds the partition, every client's distillation and training, client selection and
            the networks' initialisation (one stream each, :mod:`datadistill.experiments.seeds`).
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        workers: parallel worker processes distilling the FedD3 clients (0 or 1 = in this process,
            one after another; the results are the same). They are started with ``spawn``: a script
            calling ``run_federated`` with workers ≥ 2 needs the ``if __name__ == "__main__":`` guard.
            Ignored under torchrun, where each rank is one worker (:mod:`datadistill.experiments.workers`).
        model: registered architecture of the server network (FedD3) and of the FedAvg model.
        client_method: registered method each FedD3 client distils with.
        client_ipc: K, synthetic images per class the client holds at least K images of (classes
            with fewer images are not distilled and not uploaded; reported as ``skipped_classes``).
        client_iterations: the method's optimisation steps.
        client_args: further :class:`~datadistill.config.DistillConfig` fields for every client (``model``,
            ``lr_img``, ``batch_real``, ``init``, ``dsa_strategy``, ``max_seconds``, ``method_args`` …),
            merged key by key over the file's when given as an override; the distillation model
            defaults to ``model``. Not ``zca_eps`` (each client would whiten differently) nor the
            fields the run sets itself.
        server_epochs, server_lr, server_batch, server_momentum, server_weight_decay: SGD training of
            the server network on the union (the protocol divides the lr by 10 at half the epochs).
        server_dsa_strategy: DSA augmentation of the server's batches; None = the dataset's default
            (the standard protocol), ``none`` = no augmentation.
        server_num_eval: networks trained on the union (accuracy = their mean).
        rounds: R, FedAvg rounds.
        local_epochs: E, local epochs per round.
        client_fraction: fraction of the clients selected each round (max(1, ⌊fraction·N⌋) clients,
            seeded per round), in (0, 1].
        local_lr, local_batch, local_momentum, local_weight_decay: the clients' SGD (McMahan et al.:
            plain SGD, momentum 0; lr 0.05 because LeNet barely leaves chance level in a first MNIST
            round at 0.01).

    Raises:
        ConfigError: the first invalid value, naming it and what is accepted; UnknownNameError (a
            ConfigError) for an unregistered method or model.
    """

    nested_fields: ClassVar[tuple[str, ...]] = ("client_args",)
    settings_what: ClassVar[str] = "federated"

    dataset: str = "mnist"
    data_root: str | None = None
    clients: int = 10
    partition: str = "iid"
    seed: int = 0
    device: str = "auto"
    workers: int = 2
    model: str = "lenet"
    client_method: str = "dm"
    client_ipc: int = 10
    client_iterations: int = 200
    client_args: dict[str, Any] = field(default_factory=dict)
    server_epochs: int = 500
    server_lr: float = 0.001
    server_batch: int = 50
    server_momentum: float = 0.9
    server_weight_decay: float = 5e-4
    server_dsa_strategy: str | None = None
    server_num_eval: int = 1
    rounds: int = 20
    local_epochs: int = 1
    client_fraction: float = 1.0
    local_lr: float = 0.05
    local_batch: int = 50
    local_momentum: float = 0.0
    local_weight_decay: float = 0.0


    def checks(self) -> list[tuple[str, bool, str]]:
        parse_partition(self.partition)  # ConfigError naming the accepted forms
        return [
            ("client_args", isinstance(self.client_args, Mapping),
             "a mapping of DistillConfig settings, e.g. {lr_img: 1.0}"),
            ("clients", self.clients >= 1, "an integer ≥ 1"),
            ("workers", self.workers >= 0, "an integer ≥ 0 (0 or 1 = in this process)"),
            ("client_ipc", self.client_ipc >= 1, "an integer ≥ 1"),
            ("client_iterations", self.client_iterations >= 0, "an integer ≥ 0"),
            ("server_epochs", self.server_epochs >= 1, "an integer ≥ 1"),
            ("server_lr", self.server_lr > 0 and math.isfinite(self.server_lr), "a finite number > 0"),
            ("server_batch", self.server_batch >= 1, "an integer ≥ 1"),
            ("server_momentum", 0 <= self.server_momentum < 1, "a number in [0, 1)"),
            ("server_weight_decay", 0 <= self.server_weight_decay < math.inf, "a finite number ≥ 0"),
            ("server_num_eval", self.server_num_eval >= 1, "an integer ≥ 1"),
            ("rounds", self.rounds >= 1, "an integer ≥ 1"),
            ("local_epochs", self.local_epochs >= 1, "an integer ≥ 1"),
            ("client_fraction", 0 < self.client_fraction <= 1, "a number in (0, 1]"),
            ("local_lr", self.local_lr > 0 and math.isfinite(self.local_lr), "a finite number > 0"),
            ("local_batch", self.local_batch >= 1, "an integer ≥ 1"),
            ("local_momentum", 0 <= self.local_momentum < 1, "a number in [0, 1)"),
            ("local_weight_decay", 0 <= self.local_weight_decay < math.inf, "a finite number ≥ 0"),
        ]

    def validate(self) -> None:
        self.client_args = dict(self.client_args)
        fixed = [k for k in self.client_args if k in _CLIENT_FIXED or k == "zca_eps"]
        if fixed:
            raise ConfigError(f"client_args {fixed[0]!r} is not accepted: the run sets it (zca_eps: every client "
                              f"would whiten differently); accepted: the other DistillConfig fields")
        from datadistill.augment.dsa import parse_strategy
        from datadistill.methods import METHODS, method_config
        from datadistill.models import MODELS
        from datadistill.runtime import select_device

        select_device(self.device)
        METHODS.get(self.client_method)
        MODELS.get(self.model)
        if self.server_dsa_strategy is not None:
            parse_strategy(self.server_dsa_strategy)
        client = self.client_distill_config(0)  # unknown client_args keys, invalid values
        MODELS.get(client.model)
        method_config(client)  # the method's own settings (method_args)

    def client_distill_config(self, client_seed: int) -> DistillConfig:
        """The :class:`DistillConfig` of a FedD3 client (no evaluation): ``client_args`` on top of the
        run's ``model``, then the fields the run sets (dataset, method, ipc, iterations, seed …).

        Raises:
            ConfigError: an unknown or invalid ``client_args`` entry.
        """
        accepted = {f.name for f in fields(DistillConfig)} - set(_CLIENT_FIXED) - {"zca_eps"}
        refuse_unknown(self.client_args, accepted, what="DistillConfig", where=" in client_args")
        values = {"model": self.model, **self.client_args}
        return DistillConfig(**values, dataset=self.dataset, method=self.client_method, ipc=self.client_ipc,
                             iterations=self.client_iterations, seed=client_seed, num_eval=0, device=self.device)


def build_federated_config(file: str | os.PathLike | None = None,
                           overrides: Mapping[str, Any] | None = None) -> FederatedConfig:
    """``FederatedConfig.build(file, overrides)``: defaults ← YAML ``file`` ← ``overrides`` (None
    values ignored; ``client_args`` merged key by key).

    Raises:
        ConfigError: unreadable YAML, unknown key or invalid value.
    """
    return FederatedConfig.build(file or None, overrides)


__all__ = ["FEDD3_STREAM", "INIT_STREAM", "LOCAL_STREAM", "PARTITION_STREAM", "SELECTION_STREAM", "FederatedConfig",
           "Progress", "UnitProgress", "build_federated_config"]
