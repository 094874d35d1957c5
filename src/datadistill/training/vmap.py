"""K networks of one architecture trained together under ``torch.vmap`` (the evaluation protocol's
``vectorise``): their parameters are stacked with ``torch.func.stack_module_state`` and one
``vmap`` of ``functional_call`` runs all K on their own mini-batches. Each network keeps its own
shuffling and DSA draws (its own generator, consumed in the same order as :func:`fit_network`) and
its own optimiser state (SGD acts element-wise on the stacked tensors), so each network ends where
:func:`~datadistill.training.fit_network` would leave it, up to float rounding. Architectures with
BatchNorm (running statistics are updated in place, which vmap does not allow) cannot be stacked.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable

import torch
from torch import nn

from datadistill.augment import make_augmentation
from datadistill.errors import ConfigError
from datadistill.models import has_batchnorm
from datadistill.training.loop import classification_loss, make_optimiser
from datadistill.training.recipe import TrainRecipe

EpochHook = Callable[[int, float], None]  # (epochs done, training seconds so far)
BatchHook = Callable[[int, torch.Tensor, torch.Tensor], None]  # (network j, its batch's indices, its logits)


def can_vectorise(nets: list[nn.Module]) -> bool:
    """True when ``nets`` (≥ 2, one architecture) can be trained together under ``torch.vmap``."""
    return len(nets) >= 2 and not any(has_batchnorm(net) for net in nets)


def fit_networks_vectorised(nets: list[nn.Module], images: torch.Tensor, targets: torch.Tensor,
                            recipe: TrainRecipe, generators: list[torch.Generator],
                            after_epoch: EpochHook | None = None, *, on_batch: BatchHook | None = None,
                            on_epoch: EpochHook | None = None) -> list[nn.Module]:
    """Train the K networks ``nets`` (one architecture, no BatchNorm) together with ``recipe``; each
    ends as :func:`~datadistill.training.fit_network` would leave it with ``generators[k]``, up to
    float rounding.

    Per step, network k draws its own mini-batch (its own shuffle and DSA draw from ``generators[k]``);
    the K batches are stacked to (K, B, C, H, W) and one ``vmap``-ed ``functional_call`` gives the
    (K, B, classes) logits. The loss is the sum of the K networks' mean losses, so each network's
    gradient is its own; one SGD over the stacked (K, ...) parameters is K independent SGDs.

    Args:
        nets: K ≥ 1 freshly built networks of the same architecture, on the images' device.
        images: (N, C, H, W) float32 in memory; targets: (N,) int64 labels or (N, K) soft-label logits.
        recipe: a resolved recipe (lr and augmentation set).
        generators: one CPU generator per network.
        after_epoch: called ``(epochs done, training seconds)`` after every epoch, its own time not
            counted; ``nets`` hold the current weights when it is called.
        on_batch: called ``(j, indices, logits)`` for each network after each stacked forward pass,
            before the update (e.g. to count correct predictions for a progress display).
        on_epoch: called ``(epochs done, training seconds)`` after every epoch, without copying the
            weights back into ``nets`` (cheaper than ``after_epoch``; for progress displays).

    Returns:
        ``nets``, trained in place (left in eval mode).

    Raises:
        ConfigError: a network has BatchNorm, the counts of nets and generators differ, or the
            recipe is unresolved.
    """
    from torch.func import functional_call, stack_module_state

    if len(nets) != len(generators):
        raise ConfigError(f"{len(nets)} networks but {len(generators)} generators")
    if any(has_batchnorm(net) for net in nets):
        raise ConfigError("networks with BatchNorm cannot be trained under vmap (in-place running statistics); "
                          "use the sequential loop")
    if not recipe.is_resolved:
        raise ConfigError(f"cannot train with an unresolved recipe (lr = {recipe.lr!r}, augmentation = "
                          f"{recipe.augmentation!r}): fill them with TrainRecipe.resolved")
    for net in nets:
        net.train()
    params, buffers = stack_module_state(nets)
    skeleton = copy.deepcopy(nets[0]).to("meta")

    def one(p, b, x):
        return functional_call(skeleton, (p, b), (x,))

    forward = torch.vmap(one)
    opt = make_optimiser(list(params.values()), recipe)
    dsa = make_augmentation(recipe.augmentation)
    n, k = images.shape[0], len(nets)
    seconds = 0.0
    for epoch in range(recipe.epochs):
        start = time.perf_counter()
        for group in opt.param_groups:
            group["lr"] = recipe.lr_at(epoch)
        orders = [torch.randperm(n, generator=g).to(images.device) for g in generators]
        for i in range(0, n, recipe.batch_size):
            batches, batch_targets, indices = [], [], []
            for j in range(k):
                idx = orders[j][i:i + recipe.batch_size]
                x = images[idx]
                batches.append(dsa(x, generators[j]) if dsa.enabled else x)
                batch_targets.append(targets[idx])
                indices.append(idx)
            logits = forward(params, buffers, torch.stack(batches))
            if on_batch is not None:
                for j in range(k):
                    on_batch(j, indices[j], logits[j])
            loss = sum(classification_loss(logits[j], batch_targets[j]) for j in range(k))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        seconds += time.perf_counter() - start
        if after_epoch is not None or epoch == recipe.epochs - 1:
            _unstack_into(nets, params, buffers)
            if after_epoch is not None:
                after_epoch(epoch + 1, seconds)
                for net in nets:
                    net.train()
        if on_epoch is not None:
            on_epoch(epoch + 1, seconds)
    return nets


@torch.no_grad()
def _unstack_into(nets: list[nn.Module], params: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor]) -> None:
    for j, net in enumerate(nets):
        for name, tensor in net.named_parameters():
            tensor.copy_(params[name][j])
        for name, tensor in net.named_buffers():
            tensor.copy_(buffers[name][j])


__all__ = ["BatchHook", "EpochHook", "can_vectorise", "fit_networks_vectorised"]
