"""ZCA whitening of images, fitted on the pixels of the real training set.

Pixel space, as the reference code: MTT (Cazenavette et al., CVPR 2022; ``utils.py`` ``get_dataset``
of GeorgeCazenavette/mtt-distillation) and DATM/PAD (``utils/utils_baseline.py`` of
NUS-HPC-AI-Lab/DATM) drop the mean/std ``Normalize`` transform when ``--zca`` is on and fit
``kornia.enhance.ZCAWhitening(eps=0.1, compute_inv=True)`` on the raw [0, 1] pixels of the whole
training set. The library passes images around normalised per channel with the dataset's mean/std,
so a ZCA fitted here keeps that normalisation (``norm_mean``, ``norm_std``) and undoes it first:
``x_w = (x * std + mean - m) @ transform`` on the flattened images, ``m`` the pixel mean of the
training set. The whitened images are then exactly the reference's. A method distilling with ZCA
learns its synthetic images in this whitened space; the test set is whitened with the same fit
before evaluation, and images are unwhitened (back to normalised images) before display.

The transform is kornia's (``kornia.enhance.zca_mean``, the function behind ``ZCAWhitening``): with
the unbiased covariance ``Σ = U S Uᵀ`` of the flattened training pixels,
``transform = U (S + eps)^(-1/2) Uᵀ`` and ``inverse = U (S + eps)^(1/2) Uᵀ``. ``eps`` is added to
every eigenvalue, so the whitened training data has covariance ``U S/(S + eps) Uᵀ``: the identity
along directions of variance ≫ eps, shrunk towards 0 along the others (a regularised whitening that
does not blow up pixel noise). ``eps=0.1`` (the reference's, on pixels in [0, 1]) is the default.

Before issue #21 the fit was on the normalised images (pixels / σ, σ ≈ 0.2 on CIFAR: eps 0.1 there
is eps ≈ 0.004 on pixels, a 25× weaker regularisation). Files of that time store ``zca`` metadata
without ``normalisation``: they are read as they were written (a ZCA with no normalisation, whose
matrices apply to the normalised images directly), so such a set still evaluates as before.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from kornia.enhance import linear_transform, zca_mean

from datadistill.errors import ConfigError, SyntheticSetFileError

TENSOR_KEYS = ("zca_mean", "zca_transform", "zca_inverse")
DEFAULT_CHUNK = 4096


@dataclass(frozen=True)
class ZCA:
    """A fitted ZCA whitening of images of one shape.

    Attributes:
        mean: (1, D) float32 mean of the flattened training pixels, D = C*H*W.
        transform: (D, D) float32 whitening matrix ``U (S + eps)^(-1/2) Uᵀ``.
        inverse: (D, D) float32 inverse matrix ``U (S + eps)^(1/2) Uᵀ``.
        eps: regulariser added to the covariance eigenvalues (> 0).
        shape: (C, H, W) of the images it applies to.
        norm_mean, norm_std: the per-channel normalisation (C values each, std > 0) of the images
            :meth:`whiten` takes and :meth:`unwhiten` returns; it is undone before whitening, so the
            matrices act on pixels ``x * norm_std + norm_mean``. None (both): the matrices act on
            the images as given (kornia's ``ZCAWhitening``; files written before issue #21).
    """

    mean: torch.Tensor
    transform: torch.Tensor
    inverse: torch.Tensor
    eps: float
    shape: tuple[int, int, int]
    norm_mean: tuple[float, ...] | None = None
    norm_std: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        _check_normalisation(self.norm_mean, self.norm_std, self.shape[0], ConfigError)

    @classmethod
    def fit(cls, images: torch.Tensor, eps: float = 0.1, *, norm_mean: Sequence[float] | None = None,
            norm_std: Sequence[float] | None = None) -> "ZCA":
        """Fit on ``images`` (N, C, H, W) float32, the real training set.

        With ``norm_mean``/``norm_std`` (the dataset's, C values each) the images are normalised
        with them and the fit is on their pixels ``images * norm_std + norm_mean`` (MTT/DATM/PAD:
        their ``--zca`` drops ``Normalize`` and fits ``ZCAWhitening(eps=0.1)`` on [0, 1] pixels); the
        returned ZCA keeps the normalisation (:meth:`whiten` takes normalised images). Without them,
        the fit is on the images as given, as ``kornia.enhance.ZCAWhitening(eps).fit(images)``.

        The D×D covariance is computed in one matrix product over all images (a transient
        centred copy of the images is made) and decomposed in float64 by kornia; 60,000 MNIST
        images take about a second on one CPU core. Runs on ``images.device``; the fitted
        tensors are returned on the CPU (whiten/unwhiten move them to the images' device).

        Raises:
            ConfigError: ``eps`` is not a finite number > 0, ``images`` is not 4-D, N < 2, or the
                normalisation is not C finite means and C finite stds > 0 (or one given alone).
        """
        if not (isinstance(eps, (int, float)) and math.isfinite(eps) and eps > 0):
            raise ConfigError(f"zca eps must be a finite number > 0, got {eps!r}")
        if images.dim() != 4:
            raise ConfigError(f"ZCA is fitted on images (N, C, H, W), got shape {tuple(images.shape)}")
        if images.shape[0] < 2:
            raise ConfigError(f"ZCA needs at least 2 images to fit a covariance, got {images.shape[0]}")
        c, h, w = images.shape[1:]
        norm = _check_normalisation(norm_mean, norm_std, c, ConfigError)
        pixels = images.detach().float()
        if norm is not None:
            pixels = _denormalise(pixels, *norm)
        transform, mean, inverse = zca_mean(pixels, dim=0, unbiased=True, eps=float(eps), return_inverse=True)
        return cls(*(t.cpu().float().contiguous() for t in (mean, transform, inverse)), float(eps), (c, h, w),
                   *(norm if norm is not None else (None, None)))

    def to(self, device: torch.device | str) -> "ZCA":
        """This ZCA with its matrices on ``device`` (itself when they are already there)."""
        if self.transform.device == torch.device(device):
            return self
        return ZCA(self.mean.to(device), self.transform.to(device), self.inverse.to(device), self.eps, self.shape,
                   self.norm_mean, self.norm_std)

    def whiten(self, images: torch.Tensor, chunk: int = DEFAULT_CHUNK) -> torch.Tensor:
        """Whiten images (N, C, H, W), normalised with ``norm_mean``/``norm_std`` when the ZCA has
        them → whitened images of the same shape (``(x * norm_std + norm_mean - mean) @ transform``).

        Works on ``images.device`` (the matrices are moved there), ``chunk`` images at a time so
        memory beyond the output stays bounded (the whole MNIST training set is fine). Float32
        (or float16/bfloat16, computed in float32 by kornia) and float64 images keep their dtype.

        Raises:
            ConfigError: the images are not (N, C, H, W) with the fitted (C, H, W), or chunk < 1.
        """
        return self._apply(images, self.transform, self.mean, chunk, forward=True)

    def unwhiten(self, images: torch.Tensor, chunk: int = DEFAULT_CHUNK) -> torch.Tensor:
        """Inverse of :meth:`whiten` (up to float error): whitened images (N, C, H, W) → images of
        the same shape normalised with ``norm_mean``/``norm_std`` (pixels when the ZCA has no
        normalisation), on ``images.device``, ``chunk`` images at a time.

        Raises:
            ConfigError: the images are not (N, C, H, W) with the fitted (C, H, W), or chunk < 1.
        """
        # (x_w - m') @ inverse = x_w @ inverse + mean, with m' = -mean @ transform (kornia's inverse).
        return self._apply(images, self.inverse, -self.mean @ self.transform, chunk, forward=False)

    def _apply(self, images: torch.Tensor, matrix: torch.Tensor, mean: torch.Tensor, chunk: int,
               forward: bool) -> torch.Tensor:
        if images.dim() != 4 or tuple(images.shape[1:]) != self.shape:
            raise ConfigError(f"ZCA fitted on images of shape (N, {', '.join(map(str, self.shape))}) "
                              f"cannot transform images of shape {tuple(images.shape)}")
        if chunk < 1:
            raise ConfigError(f"ZCA chunk must be ≥ 1 image, got {chunk}")
        dtype = torch.float64 if images.dtype == torch.float64 else torch.float32
        matrix, mean = matrix.to(images.device, dtype), mean.to(images.device, dtype)
        out = torch.empty_like(images)
        for i in range(0, images.shape[0], chunk):
            part = images[i:i + chunk]
            if self.norm_mean is not None and forward:
                part = _denormalise(part, self.norm_mean, self.norm_std)
            part = linear_transform(part, matrix, mean, dim=0)
            if self.norm_mean is not None and not forward:
                part = _normalise(part, self.norm_mean, self.norm_std)
            out[i:i + chunk] = part
        return out

    def tensors(self) -> dict[str, torch.Tensor]:
        """The tensors to store: ``zca_mean`` (1, D), ``zca_transform`` and ``zca_inverse`` (D, D),
        float32, CPU, contiguous."""
        return {k: t.detach().to("cpu", torch.float32).contiguous()
                for k, t in zip(TENSOR_KEYS, (self.mean, self.transform, self.inverse))}

    def metadata(self) -> dict[str, Any]:
        """The JSON stored beside :meth:`tensors` (metadata key ``zca`` of a synthetic-set, model or
        npz file): ``{"eps": float}``, plus ``"normalisation": {"mean": [C floats], "std": [C floats]}``
        when the ZCA undoes one (the matrices then act on pixels ``x * std + mean``)."""
        meta: dict[str, Any] = {"eps": self.eps}
        if self.norm_mean is not None:
            meta["normalisation"] = {"mean": list(self.norm_mean), "std": list(self.norm_std)}
        return meta

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor], eps: float, shape,
                     normalisation: Mapping[str, Any] | None = None) -> "ZCA":
        """Rebuild from the tensors of :meth:`tensors` (other keys are ignored), ``eps``, (C, H, W)
        and the ``normalisation`` of :meth:`metadata` (``{"mean": [...], "std": [...]}``; None: none).

        Raises:
            SyntheticSetFileError: a key is missing, a tensor has the wrong shape, eps is not > 0, or
                the normalisation is not a mapping of C finite means and C finite stds > 0.
        """
        c, h, w = (int(s) for s in shape)
        d = c * h * w
        expected = {"zca_mean": (1, d), "zca_transform": (d, d), "zca_inverse": (d, d)}
        for key, want in expected.items():
            if key not in tensors:
                raise SyntheticSetFileError(f"ZCA tensor {key!r} is missing")
            if tuple(tensors[key].shape) != want:
                raise SyntheticSetFileError(f"ZCA tensor {key!r} has shape {tuple(tensors[key].shape)}, "
                                            f"expected {want} for images ({c}, {h}, {w})")
        if not (isinstance(eps, (int, float)) and math.isfinite(eps) and eps > 0):
            raise SyntheticSetFileError(f"ZCA eps must be a finite number > 0, got {eps!r}")
        norm = None
        if normalisation is not None:
            if not isinstance(normalisation, Mapping) or set(normalisation) != {"mean", "std"}:
                raise SyntheticSetFileError(f"ZCA normalisation is {normalisation!r}; expected "
                                            '{"mean": [C numbers], "std": [C numbers]}')
            norm = _check_normalisation(normalisation["mean"], normalisation["std"], c, SyntheticSetFileError)
        mean, transform, inverse = (tensors[k].to(torch.float32) for k in TENSOR_KEYS)
        return cls(mean, transform, inverse, float(eps), (c, h, w), *(norm if norm is not None else (None, None)))

    @classmethod
    def from_metadata(cls, tensors: dict[str, torch.Tensor], meta: Any, shape) -> "ZCA":
        """Rebuild from stored :meth:`tensors` and the :meth:`metadata` JSON ``meta`` (read from a file).

        Raises:
            SyntheticSetFileError: ``meta`` is not ``{"eps": float}`` with an optional
                ``"normalisation"``, or :meth:`from_tensors` refuses the values.
        """
        if not isinstance(meta, dict) or "eps" not in meta or not set(meta) <= {"eps", "normalisation"}:
            raise SyntheticSetFileError(f"metadata 'zca' is {meta!r}, expected {{\"eps\": float}} with an optional "
                                        '"normalisation": {"mean": [...], "std": [...]}')
        return cls.from_tensors(tensors, meta["eps"], shape, meta.get("normalisation"))


def _check_normalisation(mean, std, channels: int, error) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """(mean, std) as tuples of floats, or None when both are None; ``error`` for anything else."""
    if mean is None and std is None:
        return None

    def numbers(values) -> tuple[float, ...] | None:
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
            return None
        if any(isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) for v in values):
            return None
        return tuple(float(v) for v in values)

    m, s = numbers(mean), numbers(std)
    if m is None or s is None or len(m) != channels or len(s) != channels or min(s) <= 0:
        raise error(f"ZCA normalisation mean={mean!r} std={std!r}: expected {channels} finite means and "
                    f"{channels} finite stds > 0 (one per channel), or neither")
    return m, s


def _per_channel(values: tuple[float, ...], like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(values, dtype=like.dtype if like.is_floating_point() else torch.float32,
                        device=like.device).view(1, -1, 1, 1)


def _denormalise(images: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """Pixels ``images * std + mean`` per channel (a new tensor)."""
    return images * _per_channel(std, images) + _per_channel(mean, images)


def _normalise(pixels: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """``(pixels - mean) / std`` per channel (a new tensor)."""
    return (pixels - _per_channel(mean, pixels)) / _per_channel(std, pixels)
