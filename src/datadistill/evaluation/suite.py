"""Cross-architecture evaluation of one synthetic set, set against whole-data baselines.

One :class:`EvalResult` per architecture under the same protocol (:mod:`.protocol`), each with its
training FLOPs (torch's counter, :mod:`.cost`), and — for every architecture that has a whole-data
baseline — the cost table of the seed reports: accuracy gap, training-time speedup, FLOPs ratio.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from datadistill.data import LabelledImages
from datadistill.evaluation.cost import forward_flops, training_flops_per_image
from datadistill.evaluation.parts import EvalParts
from datadistill.evaluation.progress import EvalProgress
from datadistill.evaluation.protocol import EvalResult, EvalSettings
from datadistill.evaluation.run import EvalRun, run_evaluations
from datadistill.io.synthetic_set import SyntheticSet
from datadistill.models import MODELS, build_model
from datadistill.training import num_classes


@dataclass
class CrossArchResult:
    """The evaluation of one synthetic set on several architectures.

    Attributes:
        results: one :class:`EvalResult` per architecture, in the order asked.
        forward_flops: per architecture, FLOPs of one forward pass of one image.
        train_flops: per architecture, FLOPs of training one network (per-image training FLOPs ×
            synthetic images × epochs).
        baselines: whole-data baseline results (``baseline.json`` contents) by model name.
    """

    results: list[EvalResult]
    forward_flops: dict[str, int] = field(default_factory=dict)
    train_flops: dict[str, int] = field(default_factory=dict)
    baselines: dict[str, dict] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)

    def rows(self) -> list[dict[str, Any]]:
        """One dict per architecture: :meth:`EvalResult.as_dict` plus ``forward_flops``, ``train_flops``
        and ``seconds_per_network`` (training seconds of one network; amortised when vectorised)."""
        return [{**r.as_dict(), "forward_flops": self.forward_flops.get(r.model),
                 "train_flops": self.train_flops.get(r.model),
                 "seconds_per_network": r.train_seconds / max(len(r.accuracies), 1)} for r in self.results]

    def cost(self) -> list[dict[str, Any]]:
        """The synthetic set against the whole-data baseline of the same architecture.

        ``accuracy_gap`` = baseline − synthetic (points); ``time_speedup`` = baseline training
        seconds ÷ one synthetic network's training seconds; ``flops_ratio`` = baseline training
        FLOPs ÷ one synthetic network's training FLOPs.
        """
        out = []
        for row in self.rows():
            base = self.baselines.get(row["model"])
            if base is None:
                continue
            seconds = row["seconds_per_network"]
            out.append({"model": row["model"], "synthetic_accuracy": row["accuracy_mean"],
                        "synthetic_accuracy_std": row["accuracy_std"], "baseline_accuracy": base["accuracy"],
                        "accuracy_gap": base["accuracy"] - row["accuracy_mean"],
                        "synthetic_seconds": seconds, "baseline_seconds": base["train_seconds"],
                        "time_speedup": base["train_seconds"] / seconds if seconds > 0 else None,
                        "synthetic_flops": row["train_flops"], "baseline_flops": base["train_flops"],
                        "flops_ratio": base["train_flops"] / row["train_flops"] if row["train_flops"] else None,
                        "baseline_epochs": base.get("epochs"), "synthetic_epochs": row["epochs"]})
        return out

    def as_dict(self) -> dict[str, Any]:
        """The ``evaluation.json`` content."""
        baseline = next(iter(self.baselines.values()), None) if len(self.baselines) == 1 else None
        return {**self.metadata, "rows": self.rows(), "baseline": baseline, "baselines": self.baselines,
                "cost": self.cost()}

    def curves(self, whole_data: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
        """The ``curves.json`` content: the first architecture with curves as ``synthetic`` (and every
        architecture under ``models``), and the matching baseline's per-epoch curve as ``whole_data``."""
        with_curves = [r for r in self.results if r.curves]
        if not with_curves:
            return None
        models = {r.model: {"model": r.model, "epochs": r.curves[0]["epochs"], "runs": r.curves} for r in with_curves}
        first = with_curves[0].model
        base = self.baselines.get(first)
        whole = None
        if base and base.get("curve"):
            c = base["curve"]
            whole = {"model": first, "epochs": c["epochs"], "runs": [
                {"train_accuracy": c["train_accuracy"], "test_accuracy": c["test_accuracy"], "seconds": c["seconds"]}]}
        return {"synthetic": models[first], "whole_data": whole, "models": models}


def evaluate_architectures(syn: SyntheticSet, test: LabelledImages, models: Sequence[str], settings: EvalSettings,
                           device: torch.device, *, seed: int = 0, baselines: Sequence[Mapping[str, Any]] = (),
                           progress: Callable[[str, int, float], None] | None = None,
                           on_model: Callable[[str, int, nn.Module], None] | None = None,
                           parts: EvalParts | None = None,
                           on_epoch: Callable[[EvalProgress], None] | None = None,
                           settings_for: Callable[[str], EvalSettings] | None = None) -> CrossArchResult:
    """Evaluate ``syn`` on every architecture in ``models`` with the same protocol ``settings``.

    Under torchrun the networks of every architecture are spread over the ranks together
    (:mod:`datadistill.evaluation.run`); every rank returns the result, rank 0 saves, records and
    reports.

    The evaluation lr is, per architecture: the set's learned lr (MTT family) unless
    ``settings.use_learned_lr`` is False, else ``settings.lr`` when given, else the architecture's
    default (:func:`datadistill.models.default_eval_lr`).

    Args:
        syn, test, device, seed: as in :func:`~datadistill.evaluation.protocol.evaluate_synthetic_set`.
        models: registered model names (at least one; duplicates are evaluated once).
        settings: the protocol; its ``model`` field is replaced per architecture.
        baselines: ``baseline.json`` contents (``datadistill baseline``); each is matched to the
            architecture of the same name for the cost table. Its dataset must be the set's.
        progress: called ``(model, k, accuracy)`` after each network.
        on_model: called ``(model, k, trained network)`` (e.g. ``--save-models``); not for a network
            reused from ``parts``.
        parts: where each architecture's finished networks are recorded and reused from
            (``<model>.json`` in its folder, :mod:`datadistill.evaluation.parts`).
        on_epoch: given an :class:`~datadistill.evaluation.progress.EvalProgress` (its ``model`` says
            which architecture) after every epoch and as each network finishes.
        settings_for: the settings of each architecture, when they depend on it (a paper protocol:
            DC's augmentation for ConvNet-BN, :mod:`datadistill.evaluation.paper`); default:
            ``settings`` with its ``model`` replaced.

    Raises:
        UnknownNameError: an unknown model.
        ConfigError: no model, or a baseline of another dataset.
    """
    from datadistill.errors import ConfigError

    names = list(dict.fromkeys(m.strip() for m in models if m.strip()))
    if not names:
        raise ConfigError("models is empty: expected at least one model name (see `datadistill list`)")
    for name in names:
        MODELS.get(name)
    dataset = syn.metadata.get("dataset")
    by_model: dict[str, dict] = {}
    for base in baselines:
        if dataset and base.get("dataset") != dataset:
            raise ConfigError(f"baseline of dataset {base.get('dataset')!r} cannot be compared with a "
                              f"{dataset!r} synthetic set: expected a baseline of {dataset!r}")
        by_model[base["model"]] = dict(base)
    shape = tuple(syn.images.shape[1:])
    out = CrossArchResult([], baselines=by_model,
                          metadata={"dataset": dataset, "method": syn.metadata.get("method"),
                                    "class_names": list(syn.metadata.get("class_names") or []),
                                    "ipc": syn.metadata.get("ipc"), "images": len(syn), "num_eval": settings.num_eval,
                                    "protocol": settings.protocol})
    per_model = {name: settings_for(name) if settings_for is not None else dataclasses.replace(settings, model=name)
                 for name in names}
    runs = [EvalRun(syn, test, per_model[name], device, seed,
                    progress=(lambda k, a, n=name: progress(n, k, a)) if progress else None,
                    on_model=(lambda k, net, n=name: on_model(n, k, net)) if on_model else None, parts=parts,
                    on_epoch=on_epoch) for name in names]
    out.results.extend(run_evaluations(runs))  # every architecture's networks spread over the ranks at once
    for name in names:
        probe = build_model(name, shape[0], num_classes(syn.labels, syn.metadata), shape[1:])
        out.forward_flops[name] = forward_flops(probe, shape)
        out.train_flops[name] = training_flops_per_image(probe, shape) * len(syn) * per_model[name].recipe.epochs
    return out


__all__ = ["CrossArchResult", "evaluate_architectures"]
