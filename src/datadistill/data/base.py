"""Dataset specification, tensors in memory, the per-class real set and the dataset registry."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from datadistill.errors import ConfigError, DatasetLayoutError
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
    """Images (N, C, H, W) float32 normalised, labels (N,) int64, held in memory.

    :class:`datadistill.data.streamed.StreamedImages` offers the same reading interface
    (``take``, ``batches``, ``subset``, ``image_shape``, ``labels``) for file-backed sets decoded on demand.
    """

    images: torch.Tensor
    labels: torch.Tensor

    streamed = False

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        return tuple(self.images.shape[1:])

    def to(self, device: torch.device | str) -> "LabelledImages":
        return LabelledImages(self.images.to(device), self.labels.to(device))

    def take(self, indices: torch.Tensor) -> torch.Tensor:
        """Images ``indices`` (any shape of int64 indices, flattened), as (n, C, H, W) float32."""
        return self.images[indices.flatten().to(self.images.device)]

    def subset(self, indices: torch.Tensor) -> "LabelledImages":
        """The images and labels at ``indices`` (1-D int64), as a new set."""
        return LabelledImages(self.take(indices), self.labels[indices.to(self.labels.device)])

    def batches(self, order: torch.Tensor | None = None, batch_size: int = 256):
        """Yield ``(indices, images)`` over ``order`` (default: all, in order) in chunks of
        ``batch_size``; images (b, C, H, W) float32 on the set's device."""
        yield from iter_batches(self.images, order if order is not None else torch.arange(len(self)), batch_size)


def iter_batches(images, order: torch.Tensor, batch_size: int):
    """``(indices, images[indices])`` for consecutive chunks of ``order``.

    Args:
        images: an (N, C, H, W) tensor, or a set with a ``batches(order, batch_size)`` method
            (:class:`LabelledImages`, :class:`~datadistill.data.streamed.StreamedImages`, which decodes
            the chunks through a DataLoader with workers).
        order: 1-D int64 indices (a permutation or a subset).
    """
    if not isinstance(images, torch.Tensor):
        yield from images.batches(order, batch_size)
        return
    for i in range(0, len(order), batch_size):
        idx = order[i:i + batch_size]
        yield idx, images[idx.to(images.device)]


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
        return self.train.subset(rest), self.train.subset(val)


class RealSet:
    """The real training set indexed by class, for per-class sampling.

    Only the images sampled are read: a streamed set decodes just those files, so per-class sampling
    never loads the whole training set.

    Args:
        data: the training images and labels (:class:`LabelledImages` or a streamed set).
        num_classes: number of classes; every class must have at least one image.

    Raises:
        ConfigError: if a class has no image.
    """

    def __init__(self, data: LabelledImages, num_classes: int) -> None:
        self.data = data
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

    def sample(self, n: int, generator: torch.Generator | None = None,
               classes: Sequence[int] | None = None) -> torch.Tensor:
        """``n`` random images of every class without replacement, shape (num_classes, n, C, H, W).

        ``classes``: read only these classes' images, (len(classes), n, C, H, W). The draws of every
        class are made all the same, so ``generator`` moves exactly as for the whole set (the ranks
        of a class-sharded run each read their own classes from one shared random stream).

        Raises:
            ConfigError: if ``n`` exceeds the smallest class.
        """
        if n > self.min_class_count:
            raise ConfigError(f"cannot sample {n} images per class: the smallest class has {self.min_class_count}")
        idx = torch.stack([
            ids[torch.randperm(len(ids), generator=generator)[:n]] for ids in self.indices_by_class
        ])
        if classes is not None:
            idx = idx[list(classes)]
        return self.data.take(idx).view(idx.shape[0], n, *self.data.image_shape)

    @property
    def images(self) -> torch.Tensor:
        """All training images (N, C, H, W) of an in-memory set.

        Raises:
            ConfigError: for a streamed set (use :meth:`take` or ``data.batches``).
        """
        return self.data.images

    def take(self, indices: torch.Tensor) -> torch.Tensor:
        """Training images ``indices`` (int64, any shape, flattened) as (n, C, H, W) float32."""
        return self.data.take(indices)


@dataclass(frozen=True)
class DataOptions:
    """How a dataset is read.

    Attributes:
        image_size: square side in pixels to resize every image to (antialiased); None = the
            dataset's own size.
        stream: ``auto``, ``on`` or ``off`` (see :class:`datadistill.config.DistillConfig`).
        num_workers: DataLoader worker processes decoding a streamed set.
        mean, std: normalisation to use instead of the dataset's (e.g. a synthetic set's stored
            values, so its test set is normalised exactly as it was); None = the dataset's.
        path: the folder of a parameterised dataset (``imagefolder:PATH``).
    """

    image_size: int | None = None
    stream: str = "auto"
    num_workers: int = 2
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    path: str | None = None


DatasetLoader = Callable[[Path, DataOptions], SplitDataset]
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


def split_dataset_name(name: str) -> tuple[str, str | None]:
    """``"imagefolder:/data/x"`` → ``("imagefolder", "/data/x")``; ``"mnist"`` → ``("mnist", None)``."""
    kind, sep, arg = str(name).partition(":")
    return kind.lower(), (arg if sep else None)


def check_dataset_name(name: str) -> None:
    """Raise UnknownNameError for an unregistered dataset, ConfigError for a missing or needless ``:PATH``."""
    kind, arg = split_dataset_name(name)
    DATASETS.get(kind)
    if kind in PATH_DATASETS and not arg:
        raise ConfigError(f"dataset {name!r} needs a folder: {kind}:/path/to/folder")
    if kind not in PATH_DATASETS and arg is not None:
        raise ConfigError(f"dataset {kind!r} takes no path (got {name!r}): use --data-root for its folder")


PATH_DATASETS = ("imagefolder",)


def load_dataset(name: str, data_root: str | os.PathLike | None = None, *, image_size: int | None = None,
                 stream: str = "auto", num_workers: int = 2, mean: tuple[float, ...] | None = None,
                 std: tuple[float, ...] | None = None) -> SplitDataset:
    """Load a registered dataset from ``data_root`` (see :func:`resolve_data_root`).

    Args:
        name: a registered name, or ``imagefolder:PATH``.
        image_size, stream, num_workers, mean, std: see :class:`DataOptions`.

    Raises:
        UnknownNameError: unknown dataset name (lists the registered ones).
        DatasetNotFoundError: files missing; the message gives the command that prepares them.
        DatasetLayoutError: files present but malformed (the message names the file and row).
        ConfigError: an invalid option (e.g. ``stream``).
        DatasetLayoutError: also for a dataset of fewer than two classes (:func:`check_class_count`).
    """
    check_dataset_name(name)
    if stream not in ("auto", "on", "off"):
        raise ConfigError(f"stream = {stream!r} is invalid: expected one of auto, on, off")
    if image_size is not None and int(image_size) < 8:
        raise ConfigError(f"image_size = {image_size!r} is invalid: expected an integer ≥ 8 (or unset)")
    kind, arg = split_dataset_name(name)
    options = DataOptions(image_size=None if image_size is None else int(image_size), stream=stream,
                          num_workers=num_workers, mean=None if mean is None else tuple(mean),
                          std=None if std is None else tuple(std), path=arg)
    data = DATASETS.get(kind)(resolve_data_root(data_root), options)
    check_class_count(data.spec.name, data.spec.class_names)
    return data


def check_class_count(name: str, class_names) -> None:
    """Refuse a dataset of fewer than two classes (nothing to tell apart: a distilled set of it, and
    any network trained on it, would be meaningless).

    Raises:
        DatasetLayoutError: naming the dataset, its class count and its classes.
    """
    if len(class_names) < 2:
        found = f" ({', '.join(map(repr, class_names))})" if class_names else ""
        hint = " (an image folder needs one sub-folder per class)" if str(name).startswith("imagefolder") else ""
        raise DatasetLayoutError(f"dataset {name} has {len(class_names)} class{found}: at least two classes "
                                 f"are needed{hint}")


def load_dataset_of(metadata: dict, data_root: str | os.PathLike | None = None, **options) -> SplitDataset:
    """The dataset a synthetic set (or saved model) was made from, read at the set's image size and
    normalised with the set's stored mean and std (``metadata`` holds ``dataset``, ``image_size``,
    ``mean``, ``std``)."""
    size = metadata.get("image_size")
    side = int(size[0]) if isinstance(size, (list, tuple)) and size else None
    return load_dataset(metadata["dataset"], data_root, image_size=side, mean=metadata.get("mean"),
                        std=metadata.get("std"), **options)


def list_datasets() -> list[str]:
    return DATASETS.names()


__all__ = ["DATASETS", "DataOptions", "DatasetSpec", "LabelledImages", "RealSet", "SplitDataset", "check_class_count",
           "check_dataset_name", "iter_batches", "load_dataset", "load_dataset_of", "list_datasets", "resolve_data_root",
           "split_dataset_name"]
