"""Preprocessing of a whole loaded dataset (shared by distillation, expert training and scoring)."""

from __future__ import annotations

from datadistill.data import LabelledImages, SplitDataset
from datadistill.preprocess.zca import ZCA


def check_zca_possible(data: SplitDataset, eps: float | None) -> None:
    """Raise ConfigError when ZCA (``eps`` not None) is asked for on a streamed dataset: the fit needs
    every training image in memory (and D = C·H·W small enough for a D × D matrix)."""
    if eps is not None and data.train.streamed:
        from datadistill.errors import ConfigError

        raise ConfigError(f"zca_eps = {eps}: ZCA needs the whole training set in memory, but {data.spec.name} "
                          "is streamed from its files; use stream off (or no ZCA)")


def fit_zca(data: SplitDataset, eps: float) -> ZCA:
    """The ZCA of ``data``'s training set as the reference code fits it: kornia's ``ZCAWhitening(eps)``
    on the pixels (the dataset's mean/std normalisation undone; MTT/DATM/PAD drop ``Normalize`` with
    ``--zca``). The returned ZCA whitens images normalised with ``data.spec``'s mean/std.

    Raises:
        ConfigError: the dataset is streamed, or ``eps`` is not a finite number > 0.
    """
    check_zca_possible(data, eps)
    return ZCA.fit(data.train.images, eps=eps, norm_mean=data.spec.mean, norm_std=data.spec.std)


def whiten_dataset(data: SplitDataset, eps: float | None) -> tuple[SplitDataset, ZCA | None]:
    """ZCA-whiten both splits with the ZCA of :func:`fit_zca` (``eps`` None: unchanged).

    The fit is deterministic, so every command that whitens the same training set with the same
    ``eps`` (experts, distillation, evaluation) uses the same matrices.

    Returns:
        (the whitened dataset, the ZCA) or (``data``, None).
    """
    if eps is None:
        return data, None
    zca = fit_zca(data, eps)
    return (SplitDataset(data.spec, LabelledImages(zca.whiten(data.train.images), data.train.labels),
                         LabelledImages(zca.whiten(data.test.images), data.test.labels)), zca)
