"""Shared pieces of the bi-level methods (DC, DSA, CAFE): each iteration draws a fresh network,
alternates updates of the synthetic set with a few epochs of training that network on the set.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from datadistill.augment import DSA
from datadistill.errors import ConfigError
from datadistill.methods.base import Distiller, MethodConfig
from datadistill.models import build_model, has_batchnorm
from datadistill.training import train_epoch

BN_IMAGES_PER_CLASS = 16  # real images per class used to set BatchNorm statistics (reference code: 16)


@dataclass
class BilevelConfig(MethodConfig):
    """Settings shared by DC, DSA and CAFE (papers: lr_img 0.1, SGD momentum 0.5, batch_real 256).

    Attributes:
        lr_net: learning rate of the network trained on the synthetic set between updates (η_θ).
        batch_train: mini-batch size of that training.
    """

    lr_img: float = 0.1
    batch_real: int = 256
    lr_net: float = 0.01
    batch_train: int = 256

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.lr_net > 0:
            raise ConfigError(f"lr_net must be > 0, got {self.lr_net}")
        if self.batch_train < 1:
            raise ConfigError(f"batch_train must be ≥ 1, got {self.batch_train}")


def freeze_batchnorm(net: nn.Module, real: torch.Tensor) -> None:
    """Set every BatchNorm's running statistics from ``real`` (N, C, H, W), then put the BatchNorm
    layers in eval mode so matching uses those fixed statistics (DC reference code). No-op without
    BatchNorm."""
    if not has_batchnorm(net):
        return
    net.train()
    for m in net.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # cumulative average: one batch sets the statistics exactly
    with torch.no_grad():
        net(real)
    for m in net.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


def train_on_synthetic(net: nn.Module, optimiser: torch.optim.Optimizer, images: torch.Tensor,
                       labels: torch.Tensor, epochs: int, batch_size: int, dsa: DSA,
                       generator: torch.Generator) -> None:
    """``epochs`` epochs of cross-entropy training of ``net`` on the (detached) synthetic set, with
    DSA on each mini-batch when enabled (DSA paper: one op per batch, parameters per image)."""
    images, labels = images.detach(), labels.detach()
    net.train()
    n = images.shape[0]
    for _ in range(epochs):
        order = torch.randperm(n, generator=generator).to(images.device)
        train_epoch(net, optimiser, images, labels, order, batch_size, dsa, generator)


class BilevelDistiller(Distiller):
    """Base of DC/DSA and CAFE: fresh trainable networks, DSA on or off by method.

    Subclasses set ``uses_dsa``: DC and CAFE ignore the run's DSA strategy; DSA and CAFE+DSA use it.
    Class-sharded in a distributed run (:mod:`~datadistill.methods.sharding`): a rank matches its own
    classes, and trains the network on the whole set, gathered after every update.

    Checkpoint state: the base's (:meth:`Distiller.state_dict`). A step is one whole outer
    iteration: its network, that network's optimiser and the inner/outer loop position live and end
    inside it, so between steps the loop position is the iteration.
    """

    config: BilevelConfig
    uses_dsa: bool = False
    sharded = True

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if not self.uses_dsa:
            self.dsa = DSA("none")

    def fresh_network(self) -> tuple[nn.Module, torch.optim.Optimizer]:
        """A randomly initialised network in train mode and plain SGD at ``lr_net`` for it."""
        net = build_model(self.model, self.spec.channels, self.spec.num_classes, self.spec.image_size).to(self.device)
        net.train()
        return net, torch.optim.SGD(net.parameters(), lr=self.config.lr_net)

    def update_images(self, loss: torch.Tensor) -> float:
        """One SGD step of the images on ``loss`` (this rank's classes' terms), then the whole set on
        every rank (:meth:`sync_images`). Returns the loss of every class.

        Raises:
            NonFiniteLossError: the loss of any class is NaN/inf (on every rank; nothing is updated).
        """
        total = self.global_loss(loss)
        self.check_finite(total, self.iteration)
        self.optimiser.zero_grad(set_to_none=True)
        loss.backward()
        self.optimiser.step()
        self.sync_images()
        return float(total)

    def train_network(self, net: nn.Module, optimiser: torch.optim.Optimizer, epochs: int) -> None:
        train_on_synthetic(net, optimiser, self.images, self.labels, epochs, self.config.batch_train, self.dsa,
                           self.generator)
