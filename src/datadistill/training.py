"""The mini-batch training epoch shared by evaluation, the bi-level methods, coreset features,
difficulty scoring and expert training, and the classification loss they use."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from datadistill.augment import DSA
from datadistill.data.base import iter_batches


def classification_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of logits (B, K) against hard labels (B,) int64, or the soft cross-entropy
    −Σ_k softmax(t)_k log softmax(z)_k (batch mean) against soft-label logits t (B, K)."""
    if targets.dim() == 1:
        return F.cross_entropy(logits, targets)
    return -(targets.softmax(dim=1) * logits.log_softmax(dim=1)).sum(dim=1).mean()


def train_epoch(net: nn.Module, optimiser: torch.optim.Optimizer, images, targets: torch.Tensor,
                order: torch.Tensor, batch_size: int, dsa: DSA, generator: torch.Generator,
                on_batch: Callable[[torch.Tensor, torch.Tensor], None] | None = None) -> None:
    """One pass over ``images[order]`` in mini-batches of ``batch_size``: DSA on each batch (when
    enabled; one op per batch, parameters per image), :func:`classification_loss`, one optimiser step.

    Args:
        images: (N, C, H, W) float32, or a set with ``batches(order, batch_size)`` (a streamed real
            set, decoded by DataLoader workers); batches are moved to the network's device.
        targets: (N,) int64 labels or (N, K) soft-label logits, on the images' device.
        order: indices into ``images`` (a shuffled permutation or subset), on the images' device.
        generator: CPU generator for the DSA draws.
        on_batch: called ``(indices, logits)`` after the forward pass, before the update.
    """
    device = next(net.parameters()).device
    for idx, x in iter_batches(images, order, batch_size):
        x = x.to(device)
        idx = idx.to(order.device)
        if dsa.enabled:
            x = dsa(x, generator)
        logits = net(x)
        if on_batch is not None:
            on_batch(idx, logits)
        loss = classification_loss(logits, targets[idx].to(device))
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
