"""The evaluation protocol of dataset distillation (reference §2).

Train K freshly initialised networks from scratch on the synthetic set — SGD, momentum 0.9, weight
decay 5e-4, the architecture's default lr (0.01 for every registered model, as in the reference code)
or the set's learned lr, divided by 10 once at epoch E/2, mini-batches of 256, DSA augmentation of
every batch — then test each once on the real test set and report mean ± std.
No test-set selection: the accuracy reported is the one after the last epoch (learning curves, when
asked for, are recorded for plotting only).
A set stored with a ZCA whitening is trained on as it is and tested on the test set whitened
with that same ZCA (MTT/DATM/PAD on CIFAR).
These defaults are the protocol ``ours``, the same for every method; each method's paper protocol
(:mod:`datadistill.evaluation.paper`) gives other values to the same settings (K, epochs, batch, lr,
augmentation, DC's own included) and names itself in ``EvalSettings.protocol``.

Each network trains with :func:`datadistill.training.fit_network` and the settings' recipe
(:data:`EVAL_RECIPE` by default). The K networks of one architecture can be trained together
(``vectorise``, :mod:`datadistill.training.vmap`): each keeps its own initialisation, shuffling and DSA
draws, so the result equals the sequential loop's up to float rounding. Architectures with BatchNorm
and K = 1 use the sequential loop.

With ``parts`` (:class:`~datadistill.evaluation.parts.EvalParts`), each finished network's result is
recorded on disk as it finishes and a rerun trains only the missing networks (a vectorised batch is
trained again unless all its networks are recorded).
Progress is reported through callbacks (``progress`` after each network, ``on_epoch`` with an
:class:`EvalProgress` after each epoch); nothing here prints.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from datadistill.data import LabelledImages
from datadistill.errors import ConfigError
from datadistill.evaluation.parts import EvalParts
from datadistill.evaluation.progress import EvalProgress
from datadistill.io.synthetic_set import SyntheticSet
from datadistill.models import build_model, default_eval_lr
from datadistill.training import (Hooks, TrainRecipe, accuracy, can_vectorise, class_correct, fit_network,
                                  fit_networks_vectorised, holds_recipe, per_class_percent, recipe_settings_dict)
from datadistill.training.vmap import EpochHook

# accuracy, class_correct, train_network and fit_networks_vectorised are called through this module by
# evaluation/run.py (tests watch them here)
EVAL_RECIPE = TrainRecipe(epochs=300, lr=None, batch_size=256, momentum=0.9, weight_decay=5e-4, schedule="step_half",
                          augmentation="color_crop_cutout_scale_rotate")
"""The protocol's training (reference §2): SGD momentum 0.9, weight decay 5e-4, mini-batches of 256,
lr (unset: the architecture's default or the set's learned lr) divided by 10 at epoch E/2, DSA on
every batch, 300 epochs."""


@holds_recipe("epochs", "lr", "batch_size", "momentum", "weight_decay", "dsa_strategy")
@dataclass(frozen=True)
class EvalSettings:
    """Settings of the protocol.

    The training of each network is ``recipe`` (default :data:`EVAL_RECIPE`); its fields are also
    taken and read under their flat names (``EvalSettings(epochs=300, lr=0.01)``, ``settings.epochs``;
    ``dsa_strategy`` is ``recipe.augmentation``), see :func:`datadistill.training.holds_recipe`.

    Attributes:
        model: registered model name.
        num_eval: K, networks trained (≥ 1).
        recipe: the training of each network: E = ``epochs`` ≥ 1 passes over the synthetic set;
            ``lr`` the initial learning rate, None = the architecture's default
            (:func:`datadistill.models.default_eval_lr`), used unless the set carries a learned lr and
            ``use_learned_lr`` is set; ``batch_size``, ``momentum``, ``weight_decay``; the DSA
            strategy applied to every training batch (``"none"`` to disable); lr ÷ 10 at E/2.
        use_learned_lr: train with the set's learned lr when it has one (MTT family); False uses ``lr``.
        vectorise: train the K networks together with ``torch.vmap`` (when K ≥ 2 and the architecture
            has no BatchNorm); False always uses the sequential loop; None (default) = on CUDA only:
            on this project's 2-core CPU the vectorised loop was slower (0.90× at K = 5,
            docs/benchmarks.md, "Vectorised evaluation").
        curve_every: record train and test accuracy every this many epochs (and after the last) for
            learning curves; 0 = no curve. Costs one pass over the test set per point.
        model_args: keyword arguments of the model's builder, passed to
            :func:`datadistill.models.build_model` (e.g. ``{"width": 64, "norm": "none"}`` for the
            ConvNet, ``{"width": 256, "depth": 3}`` for the MLP); empty = the registered model as is.
            Stored as a plain dict copy; the default evaluation lr stays the one of ``model``.
        protocol: the name of the protocol these settings come from, recorded with the results:
            ``ours`` (this fixed protocol) or ``paper:<method>`` (a method's own,
            :mod:`datadistill.evaluation.paper`, which builds such settings).
    """

    model: str = "convnet"
    num_eval: int = 3
    recipe: TrainRecipe = EVAL_RECIPE
    use_learned_lr: bool = True
    vectorise: bool | None = None
    curve_every: int = 0
    model_args: dict[str, Any] = field(default_factory=dict, hash=False)
    protocol: str = "ours"

    def __post_init__(self) -> None:
        if not isinstance(self.model_args, Mapping) or not all(isinstance(k, str) for k in self.model_args):
            raise ConfigError(f"model_args = {self.model_args!r} is invalid: expected a mapping of builder "
                              "keyword names to values, e.g. {'width': 64}")
        object.__setattr__(self, "model_args", dict(self.model_args))  # frozen: a private copy
        if self.num_eval < 1:
            raise ConfigError(f"num_eval must be ≥ 1, got {self.num_eval}")
        if self.recipe.epochs < 1:
            raise ConfigError(f"eval_epochs must be ≥ 1, got {self.recipe.epochs}")
        if self.curve_every < 0:
            raise ConfigError(f"curve_every must be ≥ 0 (0 = no learning curve), got {self.curve_every}")

    @property
    def resolved_lr(self) -> float:
        """``lr``, or the architecture's default when unset."""
        return self.recipe.lr if self.recipe.lr is not None else default_eval_lr(self.model)

    def as_dict(self) -> dict[str, Any]:
        """The settings with the recipe's flat keys (``epochs``, ``lr``, …, ``dsa_strategy``); ``protocol``
        only when it is not ``ours`` (the keys and fingerprints of results recorded before it existed hold)."""
        out = recipe_settings_dict(self)
        if self.protocol == "ours":
            del out["protocol"]
        return out


@dataclass
class EvalResult:
    """Accuracies in percent on the real test set, one per trained network, and timing in seconds.

    Attributes:
        curves: one learning curve per network when ``curve_every`` > 0: ``{"epochs": [...],
            "train_accuracy": [...], "test_accuracy": [...], "seconds": [...]}`` (percent; seconds of
            training since the start, curve evaluations excluded).
        lr: the initial learning rate the networks trained with.
        vectorised: whether the K networks were trained together.
        train_seconds: wall time of training alone (no testing), all K networks.
        per_class_accuracies: per network, the test accuracy (percent) of each class (None for a
            class absent from the test set), index = label.
        protocol, batch_size, augmentation: the protocol's name (``ours`` or ``paper:<method>``), the
            mini-batch size and the augmentation (DSA or ``dc:…`` strategy) the networks trained with.
    """

    model: str
    accuracies: list[float]
    train_accuracies: list[float]
    seconds: float
    curves: list[dict] = field(default_factory=list)
    lr: float | None = None
    vectorised: bool = False
    train_seconds: float = 0.0
    epochs: int | None = None
    per_class_accuracies: list[list[float | None]] = field(default_factory=list)
    protocol: str | None = None
    batch_size: int | None = None
    augmentation: str | None = None

    @property
    def mean(self) -> float:
        return statistics.fmean(self.accuracies)

    @property
    def std(self) -> float:
        return statistics.pstdev(self.accuracies) if len(self.accuracies) > 1 else 0.0

    @property
    def balanced_accuracies(self) -> list[float]:
        """Per network, the mean of its per-class test accuracies (classes present in the test set):
        the accuracy a class-balanced test set would give (percent). Equals accuracy when the test
        set is balanced; the figure to read on imbalanced medical data such as MHIST."""
        return [statistics.fmean(a for a in row if a is not None) for row in self.per_class_accuracies]

    def per_class_mean(self) -> list[float | None]:
        """Mean over the networks of each class's test accuracy (percent)."""
        if not self.per_class_accuracies:
            return []
        cols = zip(*self.per_class_accuracies)
        return [None if any(a is None for a in col) else statistics.fmean(col) for col in cols]

    def as_dict(self) -> dict:
        train_std = statistics.pstdev(self.train_accuracies) if len(self.train_accuracies) > 1 else 0.0
        return {"model": self.model, "accuracy_mean": self.mean, "accuracy_std": self.std,
                "accuracies": self.accuracies, "train_accuracies": self.train_accuracies,
                "train_accuracy_mean": statistics.fmean(self.train_accuracies) if self.train_accuracies else None,
                "train_accuracy_std": train_std, "eval_seconds": self.seconds, "train_seconds": self.train_seconds,
                "epochs": self.epochs, "lr": self.lr, "vectorised": self.vectorised, "protocol": self.protocol,
                "batch_size": self.batch_size, "augmentation": self.augmentation, **self._balanced_dict()}

    def _balanced_dict(self) -> dict:
        if not self.per_class_accuracies:
            return {}
        bal = self.balanced_accuracies
        return {"balanced_accuracy_mean": statistics.fmean(bal),
                "balanced_accuracy_std": statistics.pstdev(bal) if len(bal) > 1 else 0.0,
                "balanced_accuracies": bal, "per_class_accuracy_mean": self.per_class_mean(),
                "per_class_accuracies": self.per_class_accuracies}


def _curve_epochs(settings: EvalSettings) -> set[int]:
    if not settings.curve_every:
        return set()
    epochs = settings.recipe.epochs
    return set(range(settings.curve_every, epochs + 1, settings.curve_every)) | {epochs}


def train_network(net: torch.nn.Module, images: torch.Tensor, targets: torch.Tensor, settings: EvalSettings,
                  lr: float, generator: torch.Generator, after_epoch: EpochHook | None = None, *,
                  on_batch: Callable[[torch.Tensor, torch.Tensor], None] | None = None) -> torch.nn.Module:
    """Train ``net`` in place on (images, targets) with ``settings.recipe`` at initial lr ``lr``
    (:func:`datadistill.training.fit_network`); returns ``net``.

    Args:
        images: (N, C, H, W) float32 normalised, on the network's device, or a real set read in
            batches (a streamed set: see :func:`datadistill.training.train_epoch`).
        targets: (N,) int64 labels, or (N, K) float32 soft-label logits (soft cross-entropy).
        settings: an :class:`EvalSettings`, or any settings with a ``recipe`` (its lr is replaced by ``lr``).
        lr: initial learning rate (divided by 10 at epoch E // 2 under the protocol's schedule).
        generator: CPU generator for shuffling and augmentation.
        after_epoch: called ``(epochs done, training seconds)`` after every epoch (learning curves);
            its own time is not counted.
        on_batch: called ``(indices, logits)`` after each mini-batch's forward pass, before the update.
    """
    hooks = Hooks(on_epoch_end=None if after_epoch is None else lambda state: after_epoch(state.epoch, state.seconds),
                  on_batch=None if on_batch is None else lambda state, idx, logits: on_batch(idx, logits))
    fit_network(net, (images, targets), dataclasses.replace(settings.recipe, lr=lr), generator, hooks)
    return net


def build_network(settings: EvalSettings, channels: int, num_classes: int, image_size: tuple[int, int]) -> nn.Module:
    """``settings.model`` built with ``settings.model_args``; a keyword its builder does not take is
    a ConfigError naming the model and the arguments."""
    try:
        return build_model(settings.model, channels, num_classes, image_size, **settings.model_args)
    except TypeError as exc:
        if not settings.model_args:
            raise
        raise ConfigError(f"model_args = {settings.model_args!r} are not accepted by model {settings.model!r} "
                          f"({exc})") from None


def evaluate_synthetic_set(syn: SyntheticSet, test: LabelledImages, settings: EvalSettings,
                           device: torch.device, seed: int = 0, progress=None,
                           on_model: Callable[[int, nn.Module], None] | None = None,
                           parts: EvalParts | None = None,
                           on_epoch: Callable[[EvalProgress], None] | None = None) -> EvalResult:
    """Train ``settings.num_eval`` networks on ``syn`` and test each on ``test``.

    Network k is initialised and trained with seed ``seed + k``, so results repeat exactly on the
    same machine and torch build (vectorised or not, up to float rounding between the two).

    When ``syn.zca`` is set, the set's images are in whitened space: networks are trained on them as
    they are (the train accuracy too), and the test images are whitened with ``syn.zca`` (once, on
    their own device) before testing. An unwhitened test set would give chance accuracy.

    Args:
        syn: the synthetic set (images normalised like ``test``, or in ``syn.zca``'s whitened space).
        test: the real test set, (N, C, H, W) float32 normalised (not whitened), labels (N,) int64.
        progress: optional callable ``(k, accuracy)`` after each network is tested (or reused).
        on_model: optional callable ``(k, trained network)`` (e.g. to save it); not called for a
            network reused from ``parts``.
        parts: where finished networks are recorded as they finish and reused from
            (:mod:`datadistill.evaluation.parts`): a rerun trains only the networks missing there and
            gives the same numbers (wall-clock seconds aside). None: nothing is stored.
        on_epoch: optional callable given an :class:`EvalProgress` after every epoch and when each
            network is tested or reused (progress displays). Counting the training accuracy reads
            the logits only: the results are the same with or without it.

    Under torchrun the K networks are spread over the ranks (:mod:`datadistill.evaluation.run`): rank
    0 records, saves and reports them, every rank returns the result, the same as one process's
    (sequential loop; vectorised, up to float rounding). ``seconds`` is the networks' compute time.

    Raises:
        ConfigError: the set's channels or image size differ from the test set's.
    """
    from datadistill.evaluation.run import EvalRun, run_evaluations

    return run_evaluations([EvalRun(syn, test, settings, device, seed, progress=progress, on_model=on_model,
                                    parts=parts, on_epoch=on_epoch)])[0]


__all__ = ["EVAL_RECIPE", "EvalResult", "EvalProgress", "EvalSettings", "accuracy", "build_network", "class_correct",
           "per_class_percent", "can_vectorise", "evaluate_synthetic_set", "fit_networks_vectorised", "train_network"]
