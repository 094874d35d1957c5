"""Datasets: a registry of loaders returning normalised train/test sets and a :class:`DatasetSpec`.

Images are float32 (N, C, H, W), normalised per channel with the dataset's mean and std:
``x = (pixel / 255 - mean) / std``. Labels are int64 (N,). Small datasets are held in memory
(:class:`LabelledImages`); large file-based ones are streamed from their files
(:class:`~datadistill.data.streamed.StreamedImages`, same reading interface).

Registered: ``mnist``, ``fashion_mnist``, ``cifar10``, ``cifar100``, ``svhn`` (torchvision's
layouts, :mod:`datadistill.data.torchvision_sets`), ``mhist``, ``tinyimagenet``, ``imagefolder:PATH``
(image files, :mod:`datadistill.data.files`). :mod:`datadistill.data.classes` restricts a dataset to
some classes (relabelled 0 … c − 1) and maps labels back.
"""

from datadistill.data.base import (
    DATASETS,
    DataOptions,
    DatasetSpec,
    LabelledImages,
    RealSet,
    SplitDataset,
    check_dataset_name,
    iter_batches,
    load_dataset,
    load_dataset_of,
    list_datasets,
    resolve_data_root,
    split_dataset_name,
)
from datadistill.data.classes import class_indices, class_subset, to_global
from datadistill.data.streamed import StreamedImages
from datadistill.registry import import_submodules

import_submodules(__name__, __path__)  # every module registers its loaders: a new dataset is one file

__all__ = [
    "DATASETS",
    "DataOptions",
    "DatasetSpec",
    "LabelledImages",
    "RealSet",
    "SplitDataset",
    "StreamedImages",
    "check_dataset_name",
    "class_indices",
    "class_subset",
    "iter_batches",
    "load_dataset",
    "load_dataset_of",
    "list_datasets",
    "resolve_data_root",
    "split_dataset_name",
    "to_global",
]
