"""Class-incremental continual learning with a condensed memory (reference §6, the DM repository's
experiment): does a memory of synthetic images beat a memory of random real images?

Protocol (one call compares several memory methods on the same class orders and steps):

* **Class orders.** Order ``k`` (k = 0 … ``orders`` − 1) is the permutation of the dataset's
  classes drawn with seed ``k`` by NumPy's legacy generator (``RandomState(k).permutation``, the
  same draw as the DM repository's ``np.random.seed(k); np.random.permutation(num_classes)``).
  The order is cut into ``steps`` consecutive groups of ``num_classes / steps`` classes (``steps``
  must divide the class count: no class is dropped or left over).
* **Memory.** At step ``t`` each memory method condenses ``memory_ipc`` images per class of that
  step's classes **from that step's training images only**: a :class:`SplitDataset` holding just
  those classes (labels remapped to 0 … c−1 in the order's order, a :class:`DatasetSpec` with their
  names) goes through :func:`datadistill.api.distill` (no evaluation). The set's labels are mapped
  back to global class ids and appended to the method's memory; earlier steps' images are kept
  unchanged. Coreset methods (``random``, ``herding``, ``k_center``, ``el2n`` …) select real images;
  learning methods (``dm``, ``datadam``, ``dc``, ``dsa``, ``cafe`` …) learn them, by default from
  init ``real``.
* **Seeds.** Step ``t`` of order ``k`` condenses and evaluates with seed
  ``seed + k * steps + t`` for every method, so ``random``'s selection is exactly the initial set of
  the learning methods (init real draws the same images at the same seed), and every method's
  evaluation networks start from the same weights.
* **Evaluation.** After each step, ``num_eval`` fresh networks (``eval_model``) are trained from
  scratch on the whole memory under the evaluation protocol
  (:func:`datadistill.evaluation.evaluate_synthetic_set`: ``epochs`` epochs, SGD lr ``eval_lr``,
  DSA with the dataset's default strategy) and tested on the real test images of **all classes
  seen so far**. The networks have an output per class of the dataset and the labels stay global.
* **Parallelism.** Each (memory method, class order) pair is one task: its steps run in turn (the
  memory grows), the pairs are independent. With ``workers`` ≥ 2 they run in that many worker
  processes (:func:`datadistill.experiments.workers.run_tasks`); every pair seeds itself, so the results do
  not depend on ``workers``.
* **Report.** Accuracy on the seen classes (percent) after each step, per memory method: the mean
  over the orders of each order's mean over its networks, ± the population std over the orders;
  also the per-order values, the DM repository's pooled figure (all networks of all orders), the
  memory size (images) and the wall times (condensation, training). :func:`last_step_verdict` says
  whether the DM or DataDAM memory beats the random memory at the last step by more than the std
  over the orders.

Output folder (files written atomically; refreshed after every finished (memory method, class
order) pair, so an interrupted run keeps the pairs done, and a rerun into the same folder with the
same settings resumes: it computes only the missing pairs): ``continual.json`` (settings, class orders, per-method
per-order per-step records, summaries, verdict), ``continual.csv`` (one row per method, order and
step), ``continual.md`` (table: a row per method, a column per step, mean ± std; the verdict) and
``continual.png`` (accuracy against step, a line per method with a ± std band).

Not supported as memory methods: the trajectory-matching family (``mtt``, ``datm``, ``pad``), whose
expert trajectories would have to be trained on each step's classes, and a ``scores_file`` for
the difficulty coresets (it scores the whole training set; leave it unset and the scores are
computed on each step's data). Soft labels are hardened (argmax) and a learned lr is not used: the
memory is trained with ``eval_lr``. ZCA is not offered (one whitening per step would put the steps'
images in different spaces).

Units: accuracies in percent, times in wall-clock seconds, std the population std.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import statistics
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_type_hints

import numpy as np
import torch

from datadistill import api
from datadistill._version import __version__
from datadistill.config import STREAM_MODES, DistillConfig, check_fields, coerce, read_yaml_mapping
from datadistill.data import DatasetSpec, LabelledImages, SplitDataset, check_dataset_name, load_dataset
from datadistill.errors import ConfigError, error_context
from datadistill.evaluation import EvalSettings, evaluate_synthetic_set
from datadistill.io import SyntheticSet, atomic_write_bytes, atomic_write_text

FORMAT = "datadistill.continual"
FORMAT_VERSION = 1
BASELINE = "random"
FOCUS = ("dm", "datadam")
METHOD_SETTING_KEYS = ("iterations", "max_seconds", "batch_real", "lr_img", "momentum_img", "model", "init",
                       "dsa_strategy", "method_args")
CSV_COLUMNS = ("method", "order", "step", "classes", "seen_classes", "memory_images", "test_images", "seed",
               "iterations", "accuracy_mean", "accuracy_std", "accuracies", "condense_seconds", "train_seconds",
               "eval_seconds")

Progress = Callable[[str], None]


# -------------------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class ContinualSettings:
    """Everything a continual-learning run needs (validated on construction, before any data is read).

    Defaults follow reference §6 (the DM repository): 5 steps, class orders from seeds 0..4, the
    random / herding / DM / DataDAM memories, 3 evaluation networks × 1000 epochs at lr 0.01 with DSA.

    Attributes:
        dataset: registered dataset name (``mnist``, ``cifar100``, ``imagefolder:PATH`` …).
        steps: S, learning steps (≥ 1, a divisor of the class count: each step adds
            ``num_classes / S`` classes).
        memory_methods: registered method names compared on the same orders and steps (distinct;
            not the trajectory-matching family).
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
            (0 or 1 = in this process); results do not depend on it.
        out: output folder (None = write nothing). A folder holding a ``continual.json`` of the same
            settings is resumed: its finished (method, order) pairs are kept, not recomputed.

    Raises:
        ConfigError: the first invalid value, naming it and what is accepted; UnknownNameError
            (a ConfigError) for an unregistered method or model.
    """

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

    def __post_init__(self) -> None:
        hints = get_type_hints(type(self))
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None or f.name in ("memory_methods", "method_settings"):
                continue
            object.__setattr__(self, f.name, coerce(f.name, value, hints[f.name]))
        check_fields(self, [
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
        ])
        object.__setattr__(self, "memory_methods", _method_names(self.memory_methods))
        object.__setattr__(self, "method_settings", _method_settings(self.method_settings, self.memory_methods))
        from datadistill.augment import DSA
        from datadistill.models import MODELS

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


SETTING_KEYS = tuple(f.name for f in fields(ContinualSettings))


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


def _method_settings(value: Any, methods: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    from datadistill.methods import METHODS

    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"method_settings = {value!r} is invalid: expected a mapping of method name to "
                          f"settings, e.g. {{dm: {{iterations: 200}}}}")
    out: dict[str, dict[str, Any]] = {}
    for name, settings in value.items():
        with error_context("method_settings"):
            key = METHODS.get(str(name)).name
        if key not in methods:
            raise ConfigError(f"method_settings has settings for {name!r}, which memory_methods does not list "
                              f"({', '.join(methods)}): add it to memory_methods or remove its settings")
        if not isinstance(settings, Mapping):
            raise ConfigError(f"method_settings.{key} = {settings!r} is not a mapping of settings")
        unknown = [k for k in settings if k not in METHOD_SETTING_KEYS]
        if unknown:
            raise ConfigError(f"unknown setting {unknown[0]!r} in method_settings.{key}: expected one of "
                              f"{', '.join(METHOD_SETTING_KEYS)}")
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
    """Defaults ← ``source`` (a YAML file or a mapping of :class:`ContinualSettings` fields) ←
    ``overrides`` (None values ignored; ``method_settings`` merged per method, their
    ``method_args`` key by key).

    Raises:
        ConfigError: missing or invalid YAML file, an unknown key (lists the accepted ones), or any
            invalid setting (see :class:`ContinualSettings`).
    """
    if isinstance(source, ContinualSettings):
        values = source.as_dict()
    elif isinstance(source, Mapping):
        values = dict(source)
    elif source is not None:
        values = read_yaml_mapping(source)
    else:
        values = {}
    where = f" in {source}" if isinstance(source, (str, os.PathLike)) else ""
    for key in [*values, *overrides]:
        if key not in SETTING_KEYS:
            raise ConfigError(f"unknown setting {key!r}{where}: expected keys from {', '.join(SETTING_KEYS)}")
    for key, value in overrides.items():
        if value is None:
            continue
        if key == "method_settings" and isinstance(value, Mapping) and isinstance(values.get(key), Mapping):
            values[key] = _merge_method_settings(values[key], value)
        else:
            values[key] = value
    return ContinualSettings(**values)


def _merge_method_settings(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: dict(v) if isinstance(v, Mapping) else v for k, v in base.items()}
    for name, settings in extra.items():
        old = out.get(name)
        if isinstance(old, Mapping) and isinstance(settings, Mapping):
            args = {**(old.get("method_args") or {}), **(settings.get("method_args") or {})}
            out[name] = {**old, **settings, **({"method_args": args} if args else {})}
        else:
            out[name] = settings
    return out


# ----------------------------------------------------------------------------------- the protocol


def class_orders(num_classes: int, orders: int) -> list[list[int]]:
    """The class orders: order ``k`` is ``numpy.random.RandomState(k).permutation(num_classes)``
    (the DM repository's draw), for k = 0 … ``orders`` − 1. Pure: no global generator is touched.

    Returns:
        ``orders`` lists of the class ids 0 … num_classes − 1 (ints).
    """
    return [np.random.RandomState(k).permutation(num_classes).tolist() for k in range(orders)]


def step_classes(order: Sequence[int], steps: int) -> list[list[int]]:
    """``order`` cut into ``steps`` consecutive groups of equal size.

    Raises:
        ConfigError: ``steps`` < 1 or not a divisor of ``len(order)``.
    """
    n = len(order)
    if steps < 1 or n % steps:
        divisors = [d for d in range(1, n + 1) if n % d == 0]
        raise ConfigError(f"steps = {steps} is invalid: {n} classes cannot be split into {steps} equal steps; "
                          f"expected a divisor of {n}: {', '.join(map(str, divisors))}")
    size = n // steps
    return [list(order[i * size:(i + 1) * size]) for i in range(steps)]


def step_seed(seed: int, order: int, step: int, steps: int) -> int:
    """The seed of step ``step`` (0-based) of order ``order``: ``seed + order * steps + step`` (the
    same for every memory method; distinct for every (order, step) of a run)."""
    return seed + order * steps + step


def _indices_of(labels: torch.Tensor, classes: Sequence[int]) -> torch.Tensor:
    wanted = torch.tensor(list(classes), dtype=labels.dtype, device=labels.device)
    return torch.isin(labels, wanted).nonzero().flatten()


def _with_labels(images, indices: torch.Tensor, labels: torch.Tensor):
    """The images at ``indices`` (in memory or streamed) labelled ``labels``."""
    if isinstance(images, LabelledImages):
        return LabelledImages(images.take(indices), labels)
    subset = images.subset(indices)  # a new streamed set: set its labels (the decoded labels are unused)
    subset.labels = labels
    return subset


def class_subset(data: SplitDataset, classes: Sequence[int]) -> SplitDataset:
    """The dataset restricted to ``classes``, relabelled ``classes[j]`` → ``j``.

    Args:
        data: the whole dataset (in memory or streamed).
        classes: distinct global class ids; their order defines the local labels 0 … c − 1.

    Returns:
        A :class:`SplitDataset` whose spec has the names of ``classes`` (same name, shape, mean, std
        and DSA default) and whose train and test splits hold only those classes' images, in their
        original order, with local int64 labels.
    """
    classes = list(classes)
    local = torch.full((data.spec.num_classes,), -1, dtype=torch.int64)
    local[torch.tensor(classes)] = torch.arange(len(classes))
    spec = dataclasses.replace(data.spec, class_names=tuple(data.spec.class_names[c] for c in classes))
    splits = []
    for split in (data.train, data.test):
        idx = _indices_of(split.labels, classes)
        splits.append(_with_labels(split, idx.cpu(), local[split.labels[idx].cpu()]))
    return SplitDataset(spec, *splits)


def seen_test_subset(test, seen: Sequence[int]):
    """The test images of the classes ``seen`` with their global labels (a subset of ``test``)."""
    return test.subset(_indices_of(test.labels, seen).cpu())


def to_global(labels: torch.Tensor, classes: Sequence[int]) -> torch.Tensor:
    """Local labels (N,) int64 in 0 … c − 1 → the global ids ``classes[label]`` (N,) int64."""
    return torch.tensor(list(classes), dtype=torch.int64)[labels.cpu()]


def check_against_data(settings: ContinualSettings, data: SplitDataset) -> None:
    """The checks that need the dataset: ``steps`` divides the class count, ``memory_ipc`` fits the
    smallest class (every class is in some step of every order), and every class has test images.

    Raises:
        ConfigError: naming the value, the class and what is accepted.
    """
    spec = data.spec
    step_classes(list(range(spec.num_classes)), settings.steps)
    train = torch.bincount(data.train.labels.cpu(), minlength=spec.num_classes)[:spec.num_classes].tolist()
    smallest = min(range(spec.num_classes), key=lambda c: train[c])
    if settings.memory_ipc > train[smallest]:
        raise ConfigError(f"memory_ipc = {settings.memory_ipc} is invalid: expected 1 to {train[smallest]} (class "
                          f"{spec.class_names[smallest]!r} has {train[smallest]} training images, the fewest of "
                          f"{spec.name}; each step condenses from its own classes' images only)")
    test = torch.bincount(data.test.labels.cpu(), minlength=spec.num_classes)[:spec.num_classes].tolist()
    empty = [c for c in range(spec.num_classes) if test[c] == 0]
    if empty:
        raise ConfigError(f"class {spec.class_names[empty[0]]!r} of {spec.name} has no test image: the accuracy "
                          "on the seen classes would not cover it")


# ------------------------------------------------------------------------------------------ results


@dataclass(frozen=True)
class StepRecord:
    """One memory method after one step of one class order.

    Attributes:
        method: memory method name.
        order: class-order index k (drawn with seed k).
        step: 1-based step number.
        classes: the global class ids added at this step.
        seen_classes: every class seen so far (this step's included), in order.
        memory_images: images in the memory after this step.
        test_images: test images of the seen classes.
        seed: the condensation and evaluation seed of this (order, step).
        iterations: condensation steps run (0 for coreset methods).
        accuracies: test accuracy (%) on the seen classes of each evaluation network.
        condense_seconds: wall time of this step's condensation (:func:`datadistill.api.distill`).
        train_seconds: wall time of training the evaluation networks (no testing).
        eval_seconds: wall time of the evaluation (training and testing).
    """

    method: str
    order: int
    step: int
    classes: list[int]
    seen_classes: list[int]
    memory_images: int
    test_images: int
    seed: int
    iterations: int
    accuracies: list[float]
    condense_seconds: float
    train_seconds: float
    eval_seconds: float

    @property
    def accuracy_mean(self) -> float:
        return statistics.fmean(self.accuracies)

    @property
    def accuracy_std(self) -> float:
        return statistics.pstdev(self.accuracies)

    def as_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "accuracy_mean": self.accuracy_mean, "accuracy_std": self.accuracy_std}


def summarize(records: Sequence[StepRecord | Mapping[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Aggregate step records per method and step over the class orders.

    Args:
        records: :class:`StepRecord` objects (or their ``as_dict()``), any order.

    Returns:
        Per method (in first-seen order), one row per step (ascending): ``step``, ``classes_seen``,
        ``memory_images``, ``n_orders``, ``orders`` (order indices), ``order_accuracies`` (each
        order's mean over its networks, %), ``accuracy_mean`` / ``accuracy_std`` (mean and
        population std of ``order_accuracies``; std 0 for one order), ``pooled_mean`` /
        ``pooled_std`` (over every network of every order: the DM repository's figure),
        ``condense_seconds`` and ``train_seconds`` (means over the orders).
    """
    rows = [r.as_dict() if isinstance(r, StepRecord) else dict(r) for r in records]
    groups: dict[str, dict[int, list[dict[str, Any]]]] = {}
    for r in rows:
        groups.setdefault(r["method"], {}).setdefault(int(r["step"]), []).append(r)
    out: dict[str, list[dict[str, Any]]] = {}
    for method, by_step in groups.items():
        out[method] = []
        for step in sorted(by_step):
            members = sorted(by_step[step], key=lambda r: r["order"])
            means = [statistics.fmean(r["accuracies"]) for r in members]
            pooled = [a for r in members for a in r["accuracies"]]
            out[method].append({
                "step": step, "classes_seen": len(members[0]["seen_classes"]),
                "memory_images": members[0]["memory_images"], "n_orders": len(members),
                "orders": [r["order"] for r in members], "order_accuracies": means,
                "accuracy_mean": statistics.fmean(means), "accuracy_std": statistics.pstdev(means),
                "pooled_mean": statistics.fmean(pooled), "pooled_std": statistics.pstdev(pooled),
                "condense_seconds": statistics.fmean(r["condense_seconds"] for r in members),
                "train_seconds": statistics.fmean(r["train_seconds"] for r in members),
            })
    return out


def beats(mean: float, std: float, baseline_mean: float, baseline_std: float) -> bool:
    """True when ``mean`` exceeds ``baseline_mean`` by more than the larger of the two stds."""
    return mean - baseline_mean > max(std, baseline_std)


def _pretty(method: str) -> str:
    return {"dm": "DM", "datadam": "DataDAM", "random": "random", "dc": "DC", "dsa": "DSA", "cafe": "CAFE",
            "cafe_dsa": "CAFE+DSA"}.get(method, method)


def last_step_verdict(summary: Mapping[str, Sequence[Mapping[str, Any]]], baseline: str = BASELINE,
                      focus: Sequence[str] = FOCUS) -> dict[str, Any]:
    """Does a memory method beat the ``baseline`` memory at the last step by more than the std over
    the class orders? Pure: reads :func:`summarize`'s rows only.

    A method beats the baseline when its last-step mean exceeds the baseline's by more than the
    larger of the two stds over the orders (:func:`beats`). Only steps both methods reached count
    (the last step of the baseline's rows).

    Args:
        summary: per method, rows with ``step``, ``classes_seen``, ``n_orders``, ``accuracy_mean``,
            ``accuracy_std``.
        baseline: the reference memory (``random``: real images, the learning methods' start).
        focus: the methods the question is about (DM and DataDAM); the answer is about them, the
            other methods are compared too.

    Returns:
        ``{"baseline", "focus", "step", "classes_seen", "n_orders", "comparisons": [{"method",
        "mean", "std", "baseline_mean", "baseline_std", "margin", "threshold", "beats"}, …],
        "answer": True | False | None, "text": one paragraph of markdown}``; ``answer`` is None when
        the baseline or every focus method is missing.
    """
    names = " or ".join(f"the {_pretty(m)}" for m in focus) + " memory"
    result: dict[str, Any] = {"baseline": baseline, "focus": list(focus), "step": None, "classes_seen": None,
                              "n_orders": None, "comparisons": [], "answer": None}
    if not summary.get(baseline):
        result["text"] = (f"**Last-step verdict: not available** — the {baseline} memory was not run, so "
                          f"{names} cannot be compared with it (add {baseline} to memory_methods).")
        return result
    last = max(summary[baseline], key=lambda r: r["step"])
    result.update(step=last["step"], classes_seen=last.get("classes_seen"), n_orders=last.get("n_orders"))
    for method, rows in summary.items():
        if method == baseline:
            continue
        row = next((r for r in rows if r["step"] == last["step"]), None)
        if row is None:
            continue
        margin = row["accuracy_mean"] - last["accuracy_mean"]
        threshold = max(row["accuracy_std"], last["accuracy_std"])
        result["comparisons"].append({
            "method": method, "mean": row["accuracy_mean"], "std": row["accuracy_std"],
            "baseline_mean": last["accuracy_mean"], "baseline_std": last["accuracy_std"], "margin": margin,
            "threshold": threshold, "n_orders": row.get("n_orders"),
            "beats": beats(row["accuracy_mean"], row["accuracy_std"], last["accuracy_mean"], last["accuracy_std"])})
    focus_rows = [c for c in result["comparisons"] if c["method"] in focus]
    where = f"step {last['step']}" + (f", {last['classes_seen']} classes seen" if last.get("classes_seen") else "")
    if not focus_rows:
        result["text"] = (f"**Last-step verdict: not available** — neither {names.replace(' or ', ' nor ')} "
                          f"was run ({where}).")
        return result
    winners = [c["method"] for c in focus_rows if c["beats"]]
    result["answer"] = bool(winners)
    n = last.get("n_orders")
    over = f"the std over the {n} class order{'s' if n != 1 else ''}" if n else "the std over the class orders"
    ran = [c["method"] for c in focus_rows]
    if winners:
        head = (f"**Yes: the {' and the '.join(_pretty(m) for m in winners)} memory beats the {baseline} memory "
                f"at the last step ({where}) by more than {over}.**")
    elif len(ran) == 1:
        head = (f"**No: the {_pretty(ran[0])} memory does not beat the {baseline} memory at the last step "
                f"({where}) by more than {over}.**")
    else:
        head = (f"**No: neither the {' nor the '.join(_pretty(m) for m in ran)} memory beats the {baseline} memory "
                f"at the last step ({where}) by more than {over}.**")
    missing = [m for m in focus if m not in ran]
    if missing:
        head += f" ({', '.join(_pretty(m) for m in missing)} not run.)"
    lines = [head, "", f"A memory beats {baseline} when its mean exceeds {baseline}'s by more than the larger of "
                       "the two stds over the orders."]
    for c in result["comparisons"]:
        verdict = "beats" if c["beats"] else "does not beat"
        rel = "more" if c["beats"] else "not more"
        lines.append(f"- {_pretty(c['method'])}: {c['mean']:.2f} ± {c['std']:.2f} % against {baseline} "
                     f"{c['baseline_mean']:.2f} ± {c['baseline_std']:.2f} %: {c['margin']:+.2f} points, {rel} than "
                     f"{c['threshold']:.2f} → {verdict} {baseline}.")
    if n == 1:
        lines.append(f"- Caution: one class order, so the std over orders is 0 and any positive margin counts; "
                     "run more orders.")
    result["text"] = "\n".join(lines)
    return result


@dataclass
class ContinualResult:
    """What :func:`run_continual` returns.

    Attributes:
        settings: the validated settings (``dataset`` is the loaded dataset's name).
        spec: the dataset's spec.
        class_orders: the class orders run (order k drawn with seed k).
        records: one :class:`StepRecord` per method, order and step, in run order.
        out: the output folder (None when nothing was written).
    """

    settings: ContinualSettings
    spec: DatasetSpec
    class_orders: list[list[int]]
    records: list[StepRecord] = field(default_factory=list)
    out: Path | None = None

    @property
    def summary(self) -> dict[str, list[dict[str, Any]]]:
        """:func:`summarize` of the records."""
        return summarize(self.records)

    @property
    def verdict(self) -> dict[str, Any]:
        """:func:`last_step_verdict` of the summary."""
        return last_step_verdict(self.summary)

    def as_dict(self) -> dict[str, Any]:
        """The ``continual.json`` content: format, settings, dataset, class orders, per method its
        condensation config, per-order per-step records and summary; the last-step verdict."""
        s = self.settings
        orders_done = [k for k in range(len(self.class_orders))
                       if all(any(r.method == m and r.order == k and r.step == s.steps for r in self.records)
                              for m in s.memory_methods)]
        methods: dict[str, Any] = {}
        summary = self.summary
        for m in s.memory_methods:
            config = memory_config(s, m, seed=s.seed, dataset=self.spec.name).as_dict()
            config.pop("seed")
            methods[m] = {
                "config": config,
                "orders": [{"order": k, "class_order": order,
                            "steps": [r.as_dict() for r in self.records if r.method == m and r.order == k]}
                           for k, order in enumerate(self.class_orders)
                           if any(r.method == m and r.order == k for r in self.records)],
                "summary": summary.get(m, []),
            }
        return {
            "format": FORMAT, "format_version": FORMAT_VERSION, "package_version": __version__,
            "settings": {**s.as_dict(), "eval_model": s.resolved_eval_model,
                         "eval_lr": EvalSettings(model=s.resolved_eval_model, lr=s.eval_lr).resolved_lr,
                         "dsa_strategy": s.dsa_strategy or self.spec.dsa_strategy},
            "dataset": {"name": self.spec.name, "num_classes": self.spec.num_classes,
                        "class_names": list(self.spec.class_names)},
            "classes_per_step": self.spec.num_classes // s.steps,
            "class_orders": self.class_orders,
            "orders_done": len(orders_done), "complete": len(orders_done) == s.orders,
            "methods": methods,
            "last_step": last_step_verdict(summary),
        }


# ---------------------------------------------------------------------------------------- the run


def run_continual(config: str | os.PathLike | Mapping[str, Any] | ContinualSettings | None = None, *,
                  out: str | os.PathLike | None = None, dataset: str | None = None, steps: int | None = None,
                  memory_methods: Sequence[str] | str | None = None, memory_ipc: int | None = None,
                  orders: int | None = None, method_settings: Mapping[str, Mapping[str, Any]] | None = None,
                  model: str | None = None, eval_model: str | None = None, num_eval: int | None = None,
                  epochs: int | None = None, eval_lr: float | None = None, eval_batch: int | None = None,
                  dsa_strategy: str | None = None, seed: int | None = None, device: str | None = None,
                  data_root: str | None = None, image_size: int | None = None, stream: str | None = None,
                  num_workers: int | None = None, workers: int | None = None, data: SplitDataset | None = None,
                  progress: Progress | None = None) -> ContinualResult:
    """Class-incremental continual learning with condensed memories (``datadistill continual``):
    see the module docstring for the protocol.

    Settings are :class:`ContinualSettings` defaults ← ``config`` (a YAML file such as
    ``configs/continual/mnist_cpu.yaml``, a mapping, or settings) ← the keyword arguments that are
    not None (``method_settings`` merged per method). Every keyword argument is the
    :class:`ContinualSettings` field of the same name (defaults: mnist, 5 steps, memory methods
    random/herding/dm/datadam, memory IPC 10, 5 orders, convnet, 3 networks × 1000 epochs).

    Args:
        config: the settings file or mapping (None: defaults and keyword arguments only).
        out: output folder (overrides the config's ``out``); None and no ``out`` in the config:
            nothing is written.
        memory_methods: method names, or one comma-separated string (``"random,dm"``).
        method_settings: per method, condensation overrides (``iterations``, ``lr_img``,
            ``batch_real``, ``momentum_img``, ``max_seconds``, ``model``, ``init``, ``dsa_strategy``,
            ``method_args``), e.g. ``{"dm": {"iterations": 200}}``.
        data: an already loaded dataset (its spec names it; ``dataset``, ``data_root``,
            ``image_size``, ``stream`` and ``num_workers`` are then unused).
        progress: called with one line of text on resuming, and one per step of each (method, order)
            pair as the pair finishes.

    With ``workers`` ≥ 2, call it under an ``if __name__ == "__main__":`` guard (worker processes are
    spawned).

    Returns:
        The :class:`ContinualResult` (records, summary, verdict, output folder).

    Raises:
        ConfigError: an invalid setting — steps not dividing the class count, memory IPC < 1 or above
            the smallest class, orders < 1, a bad method setting, an output path that is a file —
            naming the value and what is accepted; UnknownNameError (a ConfigError) for an unknown
            dataset, method or model (the message lists the registered names). Nothing is written
            then, and nothing runs.
        DatasetNotFoundError: the dataset is not on disk.
        NonFiniteLossError: a condensation diverged (the files hold the orders finished before).
    """
    overrides = {"out": None if out is None else str(out), "dataset": dataset, "steps": steps, "memory_methods": memory_methods,
                 "memory_ipc": memory_ipc, "orders": orders, "method_settings": method_settings, "model": model,
                 "eval_model": eval_model, "num_eval": num_eval, "epochs": epochs, "eval_lr": eval_lr,
                 "eval_batch": eval_batch, "dsa_strategy": dsa_strategy, "seed": seed, "device": device,
                 "data_root": data_root, "image_size": image_size, "stream": stream, "num_workers": num_workers, "workers": workers}
    if data is not None:
        overrides["dataset"] = data.spec.name
    settings = load_continual_settings(config, **overrides)
    out_dir = Path(settings.out) if settings.out else None
    if out_dir is not None and out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"output path {out_dir} exists and is not a folder")
    from datadistill.runtime import select_device

    dev = select_device(settings.device)
    if data is None:
        check_dataset_name(settings.dataset)
        data = load_dataset(settings.dataset, settings.data_root, image_size=settings.image_size,
                            stream=settings.stream, num_workers=settings.num_workers)
    check_against_data(settings, data)
    spec = data.spec
    result = ContinualResult(settings, spec, class_orders(spec.num_classes, settings.orders), out=out_dir)
    notify = progress or (lambda line: None)
    pairs = [(k, method) for k in range(settings.orders) for method in settings.memory_methods]
    done = _finished_pairs(result, out_dir) if out_dir is not None else {}
    if done:
        notify(f"resuming {out_dir}: {len(done)} of {len(pairs)} (method, order) pairs already finished")
    todo = [pair for pair in pairs if pair not in done]
    tasks = [(memory_run, {"settings": settings, "data": data, "method": method, "order_index": k,
                           "order": result.class_orders[k], "device": str(dev)}) for k, method in todo]
    finished = dict(done)

    def ordered() -> list[StepRecord]:  # the finished pairs' records in (order, method, step) order
        return [r for pair in pairs if pair in finished for r in finished[pair]]

    def collect(i: int, records: list[StepRecord]) -> None:
        finished[todo[i]] = records
        for r in records:
            notify(f"{r.method} order {r.order} step {r.step}/{settings.steps}: {len(r.seen_classes)} classes seen, "
                   f"memory {r.memory_images} images, accuracy {r.accuracy_mean:.2f} ± {r.accuracy_std:.2f} % "
                   f"(condense {r.condense_seconds:.1f} s, train {r.train_seconds:.1f} s)")
        result.records = ordered()
        if out_dir is not None:
            write_outputs(result.as_dict(), out_dir)

    from datadistill.experiments.workers import run_tasks

    run_tasks(tasks, workers=settings.workers, progress=collect)
    result.records = ordered()
    if out_dir is not None and not todo:
        write_outputs(result.as_dict(), out_dir)
    return result


def memory_run(settings: ContinualSettings, data: SplitDataset, method: str, order_index: int,
               order: Sequence[int], device: str) -> list[StepRecord]:
    """Every step of one class order for one memory method (a worker task of :func:`run_continual`).

    Args:
        settings: the validated settings.
        data: the dataset (train and test splits, every class).
        method: the memory method.
        order_index: k, the class order's index (seeds ``seed + k * steps + t``).
        order: the class order (global class ids).
        device: where to condense and train (``cpu``, ``cuda:0`` …).

    Returns:
        One :class:`StepRecord` per step, in step order.
    """
    dev = torch.device(device)
    spec = data.spec
    evaluation = EvalSettings(model=settings.resolved_eval_model, num_eval=settings.num_eval, epochs=settings.epochs,
                              lr=settings.eval_lr, batch_size=settings.eval_batch,
                              dsa_strategy=settings.dsa_strategy or spec.dsa_strategy)
    groups = step_classes(order, settings.steps)
    images: list[torch.Tensor] = []
    labels: list[torch.Tensor] = []
    records = []
    for t, classes in enumerate(groups):
        seen = [c for g in groups[:t + 1] for c in g]
        s = step_seed(settings.seed, order_index, t, settings.steps)
        cfg = memory_config(settings, method, seed=s, dataset=spec.name)
        start = time.perf_counter()
        condensed = api.distill(cfg, dataset=class_subset(data, classes), evaluate=False)
        condense_seconds = time.perf_counter() - start
        syn = condensed.synthetic_set
        images.append(syn.images.detach().cpu())
        labels.append(to_global(syn.hard_labels, classes))
        mem = memory_set(spec, torch.cat(images), torch.cat(labels), method, settings.memory_ipc)
        test = seen_test_subset(data.test, seen)
        ev = evaluate_synthetic_set(mem, test, evaluation, dev, seed=s)
        records.append(StepRecord(method=method, order=order_index, step=t + 1, classes=list(classes),
                                  seen_classes=seen, memory_images=len(mem), test_images=len(test), seed=s,
                                  iterations=condensed.iterations_run, accuracies=list(ev.accuracies),
                                  condense_seconds=condense_seconds, train_seconds=ev.train_seconds,
                                  eval_seconds=ev.seconds))
    return records


#: settings a resumed folder may differ in: how the data is read and where, the worker count, and which
#: pairs are asked for (orders and methods may be added; each method's own settings are compared)
RESUME_INDEPENDENT = ("out", "workers", "num_workers", "data_root", "stream", "orders", "memory_methods",
                      "method_settings")


def _finished_pairs(result: ContinualResult, out_dir: Path) -> dict[tuple[int, str], list[StepRecord]]:
    """The (order, method) pairs whose every step is in ``out_dir/continual.json``, with their records.

    A folder is resumed when its file was written with the same settings, except those in
    :data:`RESUME_INDEPENDENT`: this run may add class orders and memory methods (a method in both must
    have the same condensation config), but may not drop any that the folder holds.

    Raises:
        ConfigError: the file is not a continual.json of this format, was written with other settings
            (naming them), or holds methods or orders this run would drop. Nothing runs then and the
            folder is left as it is.
    """
    path = out_dir / "continual.json"
    if not path.is_file():
        return {}
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
        ok = old.get("format") == FORMAT and old.get("format_version") == FORMAT_VERSION
    except (OSError, ValueError, AttributeError) as exc:
        raise ConfigError(f"cannot resume from {path}: {exc}; delete it or choose another --out") from exc
    if not ok:
        raise ConfigError(f"cannot resume from {path}: not a {FORMAT} file of format version {FORMAT_VERSION}; "
                          "delete it or choose another --out")
    fresh = result.as_dict()
    mine = {k: v for k, v in fresh["settings"].items() if k not in RESUME_INDEPENDENT}
    theirs = {k: v for k, v in old.get("settings", {}).items() if k not in RESUME_INDEPENDENT}
    differing = [f"{k} = {theirs.get(k)!r} there, {mine.get(k)!r} here" for k in sorted(set(mine) | set(theirs))
                 if mine.get(k) != theirs.get(k)]
    old_methods = old.get("methods", {})
    for m in sorted(set(old_methods) & set(fresh["methods"])):
        if old_methods[m].get("config") != fresh["methods"][m]["config"]:
            differing.append(f"the condensation config of {m!r}")
    old_orders = old.get("class_orders", [])
    if old_orders[:len(fresh["class_orders"])] != fresh["class_orders"][:len(old_orders)]:
        differing.append("class_orders")
    if differing:
        raise ConfigError(f"{path} holds a continual run with other settings ({'; '.join(differing)}): "
                          "choose another --out, or delete that folder to start afresh")
    dropped = [m for m in old_methods if m not in result.settings.memory_methods]
    if dropped or len(old_orders) > result.settings.orders:
        raise ConfigError(f"{path} holds results this run would drop (methods {dropped or 'none'}, "
                          f"{len(old_orders)} class orders against orders = {result.settings.orders} here): "
                          "include them, or choose another --out")
    names = {f.name for f in fields(StepRecord)}
    done = {}
    for method, entry in old_methods.items():
        for o in entry.get("orders", []):
            steps = o.get("steps", [])
            if len(steps) == result.settings.steps:
                done[(o["order"], method)] = [StepRecord(**{k: v for k, v in r.items() if k in names}) for r in steps]
    return done


def memory_set(spec: DatasetSpec, images: torch.Tensor, labels: torch.Tensor, method: str, ipc: int) -> SyntheticSet:
    """The memory as a :class:`SyntheticSet` over the whole dataset: images (N, C, H, W) float32
    normalised, global labels (N,) int64, and metadata with every class of ``spec`` (so the
    evaluation networks have an output per class)."""
    meta = {"dataset": spec.name, "channels": spec.channels, "image_size": list(spec.image_size),
            "class_names": list(spec.class_names), "num_classes": spec.num_classes, "mean": list(spec.mean),
            "std": list(spec.std), "method": method, "ipc": ipc, "continual_memory": True}
    return SyntheticSet(images, labels, None, metadata=meta)


# ------------------------------------------------------------------------------------------ files


def _records(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [r for m in report["methods"].values() for o in m["orders"] for r in o["steps"]]


def _csv_value(key: str, value: Any) -> str:
    if isinstance(value, list):
        return ";".join(f"{v:.4f}" if isinstance(v, float) else str(v) for v in value)
    if isinstance(value, float):
        return f"{value:.2f}" if key.endswith("seconds") else f"{value:.4f}"
    return str(value)


def render_csv(report: Mapping[str, Any]) -> str:
    """``continual.csv``: one row per method, order and step (columns :data:`CSV_COLUMNS`; lists
    joined with ``;``, accuracies in %, seconds)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in _records(report):
        writer.writerow([_csv_value(k, r[k]) for k in CSV_COLUMNS])
    return buf.getvalue()


def render_markdown(report: Mapping[str, Any]) -> str:
    """``continual.md`` from the ``continual.json`` content: the protocol in one paragraph, the
    accuracy table (a row per memory method, a column per step, ``mean ± std`` over the class
    orders), the last-step verdict, the per-order values at the last step, and memory sizes and
    wall times."""
    s = report["settings"]
    ds = report["dataset"]
    per_step = report["classes_per_step"]
    n_orders = report["orders_done"]
    methods = [m for m in s["memory_methods"] if report["methods"][m]["summary"]]
    steps = list(range(1, s["steps"] + 1))
    seeds = ", ".join(str(k) for k in range(s["orders"]))
    lines = [f"# Class-incremental continual learning: {ds['name']}", "",
             f"{s['steps']} steps of {per_step} classes; class order k = a permutation of the {ds['num_classes']} "
             f"classes drawn with seed k (seeds {seeds}). Memory: {s['memory_ipc']} images per class of each step's "
             f"classes, condensed from that step's training images only, kept for the later steps. After each step, "
             f"{s['num_eval']} fresh {s['eval_model']} network{'s' if s['num_eval'] > 1 else ''} × {s['epochs']} "
             f"epochs (lr {s['eval_lr']:g}, DSA {s['dsa_strategy']}) trained from scratch on the whole memory, "
             f"tested on the real test images of all classes seen so far. Cells: accuracy (%) on the seen classes, "
             f"mean ± std over the {n_orders} class order{'s' if n_orders != 1 else ''} (per order: the mean of its "
             f"networks; population std). Same seed for every method at a given order and step, so random is the "
             f"starting point of the learning methods (init real).", ""]
    if not report["complete"]:
        lines += [f"**Incomplete: {n_orders} of {s['orders']} class orders done** (the run is going on or was "
                  "interrupted).", ""]
    lines += ["| memory | " + " | ".join(f"step {t} ({t * per_step} cl.)" for t in steps) + " |",
              "|---|" + "---|" * len(steps)]
    for m in methods:
        by_step = {r["step"]: r for r in report["methods"][m]["summary"]}
        cells = [f"{by_step[t]['accuracy_mean']:.2f} ± {by_step[t]['accuracy_std']:.2f}" if t in by_step else "—"
                 for t in steps]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    lines += ["", "## Last step", "", report["last_step"]["text"], ""]
    if methods:
        done = sorted({o["order"] for m in methods for o in report["methods"][m]["orders"]
                       if any(r["step"] == s["steps"] for r in o["steps"])})
        lines += ["## Per class order, last step", "",
                  "| memory | " + " | ".join(f"order {k}" for k in done) + " |", "|---|" + "---|" * len(done)]
        for m in methods:
            last = {o["order"]: o["steps"][-1] for o in report["methods"][m]["orders"]
                    if o["steps"] and o["steps"][-1]["step"] == s["steps"]}
            lines.append(f"| {m} | " + " | ".join(f"{last[k]['accuracy_mean']:.2f}" if k in last else "—"
                                                   for k in done) + " |")
        lines += ["", "Class orders: " + "; ".join(f"{k}: {report['class_orders'][k]}" for k in done) + ".", ""]
        lines += ["## Memory and time", "",
                  "Memory images after each step; seconds are wall clock, means over the orders, summed over the "
                  "steps (condensation: `distill` on the step's classes; training: the evaluation networks).", "",
                  "| memory | images per step | condensation s | training s |", "|---|---|---|---|"]
        for m in methods:
            summary = report["methods"][m]["summary"]
            sizes = ", ".join(str(r["memory_images"]) for r in summary)
            lines.append(f"| {m} | {sizes} | {sum(r['condense_seconds'] for r in summary):.1f} | "
                         f"{sum(r['train_seconds'] for r in summary):.1f} |")
    return "\n".join(lines) + "\n"


def continual_figure(report: Mapping[str, Any]):
    """Accuracy on the seen classes against step, a line per memory method (mean over the orders)
    with a ± std band; x ticks ``step (classes seen)``. Returns a :class:`matplotlib.figure.Figure`
    (no pyplot; rendered with Agg)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from datadistill.io.plots import series_colours

    fig = Figure(figsize=(6.4, 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    steps = list(range(1, report["settings"]["steps"] + 1))
    methods = report["settings"]["memory_methods"]
    for m, colour in zip(methods, series_colours(len(methods))):
        rows = report["methods"][m]["summary"]
        if not rows:
            continue
        x = [r["step"] for r in rows]
        mean = [r["accuracy_mean"] for r in rows]
        std = [r["accuracy_std"] for r in rows]
        ax.plot(x, mean, color=colour, marker="o", lw=1.5, label=m)
        ax.fill_between(x, [a - b for a, b in zip(mean, std)], [a + b for a, b in zip(mean, std)], color=colour,
                        alpha=0.2, lw=0)
    per = report["classes_per_step"]
    ax.set_xticks(steps, [f"{t}\n({t * per})" for t in steps])
    ax.set_xlabel("step (classes seen)")
    ax.set_ylabel("test accuracy on seen classes (%)")
    ax.set_title(f"{report['dataset']['name']}: {report['settings']['memory_ipc']} images per class, "
                 f"{report['orders_done']} class order{'s' if report['orders_done'] != 1 else ''} (mean ± std)",
                 fontsize="medium")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small", title="memory")
    return fig


def write_outputs(report: Mapping[str, Any], out_dir: str | os.PathLike) -> list[Path]:
    """Write ``continual.json``, ``continual.csv``, ``continual.md`` and ``continual.png`` to
    ``out_dir`` (created if needed), each atomically. Returns the paths."""
    from datadistill.io.plots import png_bytes

    out = Path(out_dir)
    return [atomic_write_text(out / "continual.json", json.dumps(report, indent=2) + "\n"),
            atomic_write_text(out / "continual.csv", render_csv(report)),
            atomic_write_text(out / "continual.md", render_markdown(report)),
            atomic_write_bytes(out / "continual.png", png_bytes(continual_figure(report)))]


__all__ = ["ContinualResult", "ContinualSettings", "StepRecord", "beats", "check_against_data", "class_orders",
           "class_subset", "continual_figure", "last_step_verdict", "load_continual_settings", "memory_config",
           "memory_set", "render_csv", "render_markdown", "run_continual", "seen_test_subset", "step_classes",
           "step_seed", "summarize", "to_global", "write_outputs"]
