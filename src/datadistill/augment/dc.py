"""DC's evaluation augmentation (Zhao, Mopuri & Bilen, ICLR 2021, "Dataset Condensation with
Gradient Matching", §4; official code: VICO-UoE/DatasetCondensation ``utils.py``, ``augment`` and
``get_daparam``; the same functions in kaiwang960112/CAFE ``utils.py``).

DC trains its evaluation networks on MNIST with a plain, non-differentiable augmentation: each image
of a mini-batch gets one operation drawn uniformly from the strategy, with its own parameters:

* ``crop``: pad by ``crop`` pixels on every side with the batch's per-channel mean, then cut an H×W
  window at a uniform offset (r, q) ∈ {0 … 2·crop − 1}²: the content moves by (crop − r, crop − q),
  so at most ``crop`` pixels in each direction;
* ``scale``: resize (nearest neighbour, ``F.interpolate``'s default) to round-down(s_h·H) ×
  round-down(s_w·W) with s_h, s_w uniform in [1 − scale, 1 + scale], paste it centred on a zero
  canvas, cut the centred H×W window;
* ``rotate``: ``scipy.ndimage.rotate`` (cubic spline, canvas grown to hold the rotated image, filled
  with the mean of the per-channel means) by an integer angle uniform in {−rotate … rotate − 1}
  degrees, then cut the centred H×W window;
* ``noise``: add ``noise`` · N(0, 1) per pixel.

``get_daparam`` uses strategy ``crop_scale_rotate`` on MNIST and ``crop_noise`` for ConvNetBN
evaluation networks, with crop 4, scale 0.2, rotate 45, noise 0.001 (:class:`DCAugParams`).

In this package the augmentation is selected wherever a DSA strategy is (a training recipe's
``augmentation``, the ``dsa_strategy`` keys and flags) by the prefix ``dc:``:
``"dc:crop_scale_rotate"``; :func:`make_augmentation` builds either kind.

Differences from the reference: the draws come from the given ``torch.Generator`` (all of a batch's
parameters drawn at once) instead of NumPy's global generator; the input batch is not modified in
place; the scale op resizes the width by ``W`` where the reference multiplies by ``H`` (the same on
square images).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from datadistill.augment.dsa import DSA
from datadistill.errors import ConfigError

DC_OPS = ("crop", "scale", "rotate", "noise")
DC_PREFIX = "dc:"


@dataclass(frozen=True)
class DCAugParams:
    """Magnitudes of DC's augmentation (``get_daparam`` in the official ``utils.py``).

    Attributes:
        crop: padding and largest shift in pixels (integer ≥ 1).
        scale: resize factors drawn uniformly in [1 − scale, 1 + scale] per axis (in [0, 1)).
        rotate: rotation angle, integer degrees drawn uniformly in [−rotate, rotate − 1] (integer ≥ 1).
        noise: standard deviation of the additive Gaussian noise (≥ 0).
    """

    crop: int = 4
    scale: float = 0.2
    rotate: int = 45
    noise: float = 0.001

    def __post_init__(self) -> None:
        checks = [("crop", isinstance(self.crop, int) and self.crop >= 1, "an integer ≥ 1"),
                  ("scale", 0 <= self.scale < 1, "a number in [0, 1)"),
                  ("rotate", isinstance(self.rotate, int) and self.rotate >= 1, "an integer ≥ 1"),
                  ("noise", self.noise >= 0, "a number ≥ 0")]
        for name, ok, expected in checks:
            if not ok:
                raise ConfigError(f"DC augmentation {name} = {getattr(self, name)!r} is invalid: expected {expected}")


def parse_dc_strategy(strategy: str) -> tuple[str, ...]:
    """The ops of ``"dc:crop_scale_rotate"`` (the ``dc:`` prefix optional).

    Raises:
        ConfigError: no op, or an op not in :data:`DC_OPS`.
    """
    body = strategy[len(DC_PREFIX):] if strategy.startswith(DC_PREFIX) else strategy
    ops = tuple(op for op in body.split("_") if op)
    bad = [op for op in ops if op not in DC_OPS]
    if bad or not ops:
        what = f"unknown DC augmentation operation {bad[0]!r}" if bad else "no DC augmentation operation"
        raise ConfigError(f"{what} in strategy {strategy!r}: expected 'dc:' and ops from {', '.join(DC_OPS)} "
                          "joined by '_', e.g. 'dc:crop_scale_rotate'")
    return ops


@dataclass
class DCDraw:
    """The random parameters of one batch of N images (:meth:`DCAugment.sample`).

    Attributes:
        ops: (N,) int64, index into the strategy's ops of each image's operation.
        offsets: (N, 2) int64 crop window offsets (row, column), in [0, 2·crop).
        factors: (N, 2) float32 resize factors (height, width), in [1 − scale, 1 + scale].
        angles: (N,) int64 rotation angles in degrees, in [−rotate, rotate).
        noise: (N, C, H, W) float32 standard normal draws (multiplied by ``noise`` when applied).
    """

    ops: torch.Tensor
    offsets: torch.Tensor
    factors: torch.Tensor
    angles: torch.Tensor
    noise: torch.Tensor


class DCAugment:
    """DC's per-image augmentation with a fixed strategy; the same call interface as :class:`DSA`
    (``enabled``, ``strategy``, ``aug(x, generator)``), so the training loop takes either.

    Args:
        strategy: ``"dc:"`` followed by ops of :data:`DC_OPS` joined by ``_`` (e.g.
            ``"dc:crop_scale_rotate"``).
        params: operation magnitudes (default: the official ones).

    Raises:
        ConfigError: an unknown op.
    """

    def __init__(self, strategy: str, params: DCAugParams | None = None) -> None:
        self.ops = parse_dc_strategy(strategy)
        self.strategy = DC_PREFIX + "_".join(self.ops)
        self.params = params or DCAugParams()

    @property
    def enabled(self) -> bool:
        return True

    def sample(self, n: int, shape: tuple[int, int, int], generator: torch.Generator | None = None) -> DCDraw:
        """Draw the parameters of ``n`` images of ``shape`` (C, H, W) from ``generator`` (CPU), in the
        order ops, offsets, factors, angles, noise."""
        p = self.params
        return DCDraw(ops=torch.randint(len(self.ops), (n,), generator=generator),
                      offsets=torch.randint(0, 2 * p.crop, (n, 2), generator=generator),
                      factors=1 - p.scale + 2 * p.scale * torch.rand(n, 2, generator=generator),
                      angles=torch.randint(-p.rotate, p.rotate, (n,), generator=generator),
                      noise=torch.randn(n, *shape, generator=generator))

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Augment a batch (N, C, H, W) float32; returns a new tensor of the same shape, device and
        dtype, outside autograd (``x`` is not modified)."""
        return self.apply(x, self.sample(x.shape[0], tuple(x.shape[1:]), generator))

    @torch.no_grad()
    def apply(self, x: torch.Tensor, draw: DCDraw) -> torch.Tensor:
        """Apply ``draw`` to ``x`` (N, C, H, W): image i gets op ``self.ops[draw.ops[i]]``."""
        x = x.detach()
        channel_mean = x.mean(dim=(0, 2, 3))  # per channel, over the whole batch, before any op
        out = x.clone()
        for k, op in enumerate(self.ops):
            idx = (draw.ops == k).nonzero().flatten()
            if not len(idx):
                continue
            on = idx.to(x.device)
            if op == "crop":
                out[on] = crop(x[on], draw.offsets[idx], self.params.crop, channel_mean)
            elif op == "noise":
                out[on] = x[on] + self.params.noise * draw.noise[idx].to(x.device, x.dtype)
            elif op == "scale":
                for i in idx.tolist():
                    out[i] = scale(x[i], *draw.factors[i].tolist())
            else:
                fill = float(channel_mean.mean())
                for i in idx.tolist():
                    out[i] = rotate(x[i], int(draw.angles[i]), fill)
        return out


def crop(x: torch.Tensor, offsets: torch.Tensor, pad: int, fill: torch.Tensor) -> torch.Tensor:
    """DC's crop of a batch (N, C, H, W): pad by ``pad`` with ``fill`` (C,) per channel, then cut the
    H×W window at (row, column) = ``offsets[i]`` (N, 2) ∈ [0, 2·pad) of image i."""
    n, c, h, w = x.shape
    canvas = fill.view(1, c, 1, 1).expand(n, c, h + 2 * pad, w + 2 * pad).clone()
    canvas[:, :, pad:pad + h, pad:pad + w] = x
    off = offsets.to(x.device)
    rows = (off[:, 0:1] + torch.arange(h, device=x.device)).view(n, 1, h, 1).expand(n, c, h, w + 2 * pad)
    canvas = canvas.gather(2, rows)
    cols = (off[:, 1:2] + torch.arange(w, device=x.device)).view(n, 1, 1, w).expand(n, c, h, w)
    return canvas.gather(3, cols)


def scale(img: torch.Tensor, factor_h: float, factor_w: float) -> torch.Tensor:
    """DC's scale of one image (C, H, W): nearest-neighbour resize to int(factor·size) per axis,
    centred on a zero canvas of side max(h, w, H, W), centred H×W window cut out."""
    c, h0, w0 = img.shape
    h, w = int(factor_h * h0), int(factor_w * w0)
    resized = F.interpolate(img.unsqueeze(0), [h, w])[0]
    side = max(h, w, h0, w0)
    canvas = img.new_zeros(c, side, side)
    r, q = int((side - h) / 2), int((side - w) / 2)
    canvas[:, r:r + h, q:q + w] = resized
    r, q = int((side - h0) / 2), int((side - w0) / 2)
    return canvas[:, r:r + h0, q:q + w0]


def rotate(img: torch.Tensor, degrees: int, fill: float) -> torch.Tensor:
    """DC's rotation of one image (C, H, W) by ``degrees`` (counter-clockwise in the (H, W) plane):
    ``scipy.ndimage.rotate`` on the CPU (cubic spline, canvas grown to hold the result, constant fill
    ``fill``), then the centred H×W window, back on the image's device."""
    from scipy.ndimage import rotate as scipy_rotate

    c, h, w = img.shape
    out = scipy_rotate(img.cpu().numpy(), angle=degrees, axes=(-2, -1), cval=fill)
    r, q = int((out.shape[-2] - h) / 2), int((out.shape[-1] - w) / 2)
    return torch.from_numpy(out[:, r:r + h, q:q + w].copy()).to(img.device, img.dtype)


def make_augmentation(strategy: str) -> DSA | DCAugment:
    """The training-time augmentation named by ``strategy``: DC's (:class:`DCAugment`) for
    ``"dc:…"``, else DSA (:class:`~datadistill.augment.DSA`; ``"none"`` disables it).

    Raises:
        ConfigError: an unknown operation of either kind.
    """
    if strategy.startswith(DC_PREFIX):
        return DCAugment(strategy)
    return DSA(strategy)


__all__ = ["DC_OPS", "DC_PREFIX", "DCAugParams", "DCAugment", "DCDraw", "crop", "make_augmentation",
           "parse_dc_strategy", "rotate", "scale"]
