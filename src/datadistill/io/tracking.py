"""Experiment trackers: TensorBoard, MLflow, Weights & Biases and a CSV file behind one small interface.

Every tracker writes under the run's output folder and nothing leaves the machine:

=============== ============================================ ==============================================
tracker         where                                        how
=============== ============================================ ==============================================
``tensorboard`` ``OUT/tensorboard/``                         ``torch.utils.tensorboard.SummaryWriter``
``mlflow``      ``OUT/mlruns/`` (experiment ``datadistill``) ``MlflowClient`` on a local ``file:`` store
``wandb``       ``OUT/wandb/offline-run-*/``                 ``wandb.init(mode="offline")``: no account,
                                                             no network (``wandb sync`` uploads it later)
``csv``         ``OUT/log.csv``                              one row per step: ``iteration`` and a column
                                                             per metric (no extra package)
=============== ============================================ ==============================================

The first three are optional extras (``pip install datadistill[tensorboard]``, ``[mlflow]``,
``[wandb]``); :func:`check_trackers` refuses a missing one with one line naming its extra, before any
work. A tracker is opened at the step the run starts from (0, or the iteration a resumed run goes on
from): TensorBoard then discards the events an interrupted session wrote past it, ``log.csv`` its
rows, and MLflow and W&B start a new run. Steps only grow (W&B refuses a step lower than its last).
Logging reads the values it is given and draws no random numbers.
"""

from __future__ import annotations

import csv
import importlib
import io
import logging
import os
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from datadistill.config import TRACKERS
from datadistill.errors import ConfigError
from datadistill.fsutil import atomic_write_text

EXTRAS = {"tensorboard": "tensorboard", "mlflow": "mlflow", "wandb": "wandb"}
"""The package each tracker needs, which is also the name of the extra that installs it."""
LOCATIONS = {"tensorboard": "tensorboard", "mlflow": "mlruns", "wandb": "wandb", "csv": "log.csv"}
"""Where each tracker writes, in the run's output folder."""

#: set before mlflow or wandb is imported: a local file store, no telemetry, offline, silent
_ENVIRONMENT = {
    "mlflow": {"MLFLOW_ALLOW_FILE_STORE": "true", "MLFLOW_DISABLE_TELEMETRY": "true"},
    "wandb": {"WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_ERROR_REPORTING": "false",
              "WANDB_DISABLE_GIT": "true", "WANDB_DISABLE_CODE": "true", "WANDB_CONSOLE": "off"},
}


def _import(name: str):
    os.environ.update(_ENVIRONMENT.get(name, {}))
    return importlib.import_module(EXTRAS[name])


def check_trackers(names: Sequence[str]) -> None:
    """Refuse an unknown tracker, or one whose package is not installed, before any work.

    Raises:
        ConfigError: one line: ``--log-to wandb needs the wandb package: pip install 'datadistill[wandb]'``.
    """
    for name in names:
        if name not in TRACKERS:
            raise ConfigError(f"unknown tracker {name!r}: expected one of {', '.join(TRACKERS)}")
        if name in EXTRAS:
            try:
                _import(name)
            except ImportError:
                raise ConfigError(f"--log-to {name} needs the {EXTRAS[name]} package, which is not installed: "
                                  f"pip install 'datadistill[{name}]'") from None


def flat_params(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings flattened to ``{"method_args.attention_power": 4, ...}``; lists and tuples as text."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        if isinstance(value, Mapping):
            out.update(flat_params(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value if isinstance(value, (bool, int, float, str)) else str(value)
    return out


class Tracker:
    """One experiment tracker of a run. ``step`` is the iteration; calls come in non-decreasing step order."""

    name = ""

    def log_params(self, params: Mapping[str, Any]) -> None:
        """The run's settings (nested mappings allowed), once, before the first metric."""

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        """Scalar metrics at ``step``."""

    def log_image(self, key: str, pixels: np.ndarray, step: int) -> None:
        """An (H, W, 3) uint8 picture at ``step`` (the synthetic set's grid)."""

    def log_artifact(self, path: Path) -> None:
        """A finished output file."""

    def close(self, failed: bool = False) -> None:
        """Finish the run (``failed``: it stopped on an error or a signal)."""


class TensorBoardTracker(Tracker):
    """Scalars, images and the settings (as text and as hparams) in ``OUT/tensorboard``."""

    name = "tensorboard"

    def __init__(self, folder: Path, run_name: str, start_step: int) -> None:
        from torch.utils.tensorboard import SummaryWriter

        # purge_step: events of an earlier session at or past it are discarded (all of them on a fresh start)
        self.writer = SummaryWriter(log_dir=str(folder / "tensorboard"), purge_step=start_step + 1 if start_step else 0)

    def log_params(self, params: Mapping[str, Any]) -> None:
        from torch.utils.tensorboard.summary import hparams

        text = yaml.safe_dump(dict(params), sort_keys=True)
        self.writer.add_text("config", "    " + text.replace("\n", "\n    "), 0)  # markdown code block
        flat = {k: v for k, v in flat_params(params).items() if v is not None}
        writer = self.writer._get_file_writer()
        for summary in hparams(flat, {}):
            writer.add_summary(summary)

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        for key, value in metrics.items():
            self.writer.add_scalar(key, value, step)

    def log_image(self, key: str, pixels: np.ndarray, step: int) -> None:
        self.writer.add_image(key, pixels, step, dataformats="HWC")

    def log_artifact(self, path: Path) -> None:  # no artefact store: the files lie beside OUT/tensorboard
        pass

    def close(self, failed: bool = False) -> None:
        self.writer.close()


class MLflowTracker(Tracker):
    """A run of the experiment ``datadistill`` in the file store ``OUT/mlruns``: params, metrics,
    images (``images/``) and the output files as artefacts."""

    name = "mlflow"

    def __init__(self, folder: Path, run_name: str, start_step: int) -> None:
        _import("mlflow")
        from mlflow.tracking import MlflowClient

        with _quiet():
            self.client = MlflowClient(tracking_uri=(folder / "mlruns").resolve().as_uri())
            experiment = self.client.get_experiment_by_name("datadistill")
            experiment_id = (experiment.experiment_id if experiment is not None
                             else self.client.create_experiment("datadistill"))
            self.run_id = self.client.create_run(experiment_id, run_name=run_name).info.run_id

    def log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in flat_params(params).items()]
        with _quiet():
            for i in range(0, len(items), 100):  # MLflow's batch limit
                self.client.log_batch(self.run_id, params=items[i:i + 100])

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        with _quiet():
            self.client.log_batch(self.run_id, metrics=[Metric(k, float(v), now, step) for k, v in metrics.items()])

    def log_image(self, key: str, pixels: np.ndarray, step: int) -> None:
        with _quiet():
            self.client.log_image(self.run_id, pixels, key=key, step=step)

    def log_artifact(self, path: Path) -> None:
        with _quiet():
            self.client.log_artifact(self.run_id, str(path))

    def close(self, failed: bool = False) -> None:
        with _quiet():
            self.client.set_terminated(self.run_id, "FAILED" if failed else "FINISHED")


class WandbTracker(Tracker):
    """An offline W&B run in ``OUT/wandb/offline-run-*`` (history, config, media, the output files);
    ``wandb sync OUT/wandb/offline-run-*`` uploads it. Nothing is sent: no account, no network, no
    system statistics, no machine information, no console capture."""

    name = "wandb"

    def __init__(self, folder: Path, run_name: str, start_step: int) -> None:
        wandb = _import("wandb")
        self.wandb = wandb
        settings = wandb.Settings(mode="offline", silent=True, console="off", disable_git=True, save_code=False,
                                  x_disable_stats=True, x_disable_meta=True, x_disable_machine_info=True,
                                  x_save_requirements=False)
        folder.mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(project="datadistill", name=run_name, dir=str(folder), mode="offline",
                              settings=settings, reinit="create_new")

    def log_params(self, params: Mapping[str, Any]) -> None:
        self.run.config.update(dict(params), allow_val_change=True)

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        self.run.log(dict(metrics), step=step)

    def log_image(self, key: str, pixels: np.ndarray, step: int) -> None:
        self.run.log({key: self.wandb.Image(pixels)}, step=step)

    def log_artifact(self, path: Path) -> None:
        self.run.save(str(path), base_path=str(path.parent), policy="now")

    def close(self, failed: bool = False) -> None:
        self.run.finish(exit_code=1 if failed else 0)


class CSVTracker(Tracker):
    """``OUT/log.csv``: ``iteration`` and one column per metric, a row per step (metrics of one step
    share its row), written as the run goes; a metric first seen late adds its column (the file is
    rewritten then). A resumed run keeps the rows up to the step it goes on from."""

    name = "csv"

    def __init__(self, folder: Path, run_name: str, start_step: int) -> None:
        self.path = folder / "log.csv"
        self.columns: list[str] = ["iteration"]
        self.rows: list[dict[str, Any]] = []
        if start_step and self.path.is_file():
            with open(self.path, newline="", encoding="utf-8") as f:
                reader = csv.DictReader(f)
                self.columns = list(reader.fieldnames or self.columns)
                self.rows = [row for row in reader if int(row["iteration"]) <= start_step]
        self.written = len(self.rows)  # rows on disk; the last row stays open until the step changes
        folder.mkdir(parents=True, exist_ok=True)
        self._rewrite()

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        if not self.rows or int(self.rows[-1]["iteration"]) != step:
            self._flush()
            self.rows.append({"iteration": step})
        self.rows[-1].update(metrics)

    def _flush(self) -> None:
        pending = self.rows[self.written:]
        if not pending:
            return
        new = [k for row in pending for k in row if k not in self.columns]
        if new:
            self.columns += list(dict.fromkeys(new))
            self.written = len(self.rows)
            self._rewrite()
            return
        with open(self.path, "a", newline="", encoding="utf-8") as f:
            csv.DictWriter(f, self.columns, lineterminator="\n").writerows(pending)
        self.written = len(self.rows)

    def _rewrite(self) -> None:
        text = io.StringIO()
        writer = csv.DictWriter(text, self.columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows[:self.written])
        atomic_write_text(self.path, text.getvalue())

    def close(self, failed: bool = False) -> None:
        self._flush()


BACKENDS: dict[str, type[Tracker]] = {"tensorboard": TensorBoardTracker, "mlflow": MLflowTracker,
                                      "wandb": WandbTracker, "csv": CSVTracker}


class TrackerGroup(Tracker):
    """Several trackers as one: every call goes to each; :meth:`close` closes all, even when one fails."""

    def __init__(self, trackers: Sequence[Tracker]) -> None:
        self.trackers = list(trackers)

    def log_params(self, params):
        for t in self.trackers:
            t.log_params(params)

    def log_metrics(self, metrics, step):
        metrics = {k: float(v) for k, v in metrics.items()}
        if metrics:
            for t in self.trackers:
                t.log_metrics(metrics, step)

    def log_image(self, key, pixels, step):
        for t in self.trackers:
            t.log_image(key, pixels, step)

    def log_artifact(self, path):
        for t in self.trackers:
            t.log_artifact(Path(path))

    def close(self, failed: bool = False) -> None:
        error = None
        for t in self.trackers:
            try:
                t.close(failed)
            except Exception as exc:  # close the others, then raise the first failure
                error = error or exc
        self.trackers = []
        if error is not None:
            raise error


def open_trackers(names: Sequence[str], folder: str | os.PathLike, *, run_name: str = "",
                  start_step: int = 0) -> TrackerGroup:
    """The trackers ``names`` (see :data:`TRACKERS`) of a run writing to ``folder``, starting at ``start_step``.

    Raises:
        ConfigError: an unknown tracker or a missing package (:func:`check_trackers`).
    """
    check_trackers(names)
    folder = Path(folder)
    opened: list[Tracker] = []
    try:
        for name in names:
            opened.append(BACKENDS[name](folder, run_name or folder.name, start_step))
    except BaseException:
        TrackerGroup(opened).close(failed=True)
        raise
    return TrackerGroup(opened)


class _quiet:
    """MLflow's warnings about its file store (in maintenance mode) and its info lines kept off the terminal."""

    def __enter__(self):
        self._warnings = warnings.catch_warnings()
        self._warnings.__enter__()
        warnings.simplefilter("ignore")
        self._logger = logging.getLogger("mlflow")
        self._level = self._logger.level
        self._logger.setLevel(logging.ERROR)
        return self

    def __exit__(self, *exc):
        self._logger.setLevel(self._level)
        self._warnings.__exit__(*exc)
        return False


__all__ = ["BACKENDS", "EXTRAS", "LOCATIONS", "CSVTracker", "MLflowTracker", "TensorBoardTracker", "Tracker",
           "TrackerGroup", "WandbTracker", "check_trackers", "flat_params", "open_trackers"]
