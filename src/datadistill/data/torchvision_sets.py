"""MNIST and Fashion-MNIST through torchvision's dataset classes and on-disk layout
(``ROOT/MNIST/raw/*-ubyte``, ``ROOT/FashionMNIST/raw/*-ubyte``)."""

from __future__ import annotations

from pathlib import Path

import torch
from torchvision import datasets as tvd

from datadistill.data.base import DATASETS, DatasetSpec, LabelledImages, SplitDataset
from datadistill.errors import DatasetNotFoundError

MNIST_SPEC = DatasetSpec(
    name="mnist", channels=1, image_size=(28, 28), class_names=tuple(str(i) for i in range(10)),
    mean=(0.1307,), std=(0.3081,), dsa_strategy="color_crop_cutout_scale_rotate",
)
FASHION_MNIST_SPEC = DatasetSpec(
    name="fashion_mnist", channels=1, image_size=(28, 28),
    class_names=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                 "Bag", "Ankle boot"),
    mean=(0.2861,), std=(0.3530,), dsa_strategy="color_crop_cutout_flip_scale_rotate",
)


def _normalise_uint8(data: torch.Tensor, spec: DatasetSpec) -> torch.Tensor:
    """uint8 (N, H, W) → float32 (N, 1, H, W) normalised with the spec's mean/std."""
    x = data.to(torch.float32).div_(255.0).unsqueeze(1)
    return x.sub_(spec.mean[0]).div_(spec.std[0])


def _load_idx_dataset(cls, spec: DatasetSpec, root: Path) -> SplitDataset:
    splits = []
    for train in (True, False):
        try:
            ds = cls(str(root), train=train, download=False)
        except RuntimeError as exc:  # torchvision: "Dataset not found. You can use download=True ..."
            raise DatasetNotFoundError(
                f"{spec.name} not found under {root}: run `datadistill data prepare {spec.name}"
                f" --data-root {root}` first"
            ) from exc
        splits.append(LabelledImages(_normalise_uint8(ds.data, spec), ds.targets.to(torch.int64)))
    return SplitDataset(spec, splits[0], splits[1])


@DATASETS.register("mnist")
def load_mnist(root: Path) -> SplitDataset:
    """MNIST, 60,000 / 10,000 images of 1×28×28, 10 classes (LeCun et al., 1998)."""
    return _load_idx_dataset(tvd.MNIST, MNIST_SPEC, root)


@DATASETS.register("fashion_mnist")
def load_fashion_mnist(root: Path) -> SplitDataset:
    """Fashion-MNIST, 60,000 / 10,000 images of 1×28×28, 10 classes (Xiao et al., 2017)."""
    return _load_idx_dataset(tvd.FashionMNIST, FASHION_MNIST_SPEC, root)
