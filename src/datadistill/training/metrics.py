"""What a trained classifier is measured by: top-1 accuracy (overall and per class) on a labelled
set, and the number of classes a labelled set has. Accuracies are in percent."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from datadistill.data.base import LabelledImages


@torch.no_grad()
def class_correct(net: torch.nn.Module, data: LabelledImages, device: torch.device, num_classes: int,
                  batch_size: int = 1000) -> tuple[torch.Tensor, torch.Tensor]:
    """Correct top-1 predictions and images per class of ``net`` on ``data`` (in memory or streamed),
    two (num_classes,) int64 CPU tensors; the net is left in eval mode."""
    net.eval()
    correct = torch.zeros(num_classes, dtype=torch.int64)
    count = torch.zeros(num_classes, dtype=torch.int64)
    for idx, x in data.batches(None, batch_size):
        y = data.labels[idx.to(data.labels.device)].cpu()
        hit = (net(x.to(device, non_blocking=True)).argmax(dim=1).cpu() == y)
        correct += torch.bincount(y[hit], minlength=num_classes)[:num_classes]
        count += torch.bincount(y, minlength=num_classes)[:num_classes]
    return correct, count


def per_class_percent(correct: torch.Tensor, count: torch.Tensor) -> list[float | None]:
    """Per-class accuracy in percent (None where a class has no image)."""
    return [100.0 * int(c) / int(n) if int(n) else None for c, n in zip(correct, count)]


@torch.no_grad()
def accuracy(net: torch.nn.Module, data: LabelledImages, device: torch.device, batch_size: int = 1000) -> float:
    """Top-1 accuracy in percent of ``net`` on ``data`` (in memory or streamed); the net is left in eval mode."""
    net.eval()
    correct = 0
    for idx, x in data.batches(None, batch_size):
        y = data.labels[idx.to(data.labels.device)].to(device, non_blocking=True)
        correct += int((net(x.to(device, non_blocking=True)).argmax(dim=1) == y).sum())
    return 100.0 * correct / max(len(data), 1)


def num_classes(labels: torch.Tensor, metadata: Mapping[str, Any] | None = None) -> int:
    """The number of classes of a labelled set (e.g. a synthetic set: ``num_classes(syn.labels,
    syn.metadata)``): ``metadata["num_classes"]``, else the length of ``metadata["class_names"]``,
    else the width of (N, K) soft labels, else the largest (N,) hard label + 1."""
    metadata = metadata or {}
    return int(metadata.get("num_classes") or len(metadata.get("class_names") or []) or
               (labels.shape[1] if labels.dim() == 2 else int(labels.max()) + 1))


__all__ = ["accuracy", "class_correct", "num_classes", "per_class_percent"]
