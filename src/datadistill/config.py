"""Run configuration: dataclass defaults, overridden by a YAML file, overridden by CLI flags.

YAML keys are the field names of :class:`DistillConfig` (the CLI flags with ``_`` for ``-``);
method-specific settings go under ``method_args`` (e.g. ``attention_power: 4``).
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from typing import Any, ClassVar

from datadistill.errors import ConfigError
from datadistill.settings import (STREAM_MODES, SettingsBase, check_fields, coerce, read_yaml_mapping,
                                  refuse_unknown)

TRACKERS = ("tensorboard", "mlflow", "wandb", "csv")
"""The experiment trackers of ``log_to`` (``--log-to``)."""

EVAL_PROTOCOLS = ("ours", "paper")
"""The evaluation protocols of ``eval_protocol`` (``--eval-protocol``): ``ours``, one fixed protocol
for every method (``num_eval``, ``eval_epochs``, ``eval_lr``, ``eval_batch``, ``dsa_strategy``); ``paper``,
the method's own (:mod:`datadistill.evaluation.paper`)."""


@dataclass
class DistillConfig(SettingsBase):
    """Everything a ``distill`` run needs. Defaults are the no-argument main job: DataDAM on MNIST at
    IPC 10, sized to finish distillation and evaluation within 15 minutes on a 2-core CPU.

    Attributes:
        dataset: registered dataset name.
        method: registered method name.
        ipc: images per class (≥ 1).
        init: ``real``, ``noise``, a coreset (``random``, ``herding``, ``k_center``) or, for datm and
            pad, ``samples_predicted_correctly``.
        iterations: optimisation steps of the synthetic set (≥ 0); for the bi-level methods (DC, DSA,
            CAFE) one step is one outer iteration with a fresh network.
        max_seconds: wall-clock budget of the optimisation loop in seconds: the run stops after the
            first step that ends past it (the set's metadata records the iterations reached). None = no limit.
        batch_real: real images per class per step; None = the method's default.
        lr_img: learning rate of the synthetic images (η_S); None = the method's default.
        momentum_img: SGD momentum of the synthetic images; None = the method's default.
        model: registered model used for distillation (and, by default, evaluation).
        dsa_strategy: DSA strategy; None = the dataset's default; ``none`` disables DSA.
        num_eval: networks trained in the evaluation (K).
        eval_epochs: epochs of each evaluation network (E).
        eval_lr: initial learning rate of the evaluation networks.
        eval_batch: mini-batch size of the evaluation.
        eval_model: model for evaluation; None = ``model``.
        eval_init: also evaluate the initial set under the same protocol (reported as ``init_accuracy_*``).
        eval_protocol: :data:`EVAL_PROTOCOLS`: ``ours`` evaluates with ``num_eval``, ``eval_epochs``,
            ``eval_lr``, ``eval_batch`` and ``dsa_strategy``; ``paper`` with the method's paper protocol
            (:mod:`datadistill.evaluation.paper`: networks, epochs, batch, lr, augmentation), which
            then must not be given (``num_eval`` 0 still skips the evaluation). Left out of
            :meth:`as_dict` when ``ours``, so that the fingerprints of runs written before it existed hold.
        select_every: keep the best iterate: every this many iterations (and at the end) train
            ``select_num_eval`` networks for ``select_epochs`` epochs on the set and score them on a
            validation split of ``val_size`` images carved from the training set (never the test
            set); those images are then not used for distillation. 0 turns selection off.
        val_size, select_num_eval, select_epochs: see ``select_every``.
        seed: seeds sampling, network initialisation and evaluation.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        zca_eps: ZCA-whiten the real set (kornia's ZCA with this eps, fitted on the pixels of the
            training images with the mean/std normalisation undone, as MTT/DATM/PAD) before
            distilling; the ZCA is saved in the synthetic-set file and applied to the test set at
            evaluation. None = no ZCA (MTT uses 0.1 on CIFAR).
        data_root: where datasets live; None = ``$DATADISTILL_DATA`` or the user cache.
        image_size: side in pixels the images are resized to (square, e.g. 32, 64, 128 or 224 for
            MHIST); None = the dataset's own size.
        stream: ``auto`` (file-based datasets whose training set would exceed 1 GiB as float32 are
            decoded on demand through a DataLoader with workers; everything else is held in memory),
            ``on`` (always stream file-based datasets) or ``off`` (always load into memory).
        num_workers: DataLoader worker processes that decode a streamed dataset (0 = in the main process).
        method_args: method-specific settings (``datadistill list`` shows them per method).
        checkpoint_every: write the run's checkpoint (``OUT/checkpoint``) every this many iterations
            (0 = by time only).
        checkpoint_seconds: and at most this many seconds apart (0 = by iteration count only; both 0:
            no periodic checkpoint, only on SIGINT/SIGTERM).
        keep_checkpoint: keep ``OUT/checkpoint`` once the final files are written (it is removed by default).
        log_to: experiment trackers the run also logs to (:data:`TRACKERS`: ``tensorboard``,
            ``mlflow``, ``wandb``, ``csv``; :mod:`datadistill.io.tracking`); a single name is a list of one.
        log_grid_every: log the synthetic set's grid to the trackers every this many iterations (0 =
            only the initial and the final grid).

    The three checkpoint fields and the two tracker fields control how a run is carried out, not its
    result: they are left out of :meth:`as_dict` (the configuration recorded with the set,
    ``config.yaml`` and a grid cell's settings) and so of every fingerprint.
    """

    dataset: str = "mnist"
    method: str = "datadam"
    ipc: int = 10
    init: str = "real"
    iterations: int = 1000
    max_seconds: float | None = None
    batch_real: int | None = None
    lr_img: float | None = None
    momentum_img: float | None = None
    model: str = "convnet"
    dsa_strategy: str | None = None
    num_eval: int = 3
    eval_epochs: int = 300
    eval_lr: float = 0.01
    eval_batch: int = 256
    eval_model: str | None = None
    eval_init: bool = False
    eval_protocol: str = "ours"
    select_every: int = 0
    val_size: int = 5000
    select_num_eval: int = 1
    select_epochs: int = 100
    seed: int = 0
    device: str = "auto"
    zca_eps: float | None = None
    data_root: str | None = None
    image_size: int | None = None
    stream: str = "auto"
    num_workers: int = 2
    method_args: dict[str, Any] = field(default_factory=dict)
    checkpoint_every: int = 0
    checkpoint_seconds: float = 60.0
    keep_checkpoint: bool = False
    log_to: list[str] = field(default_factory=list)
    log_grid_every: int = 100

    nested_fields: ClassVar[tuple[str, ...]] = ("method_args",)
    run_control_fields: ClassVar[tuple[str, ...]] = ("checkpoint_every", "checkpoint_seconds", "keep_checkpoint",
                                                     "log_to", "log_grid_every")

    def checks(self) -> list[tuple[str, bool, str]]:
        return [
            ("ipc", self.ipc >= 1, "an integer ≥ 1"),
            ("iterations", self.iterations >= 0, "an integer ≥ 0"),
            ("max_seconds", self.max_seconds is None or self.max_seconds > 0, "a number of seconds > 0 (or unset)"),
            ("batch_real", self.batch_real is None or self.batch_real >= 1, "an integer ≥ 1 (or unset: the method's default)"),
            ("lr_img", self.lr_img is None or (self.lr_img > 0 and math.isfinite(self.lr_img)),
             "a finite number > 0 (or unset: the method's default)"),
            ("momentum_img", self.momentum_img is None or 0 <= self.momentum_img < 1,
             "a number in [0, 1) (or unset: the method's default)"),
            ("num_eval", self.num_eval >= 0, "an integer ≥ 0 (0 skips evaluation)"),
            ("eval_epochs", self.eval_epochs >= 1, "an integer ≥ 1"),
            ("eval_lr", self.eval_lr > 0 and math.isfinite(self.eval_lr), "a finite number > 0"),
            ("eval_batch", self.eval_batch >= 1, "an integer ≥ 1"),
            ("select_every", self.select_every >= 0, "an integer ≥ 0 (0 = no selection)"),
            ("val_size", self.val_size >= 1, "an integer ≥ 1"),
            ("select_num_eval", self.select_num_eval >= 1, "an integer ≥ 1"),
            ("select_epochs", self.select_epochs >= 1, "an integer ≥ 1"),
            ("zca_eps", self.zca_eps is None or (self.zca_eps > 0 and math.isfinite(self.zca_eps)),
             "a finite number > 0 (or unset: no ZCA)"),
            ("image_size", self.image_size is None or self.image_size >= 8, "an integer ≥ 8 (or unset: the dataset's size)"),
            ("stream", self.stream in STREAM_MODES, f"one of {', '.join(STREAM_MODES)}"),
            ("num_workers", self.num_workers >= 0, "an integer ≥ 0"),
            ("checkpoint_every", self.checkpoint_every >= 0, "an integer ≥ 0 (0 = by time only)"),
            ("checkpoint_seconds", 0 <= self.checkpoint_seconds < math.inf,
             "a finite number of seconds ≥ 0 (0 = by iteration count only)"),
            ("log_grid_every", self.log_grid_every >= 0, "an integer ≥ 0 (0 = the initial and final grids only)"),
        ]

    def validate(self) -> None:
        if self.eval_protocol not in EVAL_PROTOCOLS:
            raise ConfigError(f"eval_protocol = {self.eval_protocol!r} is invalid: expected one of "
                              f"{', '.join(EVAL_PROTOCOLS)}")
        if self.eval_protocol == "paper":
            defaults = {f.name: f.default for f in dataclasses.fields(self)}
            check_eval_protocol_keys({k: getattr(self, k) for k in PAPER_PROTOCOL_FIELDS
                                      if getattr(self, k) != defaults[k]} | {"eval_protocol": "paper"})
        names = [self.log_to] if isinstance(self.log_to, str) else self.log_to
        if not isinstance(names, (list, tuple)) or any(name not in TRACKERS for name in names):
            raise ConfigError(f"log_to = {self.log_to!r} is invalid: expected a list of {', '.join(TRACKERS)}")
        self.log_to = list(dict.fromkeys(names))

    def as_dict(self) -> dict[str, Any]:
        """The settings that define the result (the checkpoint and tracker fields left out, and
        ``eval_protocol`` when it is ``ours``: class docstring)."""
        return {k: v for k, v in dataclasses.asdict(self).items()
                if k not in self.run_control_fields and not (k == "eval_protocol" and v == "ours")}

    @classmethod
    def source_values(cls, source: Any) -> tuple[dict[str, Any], str]:
        if isinstance(source, cls):  # building from a config keeps its checkpoint settings too
            return dataclasses.asdict(source), ""
        return super().source_values(source)

    @classmethod
    def build(cls, source: Any = None, overrides: dict[str, Any] | None = None) -> "DistillConfig":
        """:meth:`SettingsBase.build`; with ``eval_protocol: paper``, an evaluation setting given in
        ``overrides`` (the flags) is refused even at its default value (:func:`check_eval_protocol_keys`):
        ``--num-eval 3`` would otherwise be silently replaced by the paper's count. (A file's values
        are refused only when they differ from the defaults, so that a run's own ``config.yaml`` reruns.)"""
        config = super().build(source, overrides)
        if config.eval_protocol == "paper":
            check_eval_protocol_keys({**{k: v for k, v in (overrides or {}).items() if v is not None},
                                      "eval_protocol": "paper"})
        return config

    @property
    def resolved_eval_model(self) -> str:
        return self.eval_model or self.model


PAPER_PROTOCOL_FIELDS = ("num_eval", "eval_epochs", "eval_lr", "eval_batch")
"""The settings of ``eval_protocol: ours`` that a paper protocol sets itself."""


def check_eval_protocol_keys(values: dict[str, Any]) -> None:
    """Refuse settings ``values`` (a run's, as given) that combine ``eval_protocol: paper`` with one of
    :data:`PAPER_PROTOCOL_FIELDS` (``num_eval`` 0 is accepted: it skips the evaluation).

    Raises:
        ConfigError: naming the field, its value and what to do instead.
    """
    if values.get("eval_protocol") != "paper":
        return
    for name in PAPER_PROTOCOL_FIELDS:
        if values.get(name) is not None and not (name == "num_eval" and values[name] == 0):
            raise ConfigError(f"{name} = {values[name]!r} cannot be combined with eval_protocol = paper, which takes "
                              f"it from the method's paper protocol: leave {name} out, or use eval_protocol: ours "
                              "(num_eval 0 still skips the evaluation)")


def load_yaml_config(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML mapping of :class:`DistillConfig` fields.

    Raises:
        ConfigError: missing file, invalid YAML, not a mapping, or an unknown key (lists the valid ones).
    """
    data = read_yaml_mapping(path)
    DistillConfig.check_keys(data, f" in {path}")
    return data


def build_config(file: str | os.PathLike | None = None, overrides: dict[str, Any] | None = None) -> DistillConfig:
    """Defaults ← YAML ``file`` ← ``overrides`` (None values are ignored; ``method_args`` are merged)."""
    return DistillConfig.build(file, overrides)


__all__ = ["EVAL_PROTOCOLS", "PAPER_PROTOCOL_FIELDS", "STREAM_MODES", "TRACKERS", "DistillConfig", "build_config",
           "check_eval_protocol_keys", "check_fields", "coerce",
           "load_yaml_config", "read_yaml_mapping", "refuse_unknown"]
