"""The settings of a continual-learning run (:class:`ContinualSettings`) and the distillation config of
one memory method's condensation (:func:`memory_config`).

Settings are built as every settings class is (:class:`datadistill.settings.SettingsBase`): defaults
← a YAML file or mapping ← overrides (None ignored; ``method_settings`` merged per method, their
``method_args`` key by key), scalar values coerced from YAML or CLI strings, unknown keys refused
with the accepted ones and a "did you mean", every value checked on construction, before any data
is read.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from datadistill.config import DistillConfig
from datadistill.errors import ConfigError, error_context
from datadistill.settings import STREAM_MODES, SettingsBase, field_names

METHOD_SETTING_KEYS = ("iterations", "max_seconds", "batch_real", "lr_img", "momentum_img", "model", "init",
                       "dsa_strategy", "method_args")


@dataclass(frozen=True)
class ContinualSettings(SettingsBase):
    """Everything a continual-learning run needs (validated on construction, before any data is read).

    Defaults follow reference §6 (the DM repository): 5 steps, class orders from seeds 0..4, the
    random / herding / DM / DataDAM memories, 3 evaluation networks × 1000 epochs at lr 0.01 with DSA.
    Build one with :meth:`build` (defaults ← YAML file or mapping ← overrides), as the CLI does.

    Attributes:
        dataset: registered dataset name (``mnist``, ``cifar100``, ``imagefolder:PATH`` …).
        steps: S, learning steps (≥ 1, a divisor of the class count: each step adds
            ``num_classes / S`` classes).
        memory_methods: registered method names compared on the same orders and steps (distinct;
            not the trajectory-matching family); a comma-separated string is split.
        memory_ipc: K, memory images per class (≥ 1, ≤ the smallest class's training images).
        orders: class orders (≥ 1); order k is drawn with seed k.
        method_settings: per memory method, :class:`~datadistill.config.DistillConfig` overrides for
            its condensation: ``iterations``, ``max_seconds``, ``batch_real``, ``lr_img``,
            ``momentum_img``, ``model``, ``init``, ``dsa_strategy`` and ``method_args`` (e.g.
            ``{"dm": {"iterations": 200}, "herding": {"model": "convnet_w32"}}``). Unset values are
            DistillConfig's defaults (1000 iterations, init real, the method's own lr and batch).
        model: model the memory methods distil with (a method setting may override it).
        eval_model: model trained on the memory; None = ``model``.
        num_eval: networks trained after each step (≥ 1).
        epochs: epochs of each (≥ 1).
        eval_lr: their initial learning rate; None = the architecture's default (0.01 for ConvNet).
        eval_batch: their mini-batch size (≥ 1).
        dsa_strategy: DSA strategy of the evaluation and (unless a method setting says otherwise)
            of the condensation; None = the dataset's default; ``none`` disables DSA.
        seed: base seed (step t of order k uses ``seed + k * steps + t``).
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        data_root, image_size, stream, num_workers: how the dataset is read
            (see :class:`~datadistill.config.DistillConfig`).
        workers: worker processes, each running one (memory method, class order) pair at a time
            (0 or 1 = in this process); results do not depend on it. Ignored under torchrun, where
            each rank is one worker (:mod:`datadistill.experiments.workers`).
        out: output folder (None = write nothing; a path that exists and is not a folder is refused).
            A folder holding a ``continual.json`` of the same settings is resumed: its finished
            (method, order) pairs are kept, not recomputed.

    Raises:
        ConfigError: the first invalid value, naming it and what is accepted; UnknownNameError
            (a ConfigError) for an unregistered method or model.
    """

    nested_fields: ClassVar[tuple[str, ...]] = ("method_settings",)
    output_fields: ClassVar[tuple[str, ...]] = ("out",)

    dataset: str = "mnist"
    steps: int = 5
    memory_methods: tuple[str, ...] = ("random", "herding", "dm", "datadam")
    memory_ipc: int = 10
    orders: int = 5
    method_settings: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    model: str = "convnet"
    eval_model: str | None = None
    num_eval: int = 3
    epochs: int = 1000
    eval_lr: float | None = None
    eval_batch: int = 256
    dsa_strategy: str | None = None
    seed: int = 0
    device: str = "auto"
    data_root: str | None = None
    image_size: int | None = None
    stream: str = "auto"
    num_workers: int = 2
    workers: int = 1
    out: str | None = None

    def checks(self) -> list[tuple[str, bool, str]]:
        return [
            ("method_settings", isinstance(self.method_settings, Mapping),
             "a mapping of method name to settings, e.g. {dm: {iterations: 200}}"),
            ("steps", self.steps >= 1, "an integer ≥ 1 that divides the number of classes"),
            ("memory_ipc", self.memory_ipc >= 1, "an integer ≥ 1 (memory images per class)"),
            ("orders", self.orders >= 1, "an integer ≥ 1 (class orders, drawn with seeds 0, 1, …)"),
            ("num_eval", self.num_eval >= 1, "an integer ≥ 1"),
            ("epochs", self.epochs >= 1, "an integer ≥ 1"),
            ("eval_lr", self.eval_lr is None or (self.eval_lr > 0 and math.isfinite(self.eval_lr)),
             "a finite number > 0 (or unset: the architecture's default)"),
            ("eval_batch", self.eval_batch >= 1, "an integer ≥ 1"),
            ("image_size", self.image_size is None or self.image_size >= 8, "an integer ≥ 8 (or unset)"),
            ("stream", self.stream in STREAM_MODES, f"one of {', '.join(STREAM_MODES)}"),
            ("num_workers", self.num_workers >= 0, "an integer ≥ 0"),
            ("workers", self.workers >= 0, "an integer ≥ 0 (0 or 1 = in this process)"),
        ]

    def validate(self) -> None:
        from datadistill.augment import DSA
        from datadistill.models import MODELS

        object.__setattr__(self, "memory_methods", _method_names(self.memory_methods))
        object.__setattr__(self, "method_settings", _method_settings(self.method_settings, self.memory_methods))
        MODELS.get(self.model)
        MODELS.get(self.resolved_eval_model)
        if self.dsa_strategy is not None:
            DSA(self.dsa_strategy)
        for method in self.memory_methods:
            with error_context(f"method_settings.{method}"):
                check_memory_config(memory_config(self, method, seed=self.seed, dataset=self.dataset))

    @property
    def resolved_eval_model(self) -> str:
        return self.eval_model or self.model

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON values (lists for tuples)."""
        d = dataclasses.asdict(self)
        d["memory_methods"] = list(self.memory_methods)
        d["method_settings"] = json.loads(json.dumps(self.method_settings))
        return d


SETTING_KEYS = field_names(ContinualSettings)


def _method_names(value: Any) -> tuple[str, ...]:
    from datadistill.methods import METHODS

    raw = [v.strip() for v in value.split(",")] if isinstance(value, str) else value
    if not isinstance(raw, Sequence) or isinstance(raw, str) or not raw:
        raise ConfigError(f"memory_methods = {value!r} is invalid: expected a non-empty list of method names "
                          f"(registered: {', '.join(METHODS.names())})")
    names = []
    for v in raw:
        if not isinstance(v, str) or not v:
            raise ConfigError(f"memory_methods = {value!r}: {v!r} is not a method name")
        with error_context("memory_methods"):
            cls = METHODS.get(v)
        if cls.needs_experts:
            raise ConfigError(f"memory_methods: {cls.name!r} is not supported: it needs expert trajectories "
                              "trained on each step's classes, which continual learning does not train; use one of "
                              + ", ".join(n for n in METHODS.names() if not METHODS.get(n).needs_experts))
        names.append(cls.name)
    dup = [n for n, k in Counter(names).items() if k > 1]
    if dup:
        raise ConfigError(f"memory_methods = {value!r} lists {dup[0]!r} twice: expected distinct methods")
    return tuple(names)


def _method_settings(value: Mapping[str, Any], methods: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    from datadistill.methods import METHODS
    from datadistill.settings import refuse_unknown

    out: dict[str, dict[str, Any]] = {}
    for name, settings in value.items():
        with error_context("method_settings"):
            key = METHODS.get(str(name)).name
        if key not in methods:
            raise ConfigError(f"method_settings has settings for {name!r}, which memory_methods does not list "
                              f"({', '.join(methods)}): add it to memory_methods or remove its settings")
        if not isinstance(settings, Mapping):
            raise ConfigError(f"method_settings.{key} = {settings!r} is not a mapping of settings")
        refuse_unknown(settings, METHOD_SETTING_KEYS, where=f" in method_settings.{key}")
        args = settings.get("method_args")
        if args is not None and not isinstance(args, Mapping):
            raise ConfigError(f"method_settings.{key}.method_args = {args!r} is not a mapping of settings")
        if args and args.get("scores_file"):
            raise ConfigError(f"method_settings.{key}.method_args.scores_file = {args['scores_file']!r} is not "
                              "accepted: a scores file scores the whole training set, a continual step condenses "
                              "from its own classes only; leave it unset (scores are computed on each step's data)")
        out[key] = {**dict(settings), **({"method_args": dict(args)} if args is not None else {})}
    return out


def memory_config(settings: ContinualSettings, method: str, *, seed: int, dataset: str) -> DistillConfig:
    """The :class:`~datadistill.config.DistillConfig` of one condensation: ``method`` at
    ``settings.memory_ipc`` with ``seed``, the shared ``model`` and ``dsa_strategy``, then the
    method's ``method_settings``; no evaluation (``num_eval`` 0).

    Raises:
        ConfigError: an invalid method setting (type or range).
    """
    overrides = dict(settings.method_settings.get(method, {}))
    method_args = dict(overrides.pop("method_args", None) or {})
    values = {"model": settings.model, "dsa_strategy": settings.dsa_strategy, **overrides}
    return DistillConfig(dataset=dataset, method=method, ipc=settings.memory_ipc, seed=seed, num_eval=0,
                         eval_model=settings.resolved_eval_model, device=settings.device, method_args=method_args,
                         **values)


def check_memory_config(config: DistillConfig) -> None:
    """Everything about one memory method's config that can be checked without data: its model, its
    method arguments and (learning methods) its init.

    Raises:
        ConfigError / UnknownNameError: naming the setting and what is accepted.
    """
    from datadistill.methods import METHODS
    from datadistill.models import MODELS

    cls = METHODS.get(config.method)
    MODELS.get(config.model)
    cls.config_from_run(config)
    cls.check_init(cls.resolve_run_config(config).init)


def load_continual_settings(source: str | os.PathLike | Mapping[str, Any] | ContinualSettings | None = None,
                            **overrides: Any) -> ContinualSettings:
    """``ContinualSettings.build(source, overrides)``: defaults ← ``source`` (a YAML file, a mapping of
    :class:`ContinualSettings` fields, or settings) ← ``overrides`` (None values ignored;
    ``method_settings`` merged per method, their ``method_args`` key by key).

    Raises:
        ConfigError: missing or invalid YAML file, an unknown key (lists the accepted ones), or any
            invalid setting (see :class:`ContinualSettings`).
    """
    return ContinualSettings.build(source, overrides)


__all__ = ["METHOD_SETTING_KEYS", "SETTING_KEYS", "ContinualSettings", "check_memory_config",
           "load_continual_settings", "memory_config"]
