"""ZCA whitening of images, fitted on the real training set.

Pixel space: images are first normalised per channel with the dataset mean/std, then whitened:
``x_w = (x - mean) @ transform`` on the flattened images. A method distilling with ZCA learns its
synthetic images in this whitened space; the test set must be whitened with the same fit before
evaluation, and images are unwhitened (``x = x_w @ inverse + mean``) before display.

The transform is kornia's (``kornia.enhance.zca_mean``): with the unbiased covariance
``Σ = U S Uᵀ`` of the flattened training images, ``transform = U (S + eps)^(-1/2) Uᵀ`` and
``inverse = U (S + eps)^(1/2) Uᵀ``. ``eps`` is added to every eigenvalue, so the whitened training
data has covariance ``U S/(S + eps) Uᵀ``: the identity along directions of variance ≫ eps, shrunk
towards 0 along the others (a regularised whitening that does not blow up pixel noise).

Source: Krizhevsky 2009 (ZCA on CIFAR-10); MTT (Cazenavette et al., CVPR 2022) and its followers
(DATM, PAD) whiten CIFAR with ``kornia.enhance.ZCAWhitening(eps=0.1)`` fitted on the whole
normalised training set; ``eps=0.1`` is the default here too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from kornia.enhance import linear_transform, zca_mean

from datadistill.errors import ConfigError, SyntheticSetFileError

TENSOR_KEYS = ("zca_mean", "zca_transform", "zca_inverse")
DEFAULT_CHUNK = 4096


@dataclass(frozen=True)
class ZCA:
    """A fitted ZCA whitening of images of one shape.

    Attributes:
        mean: (1, D) float32 mean of the flattened normalised training images, D = C*H*W.
        transform: (D, D) float32 whitening matrix ``U (S + eps)^(-1/2) Uᵀ``.
        inverse: (D, D) float32 inverse matrix ``U (S + eps)^(1/2) Uᵀ``.
        eps: regulariser added to the covariance eigenvalues (> 0).
        shape: (C, H, W) of the images it applies to.
    """

    mean: torch.Tensor
    transform: torch.Tensor
    inverse: torch.Tensor
    eps: float
    shape: tuple[int, int, int]

    @classmethod
    def fit(cls, images: torch.Tensor, eps: float = 0.1) -> "ZCA":
        """Fit on ``images`` (N, C, H, W) float32, normalised per channel (the real training set).

        The D×D covariance is computed in one matrix product over all images (a transient
        centred copy of the images is made) and decomposed in float64 by kornia; 60,000 MNIST
        images take about a second on one CPU core. Runs on ``images.device``; the fitted
        tensors are returned on the CPU (whiten/unwhiten move them to the images' device).

        Raises:
            ConfigError: ``eps`` is not a finite number > 0, ``images`` is not 4-D, or N < 2.
        """
        if not (isinstance(eps, (int, float)) and math.isfinite(eps) and eps > 0):
            raise ConfigError(f"zca eps must be a finite number > 0, got {eps!r}")
        if images.dim() != 4:
            raise ConfigError(f"ZCA is fitted on images (N, C, H, W), got shape {tuple(images.shape)}")
        if images.shape[0] < 2:
            raise ConfigError(f"ZCA needs at least 2 images to fit a covariance, got {images.shape[0]}")
        transform, mean, inverse = zca_mean(images.detach().float(), dim=0, unbiased=True, eps=float(eps),
                                            return_inverse=True)
        c, h, w = images.shape[1:]
        return cls(*(t.cpu().float().contiguous() for t in (mean, transform, inverse)), float(eps), (c, h, w))

    def to(self, device: torch.device | str) -> "ZCA":
        """This ZCA with its matrices on ``device`` (itself when they are already there)."""
        if self.transform.device == torch.device(device):
            return self
        return ZCA(self.mean.to(device), self.transform.to(device), self.inverse.to(device), self.eps, self.shape)

    def whiten(self, images: torch.Tensor, chunk: int = DEFAULT_CHUNK) -> torch.Tensor:
        """Whiten normalised images (N, C, H, W) → whitened images of the same shape.

        Works on ``images.device`` (the matrices are moved there), ``chunk`` images at a time so
        memory beyond the output stays bounded (the whole MNIST training set is fine). Float32
        (or float16/bfloat16, computed in float32 by kornia) and float64 images keep their dtype.

        Raises:
            ConfigError: the images are not (N, C, H, W) with the fitted (C, H, W), or chunk < 1.
        """
        return self._apply(images, self.transform, self.mean, chunk)

    def unwhiten(self, images: torch.Tensor, chunk: int = DEFAULT_CHUNK) -> torch.Tensor:
        """Inverse of :meth:`whiten` (up to float error): whitened images (N, C, H, W) → normalised
        images of the same shape, on ``images.device``, ``chunk`` images at a time.

        Raises:
            ConfigError: the images are not (N, C, H, W) with the fitted (C, H, W), or chunk < 1.
        """
        # (x_w - m') @ inverse = x_w @ inverse + mean, with m' = -mean @ transform (kornia's inverse).
        return self._apply(images, self.inverse, -self.mean @ self.transform, chunk)

    def _apply(self, images: torch.Tensor, matrix: torch.Tensor, mean: torch.Tensor, chunk: int) -> torch.Tensor:
        if images.dim() != 4 or tuple(images.shape[1:]) != self.shape:
            raise ConfigError(f"ZCA fitted on images of shape (N, {', '.join(map(str, self.shape))}) "
                              f"cannot transform images of shape {tuple(images.shape)}")
        if chunk < 1:
            raise ConfigError(f"ZCA chunk must be ≥ 1 image, got {chunk}")
        dtype = torch.float64 if images.dtype == torch.float64 else torch.float32
        matrix, mean = matrix.to(images.device, dtype), mean.to(images.device, dtype)
        out = torch.empty_like(images)
        for i in range(0, images.shape[0], chunk):
            out[i:i + chunk] = linear_transform(images[i:i + chunk], matrix, mean, dim=0)
        return out

    def tensors(self) -> dict[str, torch.Tensor]:
        """The tensors to store: ``zca_mean`` (1, D), ``zca_transform`` and ``zca_inverse`` (D, D),
        float32, CPU, contiguous."""
        return {k: t.detach().to("cpu", torch.float32).contiguous()
                for k, t in zip(TENSOR_KEYS, (self.mean, self.transform, self.inverse))}

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor], eps: float, shape) -> "ZCA":
        """Rebuild from the tensors of :meth:`tensors` (other keys are ignored), ``eps`` and (C, H, W).

        Raises:
            SyntheticSetFileError: a key is missing, a tensor has the wrong shape, or eps is not > 0.
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
        mean, transform, inverse = (tensors[k].to(torch.float32) for k in TENSOR_KEYS)
        return cls(mean, transform, inverse, float(eps), (c, h, w))
