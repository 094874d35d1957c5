"""PNG grids of synthetic sets: one row per class, unwhitened (ZCA) and de-normalised to pixels in [0, 1]."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from datadistill.fsutil import atomic_write

if TYPE_CHECKING:
    from datadistill.preprocess import ZCA


def save_grid(images: torch.Tensor, labels: torch.Tensor, mean, std, path: str | os.PathLike,
              upscale: int = 2, *, zca: ZCA | None = None) -> Path:
    """Save a grid with one row per class to ``path`` (PNG, written atomically).

    Args:
        images: (N, C, H, W) float32 normalised with ``mean``/``std`` (per-channel sequences), then
            whitened if ``zca`` is given.
        labels: (N,) int64 class indices; rows follow class order, columns the order within a class.
        upscale: integer nearest-neighbour magnification, so 28-px digits stay visible.
        zca: when given, ``images`` are ZCA-whitened and are unwhitened before de-normalising.
    """
    from PIL import Image

    pixels = grid_pixels(images, labels, mean, std, upscale, zca=zca)
    return atomic_write(path, lambda p: Image.fromarray(pixels).save(str(p), format="png"))


def grid_pixels(images: torch.Tensor, labels: torch.Tensor, mean, std, upscale: int = 2, *,
                zca: ZCA | None = None) -> np.ndarray:
    """The picture :func:`save_grid` writes, as an (H, W, 3) uint8 array (for the experiment trackers).
    Arguments as :func:`save_grid`'s."""
    images = images.detach().cpu().float()
    if zca is not None:
        images = zca.unwhiten(images)
    m = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    pixels = (images * s + m).clamp(0, 1)
    labels = labels.detach().cpu()
    order = torch.argsort(labels, stable=True)
    counts = torch.bincount(labels)
    per_row = max(int(counts.max()), 1)
    rows = []
    for c in range(len(counts)):
        idx = order[labels[order] == c]
        row = torch.ones(per_row, *pixels.shape[1:])
        row[: len(idx)] = pixels[idx]
        rows.append(row)
    grid = torch.cat(rows)
    if upscale > 1:
        grid = grid.repeat_interleave(upscale, dim=2).repeat_interleave(upscale, dim=3)
    from torchvision.utils import make_grid

    grid = make_grid(grid, nrow=per_row, padding=2)  # as torchvision's save_image, which wrote these grids
    return grid.mul(255).add_(0.5).clamp_(0, 255).permute(1, 2, 0).to("cpu", torch.uint8).numpy()
