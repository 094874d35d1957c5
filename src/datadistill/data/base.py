"""Dataset specification, tensors in memory, the per-class real set and the dataset registry."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from datadistill.errors import ConfigError
from datadistill.registry import Registry


@dataclass(frozen=True)
class DatasetSpec:
    """What a method and the evaluation need to know about a dataset.

    Attributes:
        name: registry name (e.g. ``"mnist"``).
        channels: C.
        image_size: (H, W) in pixels.
        class_names: one name per class, index = label.
        mean, std: per-channel normalisation constants applied to pixels scaled to [0, 1].
        dsa_strategy: default DSA strategy for this dataset.
    """

    name: str
    channels: int
    image_size: tuple[int, int]
    class_names: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    dsa_strategy: str

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def denormalise(self, images: torch.Tensor) -> torch.Tensor:
        """Map normalised images (N, C, H, W) back to pixels in [0, 1] (clamped)."""
        mean = torch.tensor(self.mean, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
        return (images * std + mean).clamp(0.0, 1.0)


@dataclass
class LabelledImages:
    """Images (N, C, H, W) float32 normalised, labels (N,) int64."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def to(self, device: torch.device | str) -> "LabelledImages":
        return LabelledImages(self.images.to(device), self.labels.to(device))


@dataclass
class SplitDataset:
    """A loaded dataset: its spec, the training split and the test split."""

    spec: DatasetSpec
    train: LabelledImages
    test: LabelledImages

    def carve_validation(self, size: int, generator: torch.Generator) -> tuple[LabelledImages, LabelledImages]:
        """Split the training set into (train minus validation, validation of ``size`` images).

        The validation images are drawn at random with ``generator``; the test set is untouched.

        Raises:
            ConfigError: if ``size`` is not in [1, len(train) - 1].
        """
        n = len(self.train)
        if not 0 < size < n:
            raise ConfigError(f"validation size {size} must be between 1 and {n - 1}")
        perm = torch.randperm(n, generator=generator)
        val, rest = perm[:size], perm[size:]
        return (LabelledImages(self.train.images[rest], self.train.labels[rest]),
                LabelledImages(self.train.images[val], self.train.labels[val]))


class RealSet:
    """The real training set indexed by class, for per-class sampling.

    Args:
        data: the training images and labels.
        num_classes: number of classes; every class must have at least one image.

    Raises:
        ConfigError: if a class has no image.
    """

    def __init__(self, data: LabelledImages, num_classes: int) -> None:
        self.images = data.images
        self.labels = data.labels
        self.num_classes = num_classes
        order = torch.argsort(data.labels, stable=True)
        counts = torch.bincount(data.labels, minlength=num_classes)
        self.class_counts = counts.tolist()
        empty = [c for c, k in enumerate(self.class_counts) if k == 0]
        if empty:
            raise ConfigError(f"class {empty[0]} has no training image")
        self.indices_by_class = list(torch.split(order, self.class_counts))

    @property
    def min_class_count(self) -> int:
        return min(self.class_counts)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` random images of every class without replacement, shape (num_classes, n, C, H, W).

        Raises:
            ConfigError: if ``n`` exceeds the smallest class.
        """
        if n > self.min_class_count:
            raise ConfigError(f"cannot sample {n} images per class: the smallest class has {self.min_class_count}")
        idx = torch.stack([
            ids[torch.randperm(len(ids), generator=generator)[:n]] for ids in self.indices_by_class
        ])
        return self.images[idx.flatten().to(self.images.device)].view(self.num_classes, n, *self.images.shape[1:])


DatasetLoader = Callable[[Path], SplitDataset]
DATASETS: Registry[DatasetLoader] = Registry("dataset")


def resolve_data_root(data_root: str | os.PathLike | None = None) -> Path:
    """``data_root`` if given, else ``$DATADISTILL_DATA``, else ``$XDG_CACHE_HOME/datadistill``
    (``~/.cache/datadistill``)."""
    if data_root:
        return Path(data_root).expanduser()
    env = os.environ.get("DATADISTILL_DATA")
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "datadistill"


def load_dataset(name: str, data_root: str | os.PathLike | None = None) -> SplitDataset:
    """Load a registered dataset from ``data_root`` (see :func:`resolve_data_root`).

    Raises:
        UnknownNameError: unknown dataset name (lists the registered ones).
        DatasetNotFoundError: files missing; the message gives the command that prepares them.
    """
    return DATASETS.get(name)(resolve_data_root(data_root))


def list_datasets() -> list[str]:
    return DATASETS.names()


__all__ = ["DATASETS", "DatasetSpec", "LabelledImages", "RealSet", "SplitDataset",
           "load_dataset", "list_datasets", "resolve_data_root"]
