"""The whole-data baseline: one network trained on the entire real training set, with its wall time
and FLOPs, to set a synthetic set's accuracy and cost against (the seed reports' tables).

Training follows the evaluation protocol's optimiser (SGD, momentum 0.9, weight decay 5e-4, the
architecture's default lr divided by 10 at epoch E/2, mini-batches of 256); augmentation is off by
default (``dsa_strategy="none"``): with 60,000 real images it is not needed to reach the published
whole-data accuracy, and it would be counted in neither FLOPs nor the synthetic runs' cost.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import asdict, dataclass, field

import torch

from datadistill.data import SplitDataset
from datadistill.errors import ConfigError
from datadistill.evaluation.cost import forward_flops, training_flops_per_image
from datadistill.evaluation.protocol import EVAL_RECIPE
from datadistill.models import build_model, default_eval_lr
from datadistill.runtime import make_generator
from datadistill.training import FitState, Hooks, TrainRecipe, accuracy, fit_network, holds_recipe, recipe_settings_dict

log = logging.getLogger("datadistill")

BASELINE_RECIPE = dataclasses.replace(EVAL_RECIPE, epochs=6, augmentation="none")
"""The protocol's optimiser and schedule for 6 epochs, without augmentation."""


@holds_recipe("epochs", "lr", "batch_size", "momentum", "weight_decay", "dsa_strategy")
@dataclass(frozen=True)
class BaselineSettings:
    """Settings of the whole-data run; the flat keys ``epochs``, ``lr``, ``batch_size``,
    ``momentum``, ``weight_decay``, ``dsa_strategy`` are the recipe's (:func:`datadistill.training.holds_recipe`).

    Attributes:
        model: registered model name.
        recipe: the training (default :data:`BASELINE_RECIPE`): ``epochs`` ≥ 1 passes over the
            training set; ``lr`` None = the architecture's default evaluation lr, ÷ 10 at half the
            epochs; SGD ``batch_size``, ``momentum``, ``weight_decay``; DSA per batch, ``"none"``
            (default) to train on the images as they are.
        seed: initialisation, shuffling and augmentation seed.
        curve: test on the test set after every epoch for the learning curve (not used to select).
    """

    model: str = "convnet"
    recipe: TrainRecipe = BASELINE_RECIPE
    seed: int = 0
    curve: bool = True

    def __post_init__(self) -> None:
        if self.recipe.epochs < 1:
            raise ConfigError(f"epochs = {self.recipe.epochs!r} is invalid: expected an integer ≥ 1")

    def as_dict(self) -> dict:
        """The settings with the recipe's flat keys."""
        return recipe_settings_dict(self)


@dataclass
class BaselineResult:
    """Accuracies in percent, seconds wall-clock, FLOPs as counts (see :mod:`datadistill.evaluation.cost`).

    Attributes:
        accuracy: test accuracy after the last epoch.
        train_accuracy: accuracy on the training batches of the last epoch, measured while training
            (augmented batches when DSA is on).
        train_seconds: wall time of training alone (curve testing excluded).
        forward_flops: FLOPs of one forward pass of one image.
        train_flops: total training FLOPs (training FLOPs per image × images seen).
        curve: ``{"epochs", "train_accuracy", "test_accuracy", "seconds"}`` per epoch (empty without ``curve``).
    """

    dataset: str
    model: str
    epochs: int
    accuracy: float
    train_accuracy: float
    train_seconds: float
    forward_flops: int
    train_flops: int
    train_images: int
    settings: dict = field(default_factory=dict)
    curve: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


def train_whole_data(data: SplitDataset, settings: BaselineSettings, device: torch.device,
                     progress=None, on_model=None) -> BaselineResult:
    """Train one ``settings.model`` on all of ``data.train`` and test it on ``data.test``.

    Args:
        data: the real dataset, images (N, C, H, W) float32 normalised, labels (N,) int64.
        progress: optional callable ``(epoch, test accuracy or None, train accuracy)`` after each epoch.
        on_model: optional callable given the trained network (e.g. to save it: the teacher of the
            DD-Ranking scores' soft-label mode).

    Raises:
        UnknownNameError: unknown model.
    """
    spec = data.spec
    shape = tuple(data.train.image_shape)
    torch.manual_seed(settings.seed)
    net = build_model(settings.model, spec.channels, spec.num_classes, shape[1:]).to(device)
    recipe = settings.recipe.resolved(lr=default_eval_lr(settings.model))
    train = data.train  # in memory or streamed from its files
    labels = train.labels
    epochs = recipe.epochs
    curve = {"epochs": [], "train_accuracy": [], "test_accuracy": [], "seconds": []}
    correct = [0]  # of the epoch running, on its (augmented) training batches
    last = {"train_accuracy": 0.0}

    def count(state: FitState, idx: torch.Tensor, logits: torch.Tensor) -> None:
        correct[0] += int((logits.argmax(1).cpu() == labels[idx.cpu()]).sum())

    def epoch_end(state: FitState) -> None:
        train_acc = last["train_accuracy"] = 100.0 * correct[0] / len(train)
        correct[0] = 0
        test_acc = accuracy(net, data.test, device) if settings.curve or state.epoch == epochs else None
        if settings.curve:
            curve["epochs"].append(state.epoch)
            curve["train_accuracy"].append(train_acc)
            curve["test_accuracy"].append(test_acc)
            curve["seconds"].append(state.seconds)
        shown = f"{test_acc:.2f} %" if test_acc is not None else "-"
        log.info("epoch %d: train accuracy %.2f %%, test accuracy %s", state.epoch, train_acc, shown)
        if progress:
            progress(state.epoch, test_acc, train_acc)

    hooks = Hooks(on_batch=count, on_epoch_end=epoch_end)
    result = fit_network(net, train, recipe, make_generator(settings.seed), hooks)
    train_acc, seconds, lr = last["train_accuracy"], result.seconds, recipe.lr
    final = curve["test_accuracy"][-1] if settings.curve else accuracy(net, data.test, device)
    if on_model is not None:
        on_model(net)
    per_image = training_flops_per_image(net, shape)
    return BaselineResult(dataset=spec.name, model=settings.model, epochs=epochs, accuracy=final,
                          train_accuracy=train_acc, train_seconds=seconds,
                          forward_flops=forward_flops(net, shape),
                          train_flops=per_image * len(train) * epochs, train_images=len(train),
                          settings={**settings.as_dict(), "lr": lr}, curve=curve if settings.curve else {})


__all__ = ["BaselineResult", "BaselineSettings", "train_whole_data"]
