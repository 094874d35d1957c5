"""What a run reports about its dataset: images per class, the imbalance, a one-line summary, and
``datadistill data info``'s figures."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from datadistill.data import DatasetSpec, SplitDataset, load_dataset


def class_counts(data: SplitDataset) -> dict[str, list[int]]:
    """Real images per class in each split, ``{"train": [...], "test": [...]}``."""
    k = data.spec.num_classes
    return {name: torch.bincount(split.labels.cpu(), minlength=k)[:k].tolist()
            for name, split in (("train", data.train), ("test", data.test))}


def imbalance_line(spec: DatasetSpec, counts: Sequence[int]) -> str:
    """``"train images per class: HP 1545, SSA 630 (imbalance 2.45:1)"`` (the largest over the smallest class)."""
    shown = ", ".join(f"{n} {c}" for n, c in zip(spec.class_names[:10], counts[:10]))
    more = f", … ({len(counts)} classes)" if len(counts) > 10 else ""
    ratio = max(counts) / max(min(counts), 1)
    return f"train images per class: {shown}{more} (imbalance {ratio:.2f}:1)"


def spec_line(data: SplitDataset) -> str:
    spec = data.spec
    how = "streamed from files" if data.train.streamed else "in memory"
    return (f"{spec.name}: {len(data.train)} train / {len(data.test)} test images of "
            f"{spec.channels}×{spec.image_size[0]}×{spec.image_size[1]}, {spec.num_classes} classes, {how}; "
            f"mean {tuple(round(m, 4) for m in spec.mean)}, std {tuple(round(s, 4) for s in spec.std)}")


def dataset_info(name: str, data_root: str | None = None, **options) -> dict[str, Any]:
    """What ``datadistill data info`` prints: sizes, classes, images per class, imbalance, mean/std and
    the training set's float32 size in bytes (``options``: image_size, stream, num_workers)."""
    import math

    data = load_dataset(name, data_root, **options)
    counts = class_counts(data)
    spec = data.spec
    return {"dataset": spec.name, "channels": spec.channels, "image_size": list(spec.image_size),
            "class_names": list(spec.class_names), "class_counts": counts, "mean": list(spec.mean),
            "std": list(spec.std), "streamed": bool(data.train.streamed),
            "train_bytes": len(data.train) * math.prod(data.train.image_shape) * 4,
            "summary": spec_line(data), "imbalance": imbalance_line(spec, counts["train"])}


__all__ = ["class_counts", "dataset_info", "imbalance_line", "spec_line"]
