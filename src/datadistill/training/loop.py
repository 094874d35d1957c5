"""The training loop: :func:`fit_network` trains one network as a :class:`TrainRecipe` says, for
every trainer of the package (evaluation protocol, whole-data baseline, expert trajectories,
difficulty scoring, coreset features, NAS real proxy, FedAvg clients); what differs between them
(curves, saving each epoch, counting forgetting events, a curriculum) are :class:`Hooks`.
Also the mini-batch epoch it runs (:func:`train_epoch`, shared with the bi-level methods) and the
classification loss.

Order of random draws (kept exactly, so every trainer's results repeat bit for bit): the network's
initial weights come from torch's default generator before :func:`fit_network` is called; then,
per epoch, one ``torch.randperm`` of the epoch's indices from ``generator``, then the DSA draws of
each mini-batch in order from the same ``generator``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from datadistill.augment import DSA, DCAugment, make_augmentation
from datadistill.data.base import iter_batches
from datadistill.errors import ConfigError
from datadistill.training.recipe import TrainRecipe


def classification_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of logits (B, K) against hard labels (B,) int64, or the soft cross-entropy
    −Σ_k softmax(t)_k log softmax(z)_k (batch mean) against soft-label logits t (B, K)."""
    if targets.dim() == 1:
        return F.cross_entropy(logits, targets)
    return -(targets.softmax(dim=1) * logits.log_softmax(dim=1)).sum(dim=1).mean()


def train_epoch(net: nn.Module, optimiser: torch.optim.Optimizer, images, targets: torch.Tensor,
                order: torch.Tensor, batch_size: int, dsa: DSA | DCAugment, generator: torch.Generator,
                on_batch: Callable[[torch.Tensor, torch.Tensor], None] | None = None) -> None:
    """One pass over ``images[order]`` in mini-batches of ``batch_size``: the augmentation ``dsa`` on
    each batch when enabled (DSA: one op per batch, parameters per image; DC's: one op and its
    parameters per image), :func:`classification_loss`, one optimiser step.
    An optimiser with ``set_closure`` (GSAM, :func:`datadistill.training.sam.make_gsam`) is given the
    batch's loss closure and evaluates it twice per step (at θ and at the perturbed θ).

    Args:
        images: (N, C, H, W) float32, or a set with ``batches(order, batch_size)`` (a streamed real
            set, decoded by DataLoader workers); batches are moved to the network's device.
        targets: (N,) int64 labels or (N, K) soft-label logits, on the images' device.
        order: indices into ``images`` (a shuffled permutation or subset), on the images' device.
        generator: CPU generator for the augmentation's draws.
        on_batch: called ``(indices, logits)`` after the forward pass, before the update.
    """
    device = next(net.parameters()).device
    for idx, x in iter_batches(images, order, batch_size):
        x = x.to(device)
        idx = idx.to(order.device)
        if dsa.enabled:
            x = dsa(x, generator)
        if hasattr(optimiser, "set_closure"):  # GSAM: two forward/backward passes inside step()
            optimiser.set_closure(classification_loss, x, targets[idx].to(device))
            logits, _ = optimiser.step()
            if on_batch is not None:
                on_batch(idx, logits.detach())  # the logits of the first pass, before the update
            continue
        logits = net(x)
        if on_batch is not None:
            on_batch(idx, logits)
        loss = classification_loss(logits, targets[idx].to(device))
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()


def make_optimiser(params, recipe: TrainRecipe) -> torch.optim.Optimizer:
    """SGD over ``params`` at the recipe's initial lr, momentum and weight decay."""
    return torch.optim.SGD(params, lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay)


@dataclass
class FitState:
    """Where a :func:`fit_network` run stands; the hooks receive it and :func:`fit_network` returns it.

    Attributes:
        net: the network being trained (in place).
        optimiser: its SGD optimiser (state: momentum buffers).
        generator: the CPU generator of the shuffles and DSA draws.
        recipe: the (resolved) recipe.
        epoch: epochs finished so far; while an epoch runs, its 0-based index.
        seconds: wall time of the training so far (the ``on_epoch_end`` hooks excluded).
        images_seen: training images of the last epoch started (its indices).
    """

    net: nn.Module
    optimiser: torch.optim.Optimizer
    generator: torch.Generator
    recipe: TrainRecipe
    epoch: int = 0
    seconds: float = 0.0
    images_seen: int = 0


@dataclass
class Hooks:
    """Optional callbacks of :func:`fit_network` (None = nothing).

    Attributes:
        on_start: ``(state)`` once before the first epoch (e.g. restore the optimiser's state to
            resume, or save the starting point).
        epoch_indices: ``(epoch)`` → the 1-D int64 indices of the training data epoch ``epoch``
            (0-based) shuffles and trains on (e.g. a curriculum); default: all of them.
        on_batch: ``(state, indices, logits)`` after each mini-batch's forward pass, before the update
            (``state.epoch`` is the epoch's 0-based index); its time counts as training time.
        on_epoch_end: ``(state)`` after every epoch (``state.epoch`` epochs done); its time is not
            counted in ``state.seconds``.
    """

    on_start: Callable[[FitState], None] | None = None
    epoch_indices: Callable[[int], torch.Tensor] | None = None
    on_batch: Callable[[FitState, torch.Tensor, torch.Tensor], None] | None = None
    on_epoch_end: Callable[[FitState], None] | None = None


def _unpack(data) -> tuple[object, torch.Tensor]:
    if isinstance(data, tuple):
        images, targets = data
        return images, targets
    return (data if data.streamed else data.images), data.labels


def fit_network(net: nn.Module, data, recipe: TrainRecipe, generator: torch.Generator,
                hooks: Hooks | None = None, *, start_epoch: int = 0,
                optimiser: Callable[[nn.Module, TrainRecipe], torch.optim.Optimizer] | None = None) -> FitState:
    """Train ``net`` in place with ``recipe`` for epochs ``start_epoch … recipe.epochs − 1``.

    Each epoch: the lr of the recipe's schedule for that epoch, train mode, one shuffle of the
    epoch's indices (``torch.randperm`` from ``generator``), then :func:`train_epoch` over them in
    mini-batches of ``recipe.batch_size`` with the recipe's augmentation (DSA or DC's; its draws from
    ``generator``), one SGD step per batch (fresh SGD optimiser, momentum and weight decay from the
    recipe).

    Args:
        net: the network, its parameters on the device it trains on.
        data: a :class:`~datadistill.data.LabelledImages` (in memory or streamed), or a pair
            ``(images, targets)``: images (N, C, H, W) float32 or a set read in batches, targets
            (N,) int64 labels or (N, K) float32 soft-label logits on the images' device.
        recipe: a resolved recipe (``lr`` and ``augmentation`` set).
        generator: CPU generator of the shuffles and augmentation.
        hooks: per-run, per-epoch and per-batch callbacks (:class:`Hooks`).
        start_epoch: the first epoch to run (resuming after ``start_epoch`` finished epochs: the lr
            schedule continues from there; restore the optimiser in ``hooks.on_start``).
        optimiser: ``(net, recipe)`` → the optimiser (default :func:`make_optimiser`, SGD); e.g.
            :func:`datadistill.training.sam.make_gsam` for DATM/PAD's experts. The schedule sets the
            lr of its ``param_groups`` each epoch.

    Returns:
        The final :class:`FitState` (``net``, ``optimiser``, ``epoch`` = ``recipe.epochs``,
        ``seconds`` of training).

    Raises:
        ConfigError: the recipe's lr or augmentation is unset.
    """
    if not recipe.is_resolved:
        raise ConfigError(f"cannot train with an unresolved recipe (lr = {recipe.lr!r}, augmentation = "
                          f"{recipe.augmentation!r}): fill them with TrainRecipe.resolved")
    hooks = hooks or Hooks()
    images, targets = _unpack(data)
    dsa = make_augmentation(recipe.augmentation)
    opt = make_optimiser(net.parameters(), recipe) if optimiser is None else optimiser(net, recipe)
    state = FitState(net, opt, generator, recipe, epoch=start_epoch)
    if hooks.on_start is not None:
        hooks.on_start(state)
    on_batch = None
    if hooks.on_batch is not None:
        def on_batch(idx: torch.Tensor, logits: torch.Tensor) -> None:
            hooks.on_batch(state, idx, logits)
    for epoch in range(start_epoch, recipe.epochs):
        start = time.perf_counter()
        state.epoch = epoch
        for group in state.optimiser.param_groups:
            group["lr"] = recipe.lr_at(epoch)
        net.train()
        if hooks.epoch_indices is None:
            order = torch.randperm(len(targets), generator=generator).to(targets.device)
        else:
            subset = hooks.epoch_indices(epoch).to(targets.device)
            order = subset[torch.randperm(len(subset), generator=generator).to(targets.device)]
        state.images_seen = len(order)
        train_epoch(net, state.optimiser, images, targets, order, recipe.batch_size, dsa, generator, on_batch)
        state.seconds += time.perf_counter() - start
        state.epoch = epoch + 1
        if hooks.on_epoch_end is not None:
            hooks.on_epoch_end(state)
    return state


__all__ = ["FitState", "Hooks", "classification_loss", "fit_network", "make_optimiser", "train_epoch"]
