"""Differentiable Siamese Augmentation (Zhao & Bilen, ICML 2021, "Dataset Condensation with
Differentiable Siamese Augmentation", §3.2).

One operation is drawn per group from the strategy (``color``, ``crop``, ``cutout``, ``flip``,
``scale``, ``rotate``), with random parameters per group. A :class:`DSATransform` holds those draws,
so applying the same transform to the real and the synthetic batch of a group makes the augmentation
*siamese*; every op is differentiable with respect to the input pixels.

Images are (G, n, C, H, W): G groups (e.g. classes) of n images, normalised per channel. Plain
(N, C, H, W) batches are treated as N groups of one image (independent augmentation per image).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from datadistill.errors import ConfigError

OPS = ("color", "crop", "cutout", "flip", "scale", "rotate")


@dataclass(frozen=True)
class DSAParams:
    """Magnitudes of the DSA operations (defaults from the DSA paper's code, reference §3).

    Attributes:
        flip_prob: probability of a horizontal flip.
        scale_ratio: scale factors are drawn uniformly in [1/ratio, ratio] per axis.
        rotate_degrees: rotation angle drawn uniformly in [-deg, deg].
        crop_ratio: translation of up to round(ratio · size) pixels, zero-filled.
        cutout_ratio: side of the zeroed square, round(ratio · size) pixels.
        brightness: additive shift drawn in [-b/2, b/2].
        saturation: factor drawn in [0, s] on the deviation from the channel mean.
        contrast: factor drawn in [c, c + 1] on the deviation from the image mean.
    """

    flip_prob: float = 0.5
    scale_ratio: float = 1.2
    rotate_degrees: float = 15.0
    crop_ratio: float = 0.125
    cutout_ratio: float = 0.5
    brightness: float = 1.0
    saturation: float = 2.0
    contrast: float = 0.5


def default_strategy(dataset: str) -> str:
    """The per-dataset default strategy: no ``flip`` for digits (MNIST, SVHN), all ops otherwise."""
    if dataset.lower() in {"mnist", "svhn"}:
        return "color_crop_cutout_scale_rotate"
    return "color_crop_cutout_flip_scale_rotate"


def parse_strategy(strategy: str) -> tuple[str, ...]:
    """Split ``"color_crop_…"`` into ops; ``"none"`` or ``""`` gives no ops.

    Raises:
        ConfigError: for an unknown op name.
    """
    if strategy in ("", "none", "None"):
        return ()
    ops = tuple(strategy.split("_"))
    bad = [op for op in ops if op not in OPS]
    if bad:
        raise ConfigError(f"unknown DSA operation {bad[0]!r} in strategy {strategy!r}: expected ops from {', '.join(OPS)} joined by '_', or 'none'")
    return ops


class DSATransform:
    """One draw of DSA parameters for G groups; apply it to any batch shaped (G, n, C, H, W).

    Created by :meth:`DSA.sample`. Applying the same transform to the real and the synthetic images of
    a group gives both exactly the same operation and parameters.
    """

    def __init__(self, op_index: torch.Tensor, ops: tuple[str, ...], draws: dict[str, torch.Tensor],
                 params: DSAParams) -> None:
        self.op_index = op_index  # (G,) long: which op each group gets
        self.ops = ops
        self.draws = draws
        self.params = params

    @property
    def num_groups(self) -> int:
        return int(self.op_index.numel())

    def subset(self, groups: slice | Sequence[int]) -> "DSATransform":
        """The same draws for ``groups`` only (a slice, or indices in the order given): applied to those
        groups' images it gives exactly what the whole transform gives them (every op acts on each
        group alone). A class-sharded run's ranks draw for every class and apply their own classes'
        part (:mod:`datadistill.methods.sharding`); data-parallel trajectory matching splits one
        augmented mini-batch across ranks (:mod:`datadistill.methods.data_parallel`)."""
        index = groups if isinstance(groups, slice) else torch.as_tensor(list(groups), dtype=torch.long,
                                                                           device=self.op_index.device)
        return DSATransform(self.op_index[index], self.ops, {k: v[index] for k, v in self.draws.items()},
                            self.params)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Augment ``x`` of shape (G, n, C, H, W) (or (G, C, H, W), one image per group).

        Returns a new tensor of the same shape; gradients flow to ``x``.

        Raises:
            ValueError: if the first dimension is not G.
        """
        squeeze = x.dim() == 4
        if squeeze:
            x = x.unsqueeze(1)
        if x.shape[0] != self.num_groups:
            raise ValueError(f"DSA transform drawn for {self.num_groups} groups, got a batch of {x.shape[0]}")
        if not self.ops:
            return x.squeeze(1) if squeeze else x
        if len(self.ops) == 1 or bool((self.op_index == self.op_index[0]).all()):
            out = self._apply(self.ops[int(self.op_index[0])], x, slice(None))
        else:
            out = torch.empty_like(x)
            for k, op in enumerate(self.ops):
                idx = (self.op_index == k).nonzero().flatten()
                if idx.numel():
                    out[idx] = self._apply(op, x[idx], idx)
        return out.squeeze(1) if squeeze else out

    def _apply(self, op: str, x: torch.Tensor, idx) -> torch.Tensor:
        d = {k: v[idx] for k, v in self.draws.items()}
        g, n, c, h, w = x.shape
        if op == "color":
            x = x + (d["brightness"] - 0.5).view(g, 1, 1, 1, 1) * self.params.brightness
            mean_c = x.mean(dim=2, keepdim=True)
            x = (x - mean_c) * (d["saturation"] * self.params.saturation).view(g, 1, 1, 1, 1) + mean_c
            mean_all = x.mean(dim=(2, 3, 4), keepdim=True)
            return (x - mean_all) * (d["contrast"] + self.params.contrast).view(g, 1, 1, 1, 1) + mean_all
        if op == "flip":
            flip = (d["flip"] < self.params.flip_prob).view(g, 1, 1, 1, 1)
            return torch.where(flip, x.flip(4), x)
        if op in ("scale", "rotate"):
            if op == "scale":
                r = self.params.scale_ratio
                sx = d["scale_x"] * (r - 1.0 / r) + 1.0 / r
                sy = d["scale_y"] * (r - 1.0 / r) + 1.0 / r
                zero = torch.zeros_like(sx)
                theta = torch.stack([torch.stack([sx, zero, zero], 1), torch.stack([zero, sy, zero], 1)], 1)
            else:
                angle = (d["rotate"] - 0.5) * 2 * self.params.rotate_degrees / 180 * math.pi
                cos, sin, zero = angle.cos(), angle.sin(), torch.zeros_like(angle)
                theta = torch.stack([torch.stack([cos, sin, zero], 1), torch.stack([-sin, cos, zero], 1)], 1)
            theta = theta.to(x.dtype).repeat_interleave(n, dim=0)
            flat = x.reshape(g * n, c, h, w)
            grid = F.affine_grid(theta, list(flat.shape), align_corners=True)
            return F.grid_sample(flat, grid, align_corners=True).view(g, n, c, h, w)
        if op == "crop":
            sh, sw = int(h * self.params.crop_ratio + 0.5), int(w * self.params.crop_ratio + 0.5)
            tx = (d["crop_x"] * (2 * sh + 1)).long().clamp(max=2 * sh) - sh  # (g,)
            ty = (d["crop_y"] * (2 * sw + 1)).long().clamp(max=2 * sw) - sw
            rows = (torch.arange(h, device=x.device).view(1, h) + tx.view(g, 1) + 1).clamp(0, h + 1)
            cols = (torch.arange(w, device=x.device).view(1, w) + ty.view(g, 1) + 1).clamp(0, w + 1)
            padded = F.pad(x, [1, 1, 1, 1])
            gi = torch.arange(g, device=x.device).view(g, 1, 1)
            out = padded[gi, :, :, rows.view(g, h, 1), cols.view(g, 1, w)]  # (g, h, w, n, c)
            # standard NCHW strides: the permuted view of a single-channel batch has strides that
            # torch reads as channels-last, which sends the network's convolutions and GroupNorm
            # to their slower channels-last kernels (1.8-2.4x slower per step on MNIST, docs/benchmarks.md §13)
            return out.permute(0, 3, 4, 1, 2).clone(memory_format=torch.contiguous_format)
        if op == "cutout":
            ch, cw = int(h * self.params.cutout_ratio + 0.5), int(w * self.params.cutout_ratio + 0.5)
            ox = (d["cutout_x"] * (h + (1 - ch % 2))).long()
            oy = (d["cutout_y"] * (w + (1 - cw % 2))).long()
            r = torch.arange(h, device=x.device).view(1, h)
            q = torch.arange(w, device=x.device).view(1, w)
            in_r = (r >= (ox.view(g, 1) - ch // 2)) & (r < (ox.view(g, 1) - ch // 2 + ch))
            in_c = (q >= (oy.view(g, 1) - cw // 2)) & (q < (oy.view(g, 1) - cw // 2 + cw))
            keep = ~(in_r.view(g, h, 1) & in_c.view(g, 1, w))
            return x * keep.view(g, 1, 1, h, w).to(x.dtype)
        raise AssertionError(op)


_DRAW_NAMES = ("brightness", "saturation", "contrast", "flip", "scale_x", "scale_y", "rotate",
               "crop_x", "crop_y", "cutout_x", "cutout_y")


class DSA:
    """Differentiable Siamese Augmentation with a fixed strategy.

    Args:
        strategy: ops joined by ``_`` (e.g. ``"color_crop_cutout_scale_rotate"``) or ``"none"``.
        params: operation magnitudes.

    Raises:
        ConfigError: for an unknown op in ``strategy``.

    Example:
        >>> dsa = DSA("color_crop_cutout_scale_rotate")
        >>> t = dsa.sample(num_groups=10, generator=gen, device=real.device)
        >>> real_aug, syn_aug = t(real), t(syn)   # (10, n_real, C, H, W), (10, ipc, C, H, W)
    """

    def __init__(self, strategy: str, params: DSAParams | None = None) -> None:
        self.strategy = strategy
        self.ops = parse_strategy(strategy)
        self.params = params or DSAParams()

    @property
    def enabled(self) -> bool:
        return bool(self.ops)

    def sample(self, num_groups: int, generator: torch.Generator | None = None,
               device: torch.device | str = "cpu", shared_op: bool = False) -> DSATransform:
        """Draw an op and its parameters for each of ``num_groups`` groups.

        Args:
            num_groups: G.
            generator: source of randomness (CPU generator); None uses torch's default generator.
            device: where the parameter tensors live (the images' device).
            shared_op: one op for all groups (as the reference evaluation does per batch) instead of
                one op per group; parameters stay per group either way.
        """
        n_ops = max(len(self.ops), 1)
        if shared_op:
            op_index = torch.randint(n_ops, (1,), generator=generator).expand(num_groups)
        else:
            op_index = torch.randint(n_ops, (num_groups,), generator=generator)
        draws = {name: torch.rand(num_groups, generator=generator).to(device) for name in _DRAW_NAMES}
        return DSATransform(op_index.to(device), self.ops, draws, self.params)

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Augment a plain (N, C, H, W) batch with independent parameters per image and one op per batch."""
        if not self.ops:
            return x
        return self.sample(x.shape[0], generator, x.device, shared_op=True)(x)
