"""Coreset baselines of the dataset-distillation literature (DC paper §4, tables 1–2).

* ``random``: ``ipc`` real images per class drawn uniformly without replacement.
* ``herding``: greedy moment matching (Welling, ICML 2009; as used by iCaRL and the DC paper):
  per class, repeatedly add the image whose inclusion brings the mean feature of the selected
  images closest (Euclidean) to the class's mean feature.
* ``k_center``: greedy k-center (Sener & Savarese, ICLR 2018): per class, start from the image
  nearest the class's mean feature, then repeatedly add the image farthest from its nearest
  selected image.

Features are the embeddings (:meth:`ConvNet.embed`, the flattened last feature map) of a network
trained ``feature_epochs`` epochs on the real training set (0 = a randomly initialised network).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from datadistill.data import DatasetSpec, RealSet
from datadistill.errors import ConfigError
from datadistill.models import build_model
from datadistill.training import TrainRecipe, fit_network, holds_recipe

SELECTIONS = ("random", "herding", "k_center")


def herding_order(features: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of ``k`` rows chosen by herding, in the order chosen.

    Step j (1-based) picks the unselected row i minimising ‖μ − (s + f_i) / j‖₂, where μ is the
    mean of all rows and s the sum of the rows chosen so far; ties go to the lowest index.

    Args:
        features: (N, D) float.
        k: rows to pick, 1 ≤ k ≤ N.

    Returns:
        (k,) int64, distinct.

    Raises:
        ValueError: k out of range.
    """
    n = features.shape[0]
    if not 1 <= k <= n:
        raise ValueError(f"cannot pick {k} of {n} rows")
    f = features.double()
    mu = f.mean(dim=0)
    chosen = torch.zeros(n, dtype=torch.bool)
    total = torch.zeros_like(mu)
    order = []
    for j in range(1, k + 1):
        dist = ((mu - (total + f) / j) ** 2).sum(dim=1)
        dist[chosen] = float("inf")
        i = int(torch.argmin(dist))
        order.append(i)
        chosen[i] = True
        total += f[i]
    return torch.tensor(order, dtype=torch.long)


def k_center_order(features: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of ``k`` rows chosen by greedy k-center, in the order chosen.

    The first is the row nearest the mean; each next one is the row whose distance to its nearest
    chosen row is largest (ties to the lowest index). Every row then lies within the returned
    covering radius of a chosen row, at most twice the optimal k-center radius.

    Args:
        features: (N, D) float.
        k: 1 ≤ k ≤ N.

    Returns:
        (k,) int64, distinct.

    Raises:
        ValueError: k out of range.
    """
    n = features.shape[0]
    if not 1 <= k <= n:
        raise ValueError(f"cannot pick {k} of {n} rows")
    f = features.double()
    first = int(torch.argmin(((f - f.mean(dim=0)) ** 2).sum(dim=1)))
    order = [first]
    nearest = ((f - f[first]) ** 2).sum(dim=1)
    nearest[first] = -1.0  # chosen rows never win again, even among duplicates at distance 0
    for _ in range(k - 1):
        i = int(torch.argmax(nearest))
        order.append(i)
        nearest = torch.minimum(nearest, ((f - f[i]) ** 2).sum(dim=1))
        nearest[order] = -1.0
    return torch.tensor(order, dtype=torch.long)


FEATURE_RECIPE = TrainRecipe(epochs=1, lr=0.01, batch_size=256, momentum=0.9, weight_decay=5e-4, schedule="constant",
                             augmentation="none")
"""The feature network's training: one epoch of SGD (lr 0.01, momentum 0.9, weight decay 5e-4, constant
lr) on the real training set, mini-batches of 256, no augmentation."""


@holds_recipe("epochs", "lr", "batch_size")
@dataclass
class FeatureSettings:
    """The network whose embedding herding and k-center work in; the flat keys ``epochs``, ``lr``,
    ``batch_size`` are the recipe's (:func:`datadistill.training.holds_recipe`).

    Attributes:
        model: registered model name.
        recipe: the training on the real set before extracting features (default
            :data:`FEATURE_RECIPE`): ``epochs`` ≥ 0 (0 = a random network), SGD ``lr``,
            ``batch_size`` (also the extraction's).
    """

    model: str = "convnet"
    recipe: TrainRecipe = FEATURE_RECIPE

    def __post_init__(self) -> None:
        if self.recipe.lr is None:
            raise ConfigError("feature network settings invalid: lr is unset, expected a number > 0")


def class_features(real: RealSet, spec: DatasetSpec, settings: FeatureSettings, device: torch.device,
                   generator: torch.Generator) -> list[torch.Tensor]:
    """Embeddings of every real training image, one (N_c, D) float32 CPU tensor per class (rows in the
    order of ``real.indices_by_class[c]``). Network weights come from torch's default generator; the
    training's shuffles from ``generator``."""
    data = real.data  # in memory or streamed from its files
    net = build_model(settings.model, spec.channels, spec.num_classes, spec.image_size).to(device)
    fit_network(net, data, settings.recipe, generator)
    net.eval()
    with torch.no_grad():
        feats = torch.cat([net.embed(x.to(device)).cpu() for _, x in data.batches(None, settings.recipe.batch_size)])
    return [feats[idx] for idx in real.indices_by_class]


def select_coreset(name: str, real: RealSet, spec: DatasetSpec, ipc: int, device: torch.device,
                   generator: torch.Generator, features: FeatureSettings | None = None) -> torch.Tensor:
    """``ipc`` real images of every class chosen by ``name``, as (G·ipc, C, H, W) float32 on the CPU,
    class-major (the order of the synthetic-set labels); within a class, in selection order.

    Raises:
        ConfigError: unknown ``name`` or ``ipc`` larger than the smallest class.
    """
    if name not in SELECTIONS:
        raise ConfigError(f"unknown coreset selection {name!r}: expected one of {', '.join(SELECTIONS)}")
    if not 1 <= ipc <= real.min_class_count:
        raise ConfigError(f"ipc {ipc} out of range: expected 1 to {real.min_class_count} (smallest class)")
    if name == "random":
        return real.sample(ipc, generator).flatten(0, 1)
    feats = class_features(real, spec, features or FeatureSettings(), device, generator)
    pick = herding_order if name == "herding" else k_center_order
    chosen = [idx[pick(f, ipc)] for idx, f in zip(real.indices_by_class, feats)]
    return real.take(torch.cat(chosen))
