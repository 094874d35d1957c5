"""Datasets: a registry of loaders returning normalised train/test tensors and a :class:`DatasetSpec`.

Images are float32 (N, C, H, W), normalised per channel with the dataset's mean and std:
``x = (pixel / 255 - mean) / std``. Labels are int64 (N,).
"""

from datadistill.data.base import (
    DATASETS,
    DatasetSpec,
    LabelledImages,
    RealSet,
    SplitDataset,
    load_dataset,
    list_datasets,
    resolve_data_root,
)
from datadistill.data import torchvision_sets as _torchvision_sets  # noqa: F401  (registers loaders)

__all__ = [
    "DATASETS",
    "DatasetSpec",
    "LabelledImages",
    "RealSet",
    "SplitDataset",
    "load_dataset",
    "list_datasets",
    "resolve_data_root",
]
