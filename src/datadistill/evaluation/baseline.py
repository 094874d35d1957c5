"""The whole-data baseline: one network trained on the entire real training set, with its wall time
and FLOPs, to set a synthetic set's accuracy and cost against (the seed reports' tables).

Training follows the evaluation protocol's optimiser (SGD, momentum 0.9, weight decay 5e-4, the
architecture's default lr divided by 10 at epoch E/2, mini-batches of 256); augmentation is off by
default (``dsa_strategy="none"``): with 60,000 real images it is not needed to reach the published
whole-data accuracy, and it would be counted in neither FLOPs nor the synthetic runs' cost.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import torch

from datadistill.augment import DSA
from datadistill.data import SplitDataset
from datadistill.errors import ConfigError
from datadistill.evaluation.cost import forward_flops, training_flops_per_image
from datadistill.evaluation.protocol import _lr_at, accuracy
from datadistill.models import build_model, default_eval_lr
from datadistill.runtime import make_generator
from datadistill.training import train_epoch


@dataclass(frozen=True)
class BaselineSettings:
    """Settings of the whole-data run.

    Attributes:
        model: registered model name.
        epochs: passes over the training set (≥ 1).
        lr: initial learning rate; None = the architecture's default evaluation lr.
        batch_size, momentum, weight_decay: SGD settings.
        dsa_strategy: DSA strategy per batch, ``"none"`` (default) to train on the images as they are.
        seed: initialisation, shuffling and augmentation seed.
        curve: test on the test set after every epoch for the learning curve (not used to select).
    """

    model: str = "convnet"
    epochs: int = 6
    lr: float | None = None
    batch_size: int = 256
    momentum: float = 0.9
    weight_decay: float = 5e-4
    dsa_strategy: str = "none"
    seed: int = 0
    curve: bool = True

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ConfigError(f"epochs = {self.epochs!r} is invalid: expected an integer ≥ 1")
        if self.lr is not None and not self.lr > 0:
            raise ConfigError(f"lr = {self.lr!r} is invalid: expected a number > 0 (or unset)")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size = {self.batch_size!r} is invalid: expected an integer ≥ 1")


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
                     progress=None) -> BaselineResult:
    """Train one ``settings.model`` on all of ``data.train`` and test it on ``data.test``.

    Args:
        data: the real dataset, images (N, C, H, W) float32 normalised, labels (N,) int64.
        progress: optional callable ``(epoch, test accuracy or None, train accuracy)`` after each epoch.

    Raises:
        UnknownNameError: unknown model.
    """
    spec = data.spec
    shape = tuple(data.train.image_shape)
    torch.manual_seed(settings.seed)
    net = build_model(settings.model, spec.channels, spec.num_classes, shape[1:]).to(device)
    lr = settings.lr if settings.lr is not None else default_eval_lr(settings.model)
    generator = make_generator(settings.seed)
    dsa = DSA(settings.dsa_strategy)
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=settings.momentum, weight_decay=settings.weight_decay)
    train = data.train  # in memory or streamed from its files
    images = train if train.streamed else train.images
    labels = train.labels
    curve = {"epochs": [], "train_accuracy": [], "test_accuracy": [], "seconds": []}
    seconds, train_acc = 0.0, 0.0
    for epoch in range(settings.epochs):
        start = time.perf_counter()
        for group in opt.param_groups:
            group["lr"] = _lr_at(epoch, settings.epochs, lr)
        net.train()
        correct = [0]

        def count(idx: torch.Tensor, logits: torch.Tensor) -> None:
            correct[0] += int((logits.argmax(1).cpu() == labels[idx.cpu()]).sum())

        order = torch.randperm(len(train), generator=generator)
        train_epoch(net, opt, images, labels, order, settings.batch_size, dsa, generator, count)
        seconds += time.perf_counter() - start
        train_acc = 100.0 * correct[0] / len(train)
        test_acc = accuracy(net, data.test, device) if settings.curve or epoch == settings.epochs - 1 else None
        if settings.curve:
            curve["epochs"].append(epoch + 1)
            curve["train_accuracy"].append(train_acc)
            curve["test_accuracy"].append(test_acc)
            curve["seconds"].append(seconds)
        if progress:
            progress(epoch + 1, test_acc, train_acc)
    final = curve["test_accuracy"][-1] if settings.curve else accuracy(net, data.test, device)
    per_image = training_flops_per_image(net, shape)
    return BaselineResult(dataset=spec.name, model=settings.model, epochs=settings.epochs, accuracy=final,
                          train_accuracy=train_acc, train_seconds=seconds,
                          forward_flops=forward_flops(net, shape),
                          train_flops=per_image * len(train) * settings.epochs, train_images=len(train),
                          settings={**asdict(settings), "lr": lr}, curve=curve if settings.curve else {})


__all__ = ["BaselineResult", "BaselineSettings", "train_whole_data"]
