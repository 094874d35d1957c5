"""An evaluation as units of work (issue #20): the K networks of one architecture — and those of every
architecture of a cross-architecture table — are spread over the processes of a run by
:func:`datadistill.units.run_units` and their results gathered on rank 0.

A unit is one network (the sequential loop) or one batch of networks trained together under
``torch.vmap``. Network k is built and trained from seed ``seed + k`` alone, so a unit's result does
not depend on which process trains it: with the sequential loop the numbers equal one process's bit
for bit on the same machine and torch build. Vectorised, one process trains its K networks as one
batch and W processes as W batches (:func:`datadistill.distributed.balanced_blocks`): equal up to
float rounding (a vmap batch of another size).

Rank 0 records each finished network in the evaluation's parts (resuming), saves it (``on_model``:
a network trained on another rank travels as its state dict) and reports progress; every rank
returns the same :class:`~datadistill.evaluation.protocol.EvalResult`. Used through
:func:`~datadistill.evaluation.protocol.evaluate_synthetic_set` and
:func:`~datadistill.evaluation.suite.evaluate_architectures`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from datadistill.data import LabelledImages
from datadistill.distributed import balanced_blocks, broadcast_object, world
from datadistill.errors import ConfigError
from datadistill.evaluation import protocol
from datadistill.evaluation.parts import EvalParts, evaluation_key
from datadistill.evaluation.progress import EpochWatch, EvalProgress
from datadistill.io.synthetic_set import SyntheticSet
from datadistill.runtime import make_generator
from datadistill.training import can_vectorise, num_classes, per_class_percent
from datadistill.units import run_units


class EvalRun:
    """One evaluation (``settings.num_eval`` networks of ``settings.model`` on ``syn``, tested on
    ``test``) split into units; arguments as
    :func:`~datadistill.evaluation.protocol.evaluate_synthetic_set`'s, which documents them.

    Building it checks the set, builds the K networks (seeded ``seed + k``), decides whether they
    train together and reads the parts on rank 0 (their finished networks shared with every rank).

    Raises:
        ConfigError: the set's channels or image size differ from the test set's.
    """

    def __init__(self, syn: SyntheticSet, test: LabelledImages, settings: protocol.EvalSettings,
                 device: torch.device, seed: int = 0, progress: Callable[[int, float], None] | None = None,
                 on_model: Callable[[int, nn.Module], None] | None = None, parts: EvalParts | None = None,
                 on_epoch: Callable[[EvalProgress], None] | None = None) -> None:
        if tuple(syn.images.shape[1:]) != tuple(test.image_shape):
            raise ConfigError(f"synthetic images {tuple(syn.images.shape[1:])} do not match the test images "
                              f"{tuple(test.image_shape)} (channels, height, width)")
        start = time.perf_counter()
        self.settings, self.device, self.seed, self.progress, self.on_model = settings, device, seed, progress, on_model
        self.classes = classes = num_classes(syn.labels, syn.metadata)
        raw_test = test
        if syn.zca is not None:
            if test.streamed:
                raise ConfigError("a ZCA-whitened set cannot be tested on a streamed test set: load it with stream off")
            test = LabelledImages(syn.zca.whiten(test.images), test.labels)
        self.test = test
        self.lr = syn.learned_lr if syn.learned_lr is not None and settings.use_learned_lr else settings.resolved_lr
        self.images, self.targets = syn.images.to(device), syn.labels.to(device)
        self.train_set = LabelledImages(self.images, syn.hard_labels.to(device))
        self.nets = []
        for k in range(settings.num_eval):
            torch.manual_seed(seed + k)
            self.nets.append(protocol.build_network(settings, self.images.shape[1], classes,
                                             tuple(self.images.shape[2:])).to(device))
        self.generators = [make_generator(seed + k) for k in range(settings.num_eval)]
        self.curve_at = protocol._curve_epochs(settings)
        self.watch = EpochWatch(on_epoch, settings, len(self.nets), self.train_set) if on_epoch is not None else None
        want = settings.vectorise if settings.vectorise is not None else torch.device(device).type == "cuda"
        self.vectorised = want and can_vectorise(self.nets)
        w = world()
        k_all = len(self.nets)
        batches = [b for b in balanced_blocks([1.0] * k_all, w.world_size) if b] if self.vectorised else []
        self.record, done = None, {}
        if parts is not None:
            layout = [len(b) for b in batches] if len(batches) > 1 else self.vectorised  # a vmap batch's size counts
            if w.is_main:
                self.record, done = parts.open(settings.model, evaluation_key(
                    syn, raw_test, settings.as_dict(), lr=self.lr, seed=seed, classes=classes, device=device,
                    vectorised=layout))
            done = broadcast_object(done)
            if self.vectorised and len(done) < k_all:
                done = {}  # the vectorised batch is the unit of resumption
        self.done: dict[int, dict[str, Any]] = done
        if self.vectorised:
            self.units = [] if len(done) == k_all else batches
        else:
            self.units = [[k] for k in range(k_all) if k not in done]
        self.carry_state = on_model is not None and not w.is_main  # rank 0 saves the networks others trained
        self.setup_seconds = time.perf_counter() - start

    def report_reused(self) -> None:
        """Report the networks reused from the parts (rank 0)."""
        for k in sorted(self.done):
            part = self.done[k]
            if self.watch is not None:
                self.watch.finished(k, part["train_accuracy"], part["accuracy"], reused=True)
            if self.progress:
                self.progress(k, part["accuracy"])

    def run_unit(self, u: int) -> dict[int, dict[str, Any]]:
        """Train and test the networks of unit ``u``; returns network k → its part (as recorded in
        :class:`EvalParts`, plus its ``state`` dict when rank 0 must save a network trained here)."""
        members, nets, device = self.units[u], self.nets, self.device
        curves = {j: {"epochs": [], "train_accuracy": [], "test_accuracy": [], "seconds": []} for j in members}
        curve_seconds = dict.fromkeys(members, 0.0)  # time testing for the curves, excluded from train_seconds

        def record(group: list[int]):
            def hook(epoch: int, seconds: float) -> None:
                if epoch in self.curve_at:
                    for j in group:
                        t = time.perf_counter()
                        c = curves[j]
                        c["epochs"].append(epoch)
                        c["seconds"].append(seconds)
                        c["train_accuracy"].append(protocol.accuracy(nets[j], self.train_set, device))
                        c["test_accuracy"].append(protocol.accuracy(nets[j], self.test, device))
                        curve_seconds[j] += time.perf_counter() - t
            return hook if self.curve_at else None

        watch = self.watch

        def after(group: list[int]):  # the curve's hook and the progress hook, in that order
            hooks = [h for h in (record(group), watch and watch.epoch_hook(group)) if h is not None]
            return (lambda epoch, seconds: [h(epoch, seconds) for h in hooks]) if hooks else None

        train_share = dict.fromkeys(members, 0.0)
        if self.vectorised:
            t0 = time.perf_counter()
            protocol.fit_networks_vectorised([nets[j] for j in members], self.images, self.targets,
                                    dataclasses.replace(self.settings.recipe, lr=self.lr),
                                    [self.generators[j] for j in members], record(members),
                                    on_batch=watch and (lambda i, idx, logits: watch.count(members[i], idx, logits)),
                                    on_epoch=watch and watch.epoch_hook(members))
            train_share = dict.fromkeys(members, (time.perf_counter() - t0) / len(members))
        out = {}
        for k in members:
            t_net = time.perf_counter() - train_share[k]
            if not self.vectorised:
                t0 = time.perf_counter()
                batch = {} if watch is None else {"on_batch": lambda idx, logits, j=k: watch.count(j, idx, logits)}
                protocol.train_network(nets[k], self.images, self.targets, self.settings, self.lr, self.generators[k],
                                       after([k]), **batch)
                train_share[k] = time.perf_counter() - t0
            train_acc = protocol.accuracy(nets[k], self.train_set, device)
            correct, count = protocol.class_correct(nets[k], self.test, device, self.classes)
            out[k] = {"accuracy": 100.0 * int(correct.sum()) / max(int(count.sum()), 1), "train_accuracy": train_acc,
                      "per_class": per_class_percent(correct, count), "curve": curves[k] if self.curve_at else None,
                      "train_seconds": train_share[k] - curve_seconds[k], "seconds": time.perf_counter() - t_net}
            if self.carry_state:
                out[k]["state"] = {n: t.detach().cpu() for n, t in nets[k].state_dict().items()}
        return out

    def finish(self, result: dict[int, dict[str, Any]]) -> None:
        """Rank 0, as unit's ``result`` arrives: save (``on_model``), record, report each network."""
        for k in sorted(result):
            part = result[k]
            state = part.pop("state", None)
            if self.on_model is not None:
                if state is not None:
                    self.nets[k].load_state_dict(state)
                    self.nets[k].eval()
                self.on_model(k, self.nets[k])
            if self.record is not None:
                EvalParts.finish(self.record, k, part)
            if self.watch is not None:
                self.watch.finished(k, part["train_accuracy"], part["accuracy"])
            if self.progress:
                self.progress(k, part["accuracy"])

    def result(self, results: Sequence[dict[int, dict[str, Any]]]) -> protocol.EvalResult:
        """The :class:`EvalResult` from the reused networks and the units' ``results``. ``seconds``:
        the setup plus every network's seconds (training and testing), i.e. compute time, which is
        the wall time in one process."""
        by_k = dict(self.done)
        for r in results:
            by_k.update(r)
        parts = [by_k[k] for k in range(len(self.nets))]
        empty = {"epochs": [], "train_accuracy": [], "test_accuracy": [], "seconds": []}
        return protocol.EvalResult(
            self.settings.model, [p["accuracy"] for p in parts], [p["train_accuracy"] for p in parts],
            self.setup_seconds + sum(p["seconds"] for p in parts),
            curves=[p["curve"] or dict(empty) for p in parts] if self.curve_at else [], lr=self.lr,
            vectorised=self.vectorised, train_seconds=sum(p["train_seconds"] for p in parts),
            epochs=self.settings.recipe.epochs, per_class_accuracies=[p["per_class"] for p in parts],
            protocol=self.settings.protocol, batch_size=self.settings.recipe.batch_size,
            augmentation=self.settings.recipe.augmentation)


def run_evaluations(runs: Sequence[EvalRun]) -> list[protocol.EvalResult]:
    """Train the units of every run, spread over the processes (:func:`datadistill.units.run_units`;
    in order in one process), and return one result per run, on every rank."""
    index = [(r, u) for r in runs for u in range(len(r.units))]
    if world().is_main:
        for r in runs:
            r.report_reused()
    results = run_units(len(index), lambda i: index[i][0].run_unit(index[i][1]),
                        on_result=lambda i, value: index[i][0].finish(value))
    return [r.result([res for (owner, _), res in zip(index, results) if owner is r]) for r in runs]


__all__ = ["EvalRun", "run_evaluations"]
