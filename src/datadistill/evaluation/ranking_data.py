"""The data of the DD-Ranking scores (:mod:`.ranking_protocol`): the class-balanced validation split
carved from the real training set, the random real subsets R with the class counts of S, the seeds
of the draws, and a teacher network's soft labels.

Seeds follow :func:`datadistill.experiments.seeds.derived_rng` / ``derived_seed`` (this layer sits
below ``experiments`` and writes the scheme inline: ``numpy.random.SeedSequence([seed, stream,
*keys])``), one stream per purpose, so that the validation split, the selection subsets, the runs'
subsets and the selection networks never share a seed, and a run's R does not depend on the set
being scored: every set of one dataset and class counts is compared with the same R at one seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from datadistill.data import LabelledImages
from datadistill.errors import ConfigError
from datadistill.preprocess import ZCA

VAL_STREAM = 1
"""The validation split: ``SeedSequence([seed, 1])``."""
RUN_SUBSET_STREAM = 2
"""R of final run k: ``SeedSequence([seed, 2, k])``."""
SELECT_SUBSET_STREAM = 3
"""R of selection network j (the lr search for R): ``SeedSequence([seed, 3, j])``."""
SELECT_NETWORK_STREAM = 4
"""Initialisation, shuffles and DSA of selection network j: seed word of ``SeedSequence([seed, 4, j])``."""


def stream_rng(seed: int, stream: int, *keys: int) -> np.random.Generator:
    """``numpy.random.default_rng(SeedSequence([seed, stream, *keys]))`` (the ``derived_rng`` scheme)."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(stream), *(int(k) for k in keys)]))


def stream_seed(seed: int, stream: int, *keys: int) -> int:
    """The first word of ``SeedSequence([seed, stream, *keys])`` modulo 2³¹ (the ``derived_seed`` scheme)."""
    words = np.random.SeedSequence([int(seed), int(stream), *(int(k) for k in keys)]).generate_state(1)
    return int(words[0]) % (2 ** 31)


def class_counts(labels: torch.Tensor, num_classes: int) -> list[int]:
    """Images per class of (N,) int64 ``labels``, a list of ``num_classes`` ints."""
    return torch.bincount(labels.cpu(), minlength=num_classes)[:num_classes].tolist()


def validation_split(labels: torch.Tensor, num_classes: int, val_size: int, seed: int,
                     reserve: list[int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Split the training set into a pool (for R) and a class-balanced validation split.

    Every class gives ``val_size // num_classes`` validation images, drawn without replacement by
    ``stream_rng(seed, VAL_STREAM)`` (class by class, in class order): the same split for every set
    scored at this seed. The pool is every other image; R is drawn from it only.

    Args:
        labels: (N,) int64 labels of the real training set.
        val_size: validation images in all (≥ ``num_classes``; rounded down to a multiple of it).
        reserve: per class, the images that must stay in the pool (the class counts of R).

    Returns:
        (pool indices, validation indices), 1-D int64 CPU tensors, sorted, disjoint.

    Raises:
        ConfigError: ``val_size`` below the number of classes, or a class too small to give its
            validation images and keep ``reserve`` images in the pool.
    """
    if val_size < num_classes:
        raise ConfigError(f"val_size = {val_size} is invalid: expected at least one validation image per class "
                          f"(≥ {num_classes})")
    per_class = val_size // num_classes
    rng = stream_rng(seed, VAL_STREAM)
    labels = labels.cpu()
    val_parts, pool_parts = [], []
    for c in range(num_classes):
        members = torch.nonzero(labels == c).flatten().numpy()
        need = per_class + (reserve[c] if reserve else 0)
        if len(members) < need:
            raise ConfigError(f"class {c} has {len(members)} training images: too few for {per_class} validation "
                              f"images and {need - per_class} for the random subset R; lower val_size")
        chosen = rng.permutation(members)
        val_parts.append(chosen[:per_class])
        pool_parts.append(chosen[per_class:])
    val = torch.from_numpy(np.sort(np.concatenate(val_parts))).to(torch.int64)
    pool = torch.from_numpy(np.sort(np.concatenate(pool_parts))).to(torch.int64)
    return pool, val


def draw_subset(pool: torch.Tensor, labels: torch.Tensor, counts: list[int], rng: np.random.Generator) -> torch.Tensor:
    """A random subset of ``pool`` with ``counts[c]`` images of class c, without replacement.

    Args:
        pool: 1-D int64 indices into the training set (the validation images left out).
        labels: (N,) int64 labels of the whole training set.
        counts: images per class (the class counts of S).
        rng: the draw's generator (classes drawn in class order).

    Returns:
        1-D int64 indices into the training set, class by class.

    Raises:
        ConfigError: a class of the pool has fewer images than asked.
    """
    pool_labels = labels.cpu()[pool]
    parts = []
    for c, n in enumerate(counts):
        members = pool[pool_labels == c].numpy()
        if len(members) < n:
            raise ConfigError(f"cannot draw {n} random images of class {c}: the training pool has {len(members)}")
        parts.append(rng.choice(members, size=n, replace=False) if n else members[:0])
    return torch.from_numpy(np.concatenate(parts)).to(torch.int64)


@dataclass
class Teacher:
    """A trained network whose logits are soft labels (DD-Ranking's soft-label mode ``S``: the
    teacher labels each image once, before training, without augmentation).

    Attributes:
        net: the network (eval mode), fed normalised images, whitened with ``zca`` when set.
        zca: the whitening its inputs live in (None: plain normalised images).
        metadata: the model file's metadata (``model``, ``dataset``, ...).
        file: where it was read from (for the record).
    """

    net: nn.Module
    zca: ZCA | None = None
    metadata: dict | None = None
    file: str | None = None

    @torch.no_grad()
    def soft_labels(self, images: torch.Tensor, device: torch.device, batch_size: int = 500) -> torch.Tensor:
        """(N, K) float32 CPU logits of ``images`` ((N, C, H, W) float32, normalised, not whitened)."""
        net = self.net.to(device).eval()
        out = []
        for start in range(0, len(images), batch_size):
            x = images[start:start + batch_size].to(device)
            if self.zca is not None:
                x = self.zca.to(device).whiten(x)
            out.append(net(x).float().cpu())
        return torch.cat(out) if out else torch.zeros(0, 0)


def subset_images(train: LabelledImages, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(images (n, C, H, W) float32 normalised, labels (n,) int64) of training images ``indices``."""
    return train.take(indices).float(), train.labels[indices.to(train.labels.device)].cpu()


__all__ = ["RUN_SUBSET_STREAM", "SELECT_NETWORK_STREAM", "SELECT_SUBSET_STREAM", "Teacher", "VAL_STREAM",
           "class_counts", "draw_subset", "stream_rng", "stream_seed", "subset_images", "validation_split"]
