"""File-backed image sets decoded on demand, for datasets too large to hold as one tensor
(TinyImageNet, MHIST at 224 px, large image folders).

Images are decoded by Pillow (PNG, JPEG, …; torchvision 0.29 deprecates its own decoders), resized when an
image size is asked for (antialiased bilinear, ``torchvision.transforms.v2.functional.resize``),
scaled to [0, 1] and normalised per channel: ``x = (pixel / 255 - mean) / std``, float32 (C, H, W).
Reading goes through a ``torch.utils.data.DataLoader`` with worker processes; only the indices asked
for are decoded, so sampling a few images per class never reads the whole set.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from datadistill.data.base import LabelledImages
from datadistill.errors import ConfigError, DatasetLayoutError

STREAM_THRESHOLD_BYTES = 1 << 30  # ``stream: auto`` streams a training set larger than this as float32


def read_image(path: Path, channels: int, size: tuple[int, int] | None,
               native: tuple[int, int] | None = None) -> torch.Tensor:
    """Decode one image file to uint8 (channels, H, W), resized to ``size`` (H, W) when given.

    Args:
        channels: 1 (grey) or 3 (RGB); other modes (palette, RGBA, grey in an RGB set) are converted.
        native: when ``size`` is None, the size every image must have.

    Raises:
        DatasetLayoutError: the file is missing, cannot be decoded, or (no ``size``) differs from ``native``.
    """
    from PIL import Image, UnidentifiedImageError
    from torchvision.transforms.v2.functional import pil_to_tensor

    try:
        with Image.open(path) as im:
            img = pil_to_tensor(im.convert("RGB" if channels == 3 else "L"))
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DatasetLayoutError(f"cannot read image {path}: {exc}") from None
    hw = tuple(img.shape[-2:])
    if size is not None and hw != tuple(size):
        from torchvision.transforms.v2 import functional as TF

        img = TF.resize(img, list(size), antialias=True)
    elif size is None and native is not None and hw != tuple(native):
        raise DatasetLayoutError(f"image {path} is {hw[1]}×{hw[0]} but the others are {native[1]}×{native[0]}: "
                                 "mixed image sizes; pass --image-size N to resize them all")
    return img


class ImageFiles(Dataset):
    """A map-style dataset of image files: item ``i`` is ``(normalised image (C, H, W) float32, label)``.

    Args:
        paths: one file per image.
        labels: (N,) int64.
        channels: C (1 or 3).
        image_size: (H, W) of the returned images (files of another size are resized).
        mean, std: per-channel normalisation of pixels in [0, 1].
        resize: resize files whose size differs from ``image_size``; False raises DatasetLayoutError instead.
    """

    def __init__(self, paths: Sequence[Path], labels: torch.Tensor, channels: int, image_size: tuple[int, int],
                 mean: Sequence[float], std: Sequence[float], resize: bool) -> None:
        if len(paths) != len(labels):
            raise ValueError(f"{len(paths)} paths but {len(labels)} labels")
        self.paths = [Path(p) for p in paths]
        self.labels = labels.to(torch.int64)
        self.channels = channels
        self.image_size = tuple(image_size)
        self.resize = resize
        self.mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)

    def __len__(self) -> int:
        return len(self.paths)

    def raw(self, i: int) -> torch.Tensor:
        """Image ``i`` as uint8 (C, H, W) at ``image_size``."""
        size = self.image_size if self.resize else None
        return read_image(self.paths[i], self.channels, size, native=self.image_size)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        try:
            x = self.raw(int(i)).to(torch.float32).div_(255.0)
        except DatasetLayoutError as exc:
            if torch.utils.data.get_worker_info() is None:
                raise
            return _Unreadable(str(exc)), -1  # re-raised by the main process, without the worker's traceback
        return x.sub_(self.mean).div_(self.std), int(self.labels[i])


class _Chunks(torch.utils.data.Sampler):
    """Yields the given index chunks in order (a batch sampler over a fixed ``order``)."""

    def __init__(self, order: torch.Tensor, batch_size: int) -> None:
        self.chunks = list(order.split(batch_size))

    def __iter__(self) -> Iterator[list[int]]:
        return (c.tolist() for c in self.chunks)

    def __len__(self) -> int:
        return len(self.chunks)


class _Unreadable:
    """A decoding error in a DataLoader worker, carried to the main process as a value."""

    def __init__(self, message: str) -> None:
        self.message = message


def _collate(items):
    bad = next((x for x, _ in items if isinstance(x, _Unreadable)), None)
    return bad if bad is not None else torch.stack([x for x, _ in items])


class StreamedImages:
    """A labelled image set read from files on demand, with the reading interface of
    :class:`~datadistill.data.LabelledImages` (``take``, ``batches``, ``subset``, ``image_shape``,
    ``labels``, ``len``). It has no ``images`` tensor: asking for it raises ConfigError.

    Args:
        files: the decoding dataset.
        num_workers: DataLoader worker processes (0 = decode in the calling process).
    """

    streamed = True

    def __init__(self, files: ImageFiles, num_workers: int = 2) -> None:
        self.files = files
        self.labels = files.labels
        self.num_workers = int(num_workers)

    def __len__(self) -> int:
        return len(self.files)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (self.files.channels, *self.files.image_size)

    def to(self, device: torch.device | str) -> "StreamedImages":
        """The set itself: decoded batches live on the CPU and readers move them where they compute."""
        return self

    @property
    def images(self) -> torch.Tensor:
        raise ConfigError("this dataset is streamed from its files and has no images tensor; "
                          "read it with take()/batches(), or load it with stream='off'")

    @property
    def nbytes(self) -> int:
        """Bytes the set would take as one float32 tensor."""
        return len(self) * math.prod(self.image_shape) * 4

    def _loader(self, order: torch.Tensor, batch_size: int) -> DataLoader:
        workers = self.num_workers if len(order) > batch_size or len(order) >= 64 else 0
        return DataLoader(self.files, batch_sampler=_Chunks(order, batch_size), num_workers=workers,
                          collate_fn=_collate)

    def batches(self, order: torch.Tensor | None = None, batch_size: int = 256):
        """Yield ``(indices, images (b, C, H, W) float32)`` over ``order`` (default: all), decoded by
        the DataLoader's workers while the caller works on the previous chunk."""
        order = torch.arange(len(self)) if order is None else order.flatten().cpu()
        for idx, x in zip(order.split(batch_size), self._loader(order, batch_size)):
            if isinstance(x, _Unreadable):
                raise DatasetLayoutError(x.message)
            yield idx, x

    def take(self, indices: torch.Tensor) -> torch.Tensor:
        """Decode images ``indices`` (int64, any shape, flattened) into (n, C, H, W) float32."""
        order = indices.flatten().cpu()
        if len(order) == 0:
            return torch.empty(0, *self.image_shape)
        chunk = max(16, math.ceil(len(order) / max(1, self.num_workers)))
        return torch.cat([x for _, x in self.batches(order, chunk)])

    def subset(self, indices: torch.Tensor) -> "StreamedImages":
        idx = indices.flatten().cpu().tolist()
        f = self.files
        files = ImageFiles([f.paths[i] for i in idx], f.labels[idx], f.channels, f.image_size,
                           f.mean.flatten().tolist(), f.std.flatten().tolist(), f.resize)
        return StreamedImages(files, self.num_workers)

    def materialise(self, batch_size: int = 256) -> LabelledImages:
        """Decode every image into one in-memory :class:`LabelledImages`."""
        images = torch.empty(len(self), *self.image_shape)
        for idx, x in self.batches(None, batch_size):
            images[idx] = x
        return LabelledImages(images, self.labels.clone())


def channel_stats(files: ImageFiles, num_workers: int = 2, batch_size: int = 128) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of the pixels of ``files``, scaled to [0, 1] (population std over
    every pixel of every image, accumulated in float64)."""
    plain = ImageFiles(files.paths, files.labels, files.channels, files.image_size,
                       [0.0] * files.channels, [1.0] * files.channels, files.resize)
    total = torch.zeros(files.channels, dtype=torch.float64)
    squares = torch.zeros(files.channels, dtype=torch.float64)
    count = 0
    for _, x in StreamedImages(plain, num_workers).batches(None, batch_size):
        x = x.to(torch.float64)
        total += x.sum(dim=(0, 2, 3))
        squares += (x * x).sum(dim=(0, 2, 3))
        count += x.shape[0] * x.shape[2] * x.shape[3]
    mean = total / count
    std = (squares / count - mean * mean).clamp_min(0).sqrt().clamp_min(1e-6)
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)


__all__ = ["STREAM_THRESHOLD_BYTES", "ImageFiles", "StreamedImages", "channel_stats", "read_image"]
