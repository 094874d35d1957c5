"""DC: Dataset Condensation with Gradient Matching (Zhao, Mopuri & Bilen, ICLR 2021), and DSA: the
same with Differentiable Siamese Augmentation (Zhao & Bilen, ICML 2021)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from datadistill.errors import ConfigError
from datadistill.methods.base import register_method
from datadistill.methods.bilevel import (BN_IMAGES_PER_CLASS, BilevelConfig, BilevelDistiller, freeze_batchnorm,
                                         has_batchnorm)
from datadistill.methods.losses import GRADIENT_DISTANCES, gradient_distance

# (IPC, outer_loop, inner_loop) of the reference code's get_loops; other IPCs follow loop_schedule's rule.
REFERENCE_LOOPS = ((1, 1, 1), (10, 10, 50), (20, 20, 25), (30, 30, 20), (40, 40, 15), (50, 50, 10))


def loop_schedule(ipc: int) -> tuple[int, int]:
    """(outer_loop, inner_loop) for ``ipc``: synthetic-set updates per network, and epochs of
    network training on the set between two updates.

    Reproduces the reference code at IPC 1, 10, 20, 30, 40, 50. Rule elsewhere: outer_loop = min(ipc, 50);
    inner_loop = 50 for 2 ≤ ipc ≤ 10, linear interpolation (rounded half up) between the reference points up to
    50, and 10 above 50. (At IPC 1 the inner loop never runs: the network is not trained after the last
    update.)

    Raises:
        ConfigError: ipc < 1.
    """
    if ipc < 1:
        raise ConfigError(f"ipc must be ≥ 1, got {ipc}")
    if ipc == 1:
        return 1, 1
    xs = [row[0] for row in REFERENCE_LOOPS[1:]]
    ys = [row[2] for row in REFERENCE_LOOPS[1:]]
    return min(ipc, 50), int(math.floor(float(np.interp(ipc, xs, ys)) + 0.5))


def class_gradients(net: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, batched: bool = True,
                    chunk: int = 0) -> list[torch.Tensor]:
    """Gradients of the mean cross-entropy of each class's batch w.r.t. every parameter of ``net``.

    Args:
        net: the network (its parameters are read, never updated).
        images: (G, n, C, H, W) float: n images of each of G classes.
        labels: (G, n) int64.
        batched: True computes all classes in vectorised passes (``torch.func.vmap`` over
            ``torch.func.grad``); False loops over classes with ``torch.autograd.grad`` (reference code).
        chunk: classes per vectorised pass (0 = all G at once).

    Returns:
        One tensor per parameter (``net.parameters()`` order), shaped (G, *param_shape). If
        ``images`` requires grad the result carries the graph back to it (second-order terms for
        gradient matching); otherwise it is detached.
    """
    params = {k: v.detach() for k, v in net.named_parameters()}
    buffers = dict(net.named_buffers())
    differentiable = images.requires_grad
    if batched:
        def loss(p: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return F.cross_entropy(functional_call(net, (p, buffers), (x,)), y)

        per_class: Callable = vmap(grad(loss), in_dims=(None, 0, 0), chunk_size=chunk or None)
        grads = per_class(params, images, labels)
        return [grads[k] if differentiable else grads[k].detach() for k in params]
    weights = [p for p in net.parameters()]
    out = []
    for c in range(images.shape[0]):
        g = torch.autograd.grad(F.cross_entropy(net(images[c]), labels[c]), weights, create_graph=differentiable)
        out.append(g if differentiable else [t.detach() for t in g])
    return [torch.stack(ts) for ts in zip(*out)]


@dataclass
class DCConfig(BilevelConfig):
    """DC settings (paper: 1000 iterations, lr_img 0.1, momentum 0.5, lr_net 0.01, batch_real 256, init noise).

    Attributes:
        outer_loop: synthetic-set updates per fresh network (0 = :func:`loop_schedule` of the IPC).
        inner_loop: epochs of network training on the set between updates (0 = from the IPC).
        distance: ``layerwise`` (the paper's), ``mse`` or ``cos``
            (:func:`~datadistill.methods.losses.gradient_distance`).
        batched: per-class gradients in vectorised passes (True) or a per-class loop (False).
        chunk: classes per vectorised pass over the real batch (0 = automatic: on CUDA up to 1,024
            real images per pass; on CPU the real side loops over classes, which measured faster
            there: each class's pass already runs at the convolution's speed, and vmap added time
            and memory; see docs/benchmarks.md). The synthetic side takes every class in one
            vectorised pass when ``batched``.
    """

    outer_loop: int = 0
    inner_loop: int = 0
    distance: str = "layerwise"
    batched: bool = True
    chunk: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.distance not in GRADIENT_DISTANCES:
            raise ConfigError(f"unknown distance {self.distance!r}: expected one of {', '.join(GRADIENT_DISTANCES)}")
        for name in ("outer_loop", "inner_loop", "chunk"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be ≥ 0 (0 = automatic), got {getattr(self, name)}")


@register_method("dc")
class DC(BilevelDistiller):
    """Gradient matching (DC paper, Algorithm 1). One :meth:`step` = one outer iteration: a fresh
    network θ; then ``outer_loop`` times: for every class c, the distance
    D(∇_θ L(S_c), ∇_θ L(T_c)) between the gradients of the cross-entropy on the synthetic images
    of c and on a real batch of c (:func:`~datadistill.methods.losses.gradient_distance`), summed
    over classes, takes one SGD step on S; then θ trains ``inner_loop`` epochs on S (skipped after
    the last update). Networks with BatchNorm get their statistics from 16 real images per class,
    frozen during matching. The reported loss is the distance averaged over classes and updates.
    """

    config_class = DCConfig
    config: DCConfig

    @property
    def loops(self) -> tuple[int, int]:
        outer, inner = loop_schedule(self.ipc)
        return self.config.outer_loop or outer, self.config.inner_loop or inner

    def real_chunk(self, batch: int) -> int:
        """Classes per vectorised pass over the real batch; 0 = loop over classes (see :class:`DCConfig`)."""
        if self.config.chunk:
            return self.config.chunk
        return 0 if self.device.type == "cpu" else max(1, 1024 // batch)

    def matching_loss(self, net: nn.Module) -> torch.Tensor:
        """The summed gradient distance of this rank's classes (all in one process) for a fresh real
        batch (one update's loss)."""
        real, syn = self.matching_batches(self.config.batch_real)  # this rank's classes (all in one process)
        classes = torch.tensor(self.own_classes, device=self.device)
        real_labels = classes.view(-1, 1).expand(len(classes), real.shape[1])
        syn_labels = self.labels[self.own_rows].view(len(classes), self.ipc)
        chunk = self.real_chunk(real.shape[1])
        g_real = class_gradients(net, real.detach(), real_labels, batched=self.config.batched and chunk > 0,
                                 chunk=chunk)
        g_syn = class_gradients(net, syn, syn_labels, batched=self.config.batched)
        return gradient_distance(g_real, g_syn, self.config.distance)

    def step(self) -> dict[str, float]:
        self.require_initialised()
        outer, inner = self.loops
        net, net_optimiser = self.fresh_network()
        total = 0.0
        for ol in range(outer):
            if has_batchnorm(net):
                freeze_batchnorm(net, self.sample_real(BN_IMAGES_PER_CLASS, every_class=True).flatten(0, 1))
            total += self.update_images(self.matching_loss(net))
            if ol == outer - 1:
                break
            self.train_network(net, net_optimiser, inner)
        return {"loss": total / (outer * self.spec.num_classes)}


@register_method("dsa")
class DSAMethod(DC):
    """DC with Differentiable Siamese Augmentation (DSA paper, §3: siamese augmentation inside the matching objective): the same randomly drawn
    augmentation A_ω (one op and its parameters per class) is applied to the real and the synthetic
    batch of a class before the gradients are taken, and the network is trained on augmented
    synthetic batches. Papers' settings as DC, init real."""

    uses_dsa = True
