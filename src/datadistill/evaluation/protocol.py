"""The evaluation protocol of dataset distillation (reference §2).

Train K freshly initialised networks from scratch on the synthetic set — SGD, momentum 0.9, weight
decay 5e-4, lr 0.01 (or the set's learned lr) divided by 10 once at epoch E/2, mini-batches of 256,
DSA augmentation of every batch — then test each once on the real test set and report mean ± std.
No test-set selection: the accuracy reported is the one after the last epoch.
A set stored with a ZCA whitening is trained on as it is and tested on the test set whitened
with that same ZCA (MTT/DATM/PAD on CIFAR).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import torch

from datadistill.augment import DSA
from datadistill.data import LabelledImages
from datadistill.errors import ConfigError
from datadistill.io.synthetic_set import SyntheticSet
from datadistill.models import build_model
from datadistill.runtime import make_generator
from datadistill.training import train_epoch


@dataclass(frozen=True)
class EvalSettings:
    """Settings of the protocol.

    Attributes:
        model: registered model name.
        num_eval: K, networks trained (≥ 1).
        epochs: E, passes over the synthetic set (≥ 1).
        lr: initial learning rate (used unless the set carries a learned lr).
        batch_size: mini-batch size.
        momentum, weight_decay: SGD settings.
        dsa_strategy: DSA strategy applied to every training batch (``"none"`` to disable).
        use_learned_lr: train with the set's learned lr when it has one (MTT family); False uses ``lr``.
    """

    model: str = "convnet"
    num_eval: int = 3
    epochs: int = 300
    lr: float = 0.01
    batch_size: int = 256
    momentum: float = 0.9
    weight_decay: float = 5e-4
    dsa_strategy: str = "color_crop_cutout_scale_rotate"
    use_learned_lr: bool = True

    def __post_init__(self) -> None:
        if self.num_eval < 1:
            raise ConfigError(f"num_eval must be ≥ 1, got {self.num_eval}")
        if self.epochs < 1:
            raise ConfigError(f"eval_epochs must be ≥ 1, got {self.epochs}")
        if not self.lr > 0:
            raise ConfigError(f"eval lr must be > 0, got {self.lr}")
        if self.batch_size < 1:
            raise ConfigError(f"eval batch size must be ≥ 1, got {self.batch_size}")


@dataclass
class EvalResult:
    """Accuracies in percent on the real test set, one per trained network, and timing in seconds."""

    model: str
    accuracies: list[float]
    train_accuracies: list[float]
    seconds: float

    @property
    def mean(self) -> float:
        return statistics.fmean(self.accuracies)

    @property
    def std(self) -> float:
        return statistics.pstdev(self.accuracies) if len(self.accuracies) > 1 else 0.0

    def as_dict(self) -> dict:
        return {"model": self.model, "accuracy_mean": self.mean, "accuracy_std": self.std,
                "accuracies": self.accuracies, "train_accuracies": self.train_accuracies,
                "eval_seconds": self.seconds}


@torch.no_grad()
def accuracy(net: torch.nn.Module, data: LabelledImages, device: torch.device, batch_size: int = 1000) -> float:
    """Top-1 accuracy in percent of ``net`` (eval mode) on ``data``."""
    net.eval()
    correct = 0
    for i in range(0, len(data), batch_size):
        x = data.images[i:i + batch_size].to(device, non_blocking=True)
        y = data.labels[i:i + batch_size].to(device, non_blocking=True)
        correct += int((net(x).argmax(dim=1) == y).sum())
    return 100.0 * correct / max(len(data), 1)


def train_network(net: torch.nn.Module, images: torch.Tensor, targets: torch.Tensor, settings: EvalSettings,
                  lr: float, generator: torch.Generator) -> torch.nn.Module:
    """Train ``net`` in place on (images, targets) for ``settings.epochs`` epochs; returns ``net``.

    Args:
        images: (N, C, H, W) float32 normalised, on the network's device.
        targets: (N,) int64 labels, or (N, K) float32 soft-label logits (soft cross-entropy).
        lr: initial learning rate, divided by 10 at epoch E // 2.
        generator: CPU generator for shuffling and augmentation.
    """
    dsa = DSA(settings.dsa_strategy)
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=settings.momentum, weight_decay=settings.weight_decay)
    n = images.shape[0]
    net.train()
    for epoch in range(settings.epochs):
        if epoch == settings.epochs // 2 and epoch > 0:
            for group in opt.param_groups:
                group["lr"] = lr * 0.1
        order = torch.randperm(n, generator=generator).to(images.device)
        train_epoch(net, opt, images, targets, order, settings.batch_size, dsa, generator)
    return net


def evaluate_synthetic_set(syn: SyntheticSet, test: LabelledImages, settings: EvalSettings,
                           device: torch.device, seed: int = 0, progress=None) -> EvalResult:
    """Train ``settings.num_eval`` networks on ``syn`` and test each on ``test``.

    Network k is initialised and trained with seed ``seed + k``, so results repeat exactly on the
    same machine and torch build.

    When ``syn.zca`` is set, the set's images are in whitened space: networks are trained on them as
    they are (the train accuracy too), and the test images are whitened with ``syn.zca`` (once, on
    their own device) before testing. An unwhitened test set would give chance accuracy.

    Args:
        syn: the synthetic set (images normalised like ``test``, then whitened if ``syn.zca`` is set).
        test: the real test set, (N, C, H, W) float32 normalised (not whitened), labels (N,) int64.
        progress: optional callable ``(k, accuracy)`` after each network.

    Raises:
        ConfigError: the set's channels or image size differ from the test set's.
    """
    if syn.images.shape[1:] != test.images.shape[1:]:
        raise ConfigError(f"synthetic images {tuple(syn.images.shape[1:])} do not match the test images "
                          f"{tuple(test.images.shape[1:])} (channels, height, width)")
    num_classes = int(syn.metadata.get("num_classes") or len(syn.metadata.get("class_names") or []) or
                      (syn.labels.shape[1] if syn.labels.dim() == 2 else int(syn.labels.max()) + 1))
    if syn.zca is not None:
        test = LabelledImages(syn.zca.whiten(test.images), test.labels)
    lr = syn.learned_lr if syn.learned_lr is not None and settings.use_learned_lr else settings.lr
    images, targets = syn.images.to(device), syn.labels.to(device)
    start = time.perf_counter()
    accs, train_accs = [], []
    for k in range(settings.num_eval):
        torch.manual_seed(seed + k)
        net = build_model(settings.model, images.shape[1], num_classes, tuple(images.shape[2:])).to(device)
        train_network(net, images, targets, settings, lr, make_generator(seed + k))
        train_accs.append(accuracy(net, LabelledImages(images, syn.hard_labels.to(device)), device))
        accs.append(accuracy(net, test, device))
        if progress:
            progress(k, accs[-1])
    return EvalResult(settings.model, accs, train_accs, time.perf_counter() - start)


__all__ = ["EvalResult", "EvalSettings", "accuracy", "evaluate_synthetic_set", "train_network"]
