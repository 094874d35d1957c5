"""Shared loop of the distribution-style matching methods (DM, DataDAM).

Each step draws a fresh randomly initialised network, augments the real and synthetic images of
every class with the same DSA transform, computes per-sample statistics (embeddings, attention maps)
and moves the synthetic images so that the per-class means of those statistics match
(:func:`~datadistill.methods.losses.mean_matching_loss`).
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass

import torch
from torch import nn

from datadistill.errors import ConfigError
from datadistill.methods.base import Distiller, MethodConfig
from datadistill.methods.losses import mean_matching_loss
from datadistill.models import build_model

CPU_CHUNK = 32


@dataclass
class MatchingConfig(MethodConfig):
    """Adds the execution layout (the loss is the same either way for per-sample norms).

    Attributes:
        batched: all classes in one pass (True) or one pass per class (False, the reference
            implementations' loop).
        chunk: images per forward call inside a pass; 0 = automatic (32 on CPU, where small calls
            are faster because they stay in cache; the whole pass on CUDA). Networks with
            BatchNorm are never chunked, since chunks would change their batch statistics.
        mask_shallow: PAD's filtering of information embedding (Li et al. 2024, §3.2) carried over to
            distribution matching: the fraction of the matched layers, shallowest first, left out of
            the loss (⌊mask_shallow · n⌋ of the n layer terms; the deepest is always kept). 0 = none.
    """

    batched: bool = True
    chunk: int = 0
    mask_shallow: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.chunk < 0:
            raise ConfigError(f"chunk must be ≥ 0 (0 = automatic), got {self.chunk}")
        if not 0 <= self.mask_shallow < 1:
            raise ConfigError(f"mask_shallow = {self.mask_shallow!r} is invalid: expected a fraction in [0, 1)")


class MatchingDistiller(Distiller):
    """Base of DM and DataDAM. Subclasses implement :meth:`statistics` and :meth:`combine`. Class-sharded
    in a distributed run (:mod:`~datadistill.methods.sharding`).

    Checkpoint state: the base's (:meth:`Distiller.state_dict`); each step's network is drawn fresh
    from torch's default generator, whose state the base saves."""

    config: MatchingConfig
    sharded = True

    def fresh_network(self) -> nn.Module:
        """A randomly initialised, frozen network in train mode (weights from torch's default generator)."""
        net = build_model(self.model, self.spec.channels, self.spec.num_classes, self.spec.image_size).to(self.device)
        net.train()
        for p in net.parameters():
            p.requires_grad_(False)
        return net

    @abstractmethod
    def statistics(self, net: nn.Module, images: torch.Tensor) -> list[torch.Tensor]:
        """Per-sample statistics whose class means are matched: a list of (N, D_k) tensors for
        images (N, C, H, W), one per matched layer, shallowest first."""

    @abstractmethod
    def combine(self, terms: list[torch.Tensor]) -> torch.Tensor:
        """The loss from the per-statistic mean-matching terms (scalars, same order as statistics)."""

    def _chunk_size(self, net: nn.Module, n: int) -> int:
        if self.config.chunk:
            return self.config.chunk
        if self.device.type != "cpu" or any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules()):
            return n
        return CPU_CHUNK

    def grouped_statistics(self, net: nn.Module, images: torch.Tensor, chunk: int) -> list[torch.Tensor]:
        """Statistics of images (G, n, C, H, W), computed ``chunk`` images at a time, as (G, n, D_k)."""
        g, n = images.shape[:2]
        parts = [self.statistics(net, c) for c in images.flatten(0, 1).split(chunk)]
        return [torch.cat(p).view(g, n, -1) for p in zip(*parts)]

    def class_loss(self, net: nn.Module, real: torch.Tensor, syn: torch.Tensor, chunk: int) -> torch.Tensor:
        """Loss for real (G, B, C, H, W) and synthetic (G, ipc, C, H, W) images of G classes."""
        with torch.no_grad():
            real_stats = self.grouped_statistics(net, real, chunk)
        syn_stats = self.grouped_statistics(net, syn, chunk)
        terms = [mean_matching_loss(r, s) for r, s in zip(real_stats, syn_stats)]
        masked = min(int(self.config.mask_shallow * len(terms)), len(terms) - 1)
        return self.combine([t.new_zeros(()) if i < masked else t for i, t in enumerate(terms)])

    def step(self) -> dict[str, float]:
        """One update of this rank's classes (every class in one process; :mod:`~datadistill.methods.sharding`)."""
        self.require_initialised()
        real, syn = self.matching_batches(self.config.batch_real)
        g, batch = real.shape[:2]
        net = self.fresh_network()
        if self.config.batched:
            loss = self.class_loss(net, real, syn, self._chunk_size(net, g * batch))
        else:
            loss = sum(self.class_loss(net, real[c:c + 1], syn[c:c + 1], batch) for c in range(g))
        total = self.global_loss(loss)
        self.check_finite(total, self.iteration)
        self.optimiser.zero_grad(set_to_none=True)
        loss.backward()
        self.optimiser.step()
        self.sync_images()
        return {"loss": float(total)}
