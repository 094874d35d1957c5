"""Class subsets and label maps: a dataset restricted to some of its classes, relabelled ``0 … c − 1``,
and the map back to the dataset's (global) class ids.

Used wherever a method must see only some classes: a continual-learning step condenses its own
classes, a FedD3 client distils the classes it holds. Labels are int64 tensors; ``classes`` is a
sequence of distinct global class ids whose order defines the local ids (``classes[j]`` ↔ ``j``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch

from datadistill.data.base import LabelledImages, SplitDataset


def class_indices(labels: torch.Tensor, classes: Sequence[int]) -> torch.Tensor:
    """The positions (1-D int64, ascending, on ``labels``' device) of the labels that are in ``classes``."""
    wanted = torch.tensor(list(classes), dtype=labels.dtype, device=labels.device)
    return torch.isin(labels, wanted).nonzero().flatten()


def _with_labels(images, indices: torch.Tensor, labels: torch.Tensor):
    """The images at ``indices`` (in memory or streamed) labelled ``labels``."""
    if isinstance(images, LabelledImages):
        return LabelledImages(images.take(indices), labels)
    subset = images.subset(indices)  # a new streamed set: set its labels (the decoded labels are unused)
    subset.labels = labels
    return subset


def class_subset(data: SplitDataset, classes: Sequence[int]) -> SplitDataset:
    """The dataset restricted to ``classes``, relabelled ``classes[j]`` → ``j``.

    Args:
        data: the whole dataset (in memory or streamed); its labels are global ids.
        classes: distinct global class ids; their order defines the local labels 0 … c − 1.

    Returns:
        A :class:`SplitDataset` whose spec has the names of ``classes`` (same name, shape, mean, std
        and DSA default) and whose train and test splits hold only those classes' images, in their
        original order, with local int64 labels (on the CPU).
    """
    classes = list(classes)
    local = torch.full((data.spec.num_classes,), -1, dtype=torch.int64)
    local[torch.tensor(classes, dtype=torch.int64)] = torch.arange(len(classes))
    spec = dataclasses.replace(data.spec, class_names=tuple(data.spec.class_names[c] for c in classes))
    splits = []
    for split in (data.train, data.test):
        idx = class_indices(split.labels, classes)
        splits.append(_with_labels(split, idx.cpu(), local[split.labels[idx].cpu()]))
    return SplitDataset(spec, *splits)


def to_global(labels: torch.Tensor, classes: Sequence[int]) -> torch.Tensor:
    """Local labels (N,) int64 in 0 … c − 1 → the global ids ``classes[label]``, (N,) int64 on the CPU
    (the inverse of :func:`class_subset`'s relabelling)."""
    return torch.tensor(list(classes), dtype=torch.int64)[labels.cpu()]


__all__ = ["class_indices", "class_subset", "to_global"]
