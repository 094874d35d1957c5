"""The results of a continual-learning run: one :class:`StepRecord` per (memory method, class order,
step), their aggregation over the orders (:func:`summarize`) and :class:`ContinualResult`, whose
:meth:`~ContinualResult.as_dict` is the content of ``continual.json``.

Units: accuracies in percent, times in wall-clock seconds, std the population std.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datadistill._version import __version__
from datadistill.data import DatasetSpec
from datadistill.evaluation import EvalSettings
from datadistill.experiments.continual.settings import ContinualSettings, memory_config
from datadistill.experiments.continual.verdict import last_step_verdict

FORMAT = "datadistill.continual"
FORMAT_VERSION = 1


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


@dataclass
class ContinualResult:
    """What :func:`~datadistill.experiments.continual.run_continual` returns.

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


__all__ = ["FORMAT", "FORMAT_VERSION", "ContinualResult", "StepRecord", "summarize"]
