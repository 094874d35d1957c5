"""Resume of ``datadistill federated`` through its run record: a rerun into the same output folder
with the same settings reuses the finished FedD3 clients, the server's finished networks and the
finished FedAvg rounds, and writes the outputs of an uninterrupted run (wall-clock seconds aside);
a rerun with other settings is refused, naming the keys that differ.

Layout, in the output folder (kept with the results, as every experiment's record is):

* ``federated_run.json``: the :class:`~datadistill.record.RunRecord`: the settings (the config's
  flat keys with the device type; ``workers`` and ``data_root`` may differ on a rerun; the training
  and test set sizes) and the finished units: ``fedd3/client_<i>`` → the client's summary
  (``classes``, ``skipped_classes``, ``distill_seconds``, ``iterations``); ``fedavg/initial`` → the
  initial global model's accuracy; ``fedavg/round_<r>`` → round r's row.
* ``federated_parts/fedd3_client_<i>.safetensors``: client i's upload (images float32, labels int64),
  written before its unit is recorded.
* ``federated_parts/fedavg_round_<r>.safetensors``: the global weights after the last finished round r
  (FedAvg round r + 1 starts from them: the rounds depend on each other only through these weights
  and their own seeds), written before round r is recorded; the previous round's file is removed
  after.
* ``federated_parts/server_<model>.json``: the server's finished networks
  (:mod:`datadistill.evaluation.parts`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from datadistill.errors import DatadistillError
from datadistill.evaluation import EvalParts
from datadistill.experiments.federated.settings import FederatedConfig
from datadistill.io.tensor_file import read_tensor_file, write_tensor_file
from datadistill.record import RunRecord

RECORD_FILE = "federated_run.json"
PARTS_FOLDER = "federated_parts"
UPLOAD_FORMAT = "datadistill.fedd3_upload"
STATE_FORMAT = "datadistill.fedavg_state"
#: settings a resumed folder may differ in (worker processes, where the data is read from)
RESUME_INDEPENDENT = ("workers", "data_root")
_TENSORS = ("images", "labels")


class FederatedRecord:
    """The record of one federated run in ``out`` (module docstring).

    Args:
        out: the output folder.
        config: the run's settings.
        device: the device the run trains on (its type is recorded).
        sizes: (training images, test images) of the dataset.
    """

    def __init__(self, out: str | os.PathLike, config: FederatedConfig, device: str, sizes: tuple[int, int]) -> None:
        self.out = Path(out)
        self.parts = self.out / PARTS_FOLDER
        settings = {**config.as_dict(), "device": torch.device(device).type, "train_images": sizes[0],
                    "test_images": sizes[1]}
        self.record = RunRecord(self.out / RECORD_FILE, settings, ignore=RESUME_INDEPENDENT, what="a federated run")
        self.done: dict[Any, Any] = {}

    def resume(self) -> int:
        """Read the folder's record; returns the number of finished units (0 for a new folder).

        Raises:
            ConfigError: the record was written with other settings (the keys listed) or is unreadable.
        """
        self.done = self.record.resume()
        return len(self.done)

    # ---------------------------------------------------------------------------------------- FedD3
    def clients(self) -> dict[int, dict[str, Any]]:
        """The finished FedD3 clients, i → what :func:`~.fedd3.fedd3_client` returned (a client whose
        upload file is missing or unreadable is not reused)."""
        out = {}
        for unit, info in self.done.items():
            if not str(unit).startswith("fedd3/client_"):
                continue
            i = int(str(unit).rsplit("_", 1)[1])
            try:
                tensors, _ = read_tensor_file(self.parts / f"fedd3_client_{i}.safetensors", UPLOAD_FORMAT, 1,
                                              DatadistillError, "FedD3 upload")
            except DatadistillError:
                continue
            if set(tensors) == set(_TENSORS):
                out[i] = {**info, **tensors}
        return out

    def client_finished(self, i: int, upload: Mapping[str, Any]) -> None:
        """Keep client ``i``'s upload, then record it as finished."""
        write_tensor_file(self.parts / f"fedd3_client_{i}.safetensors", {k: upload[k] for k in _TENSORS},
                          {"client": i}, UPLOAD_FORMAT, 1)
        self.record.mark_finished(f"fedd3/client_{i}", {k: v for k, v in upload.items() if k not in _TENSORS})

    def server_parts(self) -> EvalParts:
        """Where the server's finished networks are kept."""
        return EvalParts(self.parts, prefix="server_")

    # --------------------------------------------------------------------------------------- FedAvg
    def fedavg(self) -> dict[str, Any] | None:
        """What :func:`~.fedavg.run_fedavg` resumes from: ``rows`` of the finished rounds 1 … r,
        ``initial_accuracy`` and ``state`` (the global weights after round r); None when no round
        finished or the weights of the last one are missing (FedAvg then starts again)."""
        rows = []
        while f"fedavg/round_{len(rows) + 1}" in self.done:
            rows.append(self.done[f"fedavg/round_{len(rows) + 1}"])
        initial = self.done.get("fedavg/initial")
        if not rows or initial is None:
            return None
        try:
            state, _ = read_tensor_file(self._state_file(len(rows)), STATE_FORMAT, 1, DatadistillError,
                                        "FedAvg state")
        except DatadistillError:
            return None
        return {"rows": rows, "initial_accuracy": initial, "state": state}

    def round_finished(self, round_: int, initial_accuracy: float, row: Mapping[str, Any],
                       state: Mapping[str, torch.Tensor]) -> None:
        """Keep the global weights after ``round_``, record the round, then drop the previous weights."""
        write_tensor_file(self._state_file(round_), dict(state), {"round": round_}, STATE_FORMAT, 1)
        if "fedavg/initial" not in self.record.units:
            self.record.units["fedavg/initial"] = initial_accuracy
        self.record.mark_finished(f"fedavg/round_{round_}", dict(row))
        self._state_file(round_ - 1).unlink(missing_ok=True)

    def _state_file(self, round_: int) -> Path:
        return self.parts / f"fedavg_round_{round_}.safetensors"


__all__ = ["FederatedRecord", "PARTS_FOLDER", "RECORD_FILE", "RESUME_INDEPENDENT"]
