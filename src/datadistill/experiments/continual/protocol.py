"""The continual-learning protocol: class orders, steps, seeds, the per-step condensation and the
evaluation on the seen classes (:func:`memory_run`, one (memory method, class order) pair).

Labels: a step condenses from :func:`datadistill.data.class_subset` of its classes (local labels
0 … c − 1); the condensed labels go back to global class ids (:func:`datadistill.data.to_global`)
before they join the memory, so the memory and the evaluation use global ids throughout.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np
import torch

from datadistill import api
from datadistill.data import DatasetSpec, SplitDataset, class_indices, class_subset, to_global
from datadistill.errors import ConfigError
from datadistill.evaluation import EvalSettings, evaluate_synthetic_set
from datadistill.experiments.continual.results import StepRecord
from datadistill.experiments.continual.settings import ContinualSettings, memory_config
from datadistill.experiments.seeds import offset_seed
from datadistill.io import SyntheticSet, synthetic_set_metadata


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
    """The seed of step ``step`` (0-based) of order ``order``: ``seed + order * steps + step``
    (:func:`datadistill.experiments.seeds.offset_seed`; the same for every memory method, distinct
    for every (order, step) of a run)."""
    return offset_seed(seed, order * steps + step)


def seen_test_subset(test, seen: Sequence[int]):
    """The test images of the classes ``seen`` with their global labels (a subset of ``test``)."""
    return test.subset(class_indices(test.labels, seen).cpu())


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


def memory_set(spec: DatasetSpec, images: torch.Tensor, labels: torch.Tensor, method: str, ipc: int) -> SyntheticSet:
    """The memory as a :class:`SyntheticSet` over the whole dataset: images (N, C, H, W) float32
    normalised, global labels (N,) int64, and metadata with every class of ``spec`` (so the
    evaluation networks have an output per class) and ``continual_memory: true``."""
    meta = synthetic_set_metadata(spec, method=method, ipc=ipc, continual_memory=True)
    return SyntheticSet(images, labels, None, metadata=meta)


def memory_run(settings: ContinualSettings, data: SplitDataset, method: str, order_index: int,
               order: Sequence[int], device: str,
               on_step: Callable[[StepRecord], None] | None = None) -> list[StepRecord]:
    """Every step of one class order for one memory method (a worker task of
    :func:`~datadistill.experiments.continual.run_continual`).

    Args:
        settings: the validated settings.
        data: the dataset (train and test splits, every class).
        method: the memory method.
        order_index: k, the class order's index (seeds ``seed + k * steps + t``).
        order: the class order (global class ids).
        device: where to condense and train (``cpu``, ``cuda:0`` …).
        on_step: called with each step's record as the step ends (in this process only).

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
        if on_step is not None:
            on_step(records[-1])
    return records


__all__ = ["check_against_data", "class_orders", "memory_run", "memory_set", "seen_test_subset", "step_classes",
           "step_seed"]
