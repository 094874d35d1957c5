"""Preprocessing of a whole loaded dataset (shared by distillation, expert training and scoring)."""

from __future__ import annotations

from datadistill.data import LabelledImages, SplitDataset
from datadistill.preprocess.zca import ZCA


def whiten_dataset(data: SplitDataset, eps: float | None) -> tuple[SplitDataset, ZCA | None]:
    """ZCA-whiten both splits with a ZCA fitted on the training images (``eps`` None: unchanged).

    The fit is deterministic, so every command that whitens the same training set with the same
    ``eps`` (experts, distillation, evaluation) uses the same matrices.

    Returns:
        (the whitened dataset, the ZCA) or (``data``, None).
    """
    if eps is None:
        return data, None
    zca = ZCA.fit(data.train.images, eps=eps)
    return (SplitDataset(data.spec, LabelledImages(zca.whiten(data.train.images), data.train.labels),
                         LabelledImages(zca.whiten(data.test.images), data.test.labels)), zca)
