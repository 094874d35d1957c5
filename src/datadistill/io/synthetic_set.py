"""The synthetic-set file: one ``.safetensors`` file with tensors and JSON metadata.

Tensors:
    ``images``: (N, C, H, W) float32, normalised with the dataset's mean/std (or ZCA-whitened), as trained.
    ``labels``: (N,) int64 hard labels, or (N, K) float32 soft labels (logits or probabilities as
        written by the method; ``metadata["label_kind"]`` says which).
    ``learned_lr`` (optional): () float32, the learning rate learned with the set (MTT family).
    ``zca_mean`` (1, D), ``zca_transform`` (D, D), ``zca_inverse`` (D, D) (optional, together), float32,
        D = C*H*W: the ZCA whitening fitted on the real training set (:class:`datadistill.preprocess.ZCA`).
        When present, ``images`` are in whitened space: ``(pixels - zca_mean) @ zca_transform`` on the
        flattened pixels, with metadata ``zca.normalisation`` the mean/std to undo first
        (:meth:`ZCA.whiten <datadistill.preprocess.ZCA.whiten>` maps normalised images there; a file
        of before issue #21 has no ``normalisation``: its matrices act on the normalised images). The
        test set must be whitened the same way before evaluation, and ``zca_inverse`` maps images
        back for display.

Metadata (safetensors header ``__metadata__``, key ``datadistill``, a JSON object): ``format``,
``format_version``, ``dataset``, ``channels``, ``image_size``, ``class_names``, ``mean``, ``std``,
``method``, ``ipc``, ``config``, ``seed``, ``iterations``, ``package_version``, ``label_kind``, and
``zca`` = ``{"eps": float, "normalisation": {"mean": [...], "std": [...]}}`` when (and only when) the ZCA
tensors are stored (:meth:`ZCA.metadata <datadistill.preprocess.ZCA.metadata>`). Every writer builds the
metadata with :func:`synthetic_set_metadata` (``distill``, the importers, the continual memories, the
FedD3 union), so the dataset keys always come first and in the same order.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch.utils.data import Dataset

from datadistill.errors import SyntheticSetFileError, error_context
from datadistill.io.tensor_file import read_tensor_file, write_tensor_file
from datadistill.preprocess.zca import ZCA

if TYPE_CHECKING:
    from datadistill.data import DatasetSpec

FORMAT = "datadistill.synthetic_set"
FORMAT_VERSION = 1
LABEL_KINDS = ("hard", "soft_logits", "soft_probabilities")
_REQUIRED_META = ("dataset", "channels", "image_size", "mean", "std", "method", "ipc")


def synthetic_set_metadata(spec: DatasetSpec, *, method: str, ipc: int | None, **extra: Any) -> dict[str, Any]:
    """The metadata of a synthetic set of ``spec``'s dataset: ``dataset``, ``channels``, ``image_size``
    (list), ``class_names`` (list), ``num_classes``, ``mean`` and ``std`` (lists) from the spec, then
    ``method`` and ``ipc``, then ``extra`` in the order given (``init``, ``model``, ``seed``,
    ``iterations``, ``config``, ``package_version`` for a distilled set; whatever an application
    adds, e.g. ``continual_memory``). JSON values only; the key order is the order in the file."""
    return {"dataset": spec.name, "channels": spec.channels, "image_size": list(spec.image_size),
            "class_names": list(spec.class_names), "num_classes": spec.num_classes, "mean": list(spec.mean),
            "std": list(spec.std), "method": method, "ipc": ipc, **extra}


@dataclass
class SyntheticSet:
    """A synthetic set with what is needed to evaluate and display it.

    Attributes:
        images: (N, C, H, W) float32, normalised with ``metadata["mean"]``/``["std"]``, or, when
            ``zca`` is set, in its whitened space (``zca.whiten`` of the normalised images).
        labels: (N,) int64 class indices, or (N, K) float32 soft labels.
        learned_lr: learning rate learned with the set (MTT family), else None.
        metadata: dataset, image shape, mean/std, method, config, seed, iterations, … (JSON-able).
        zca: the ZCA whitening the images live in (fitted on the real training set), else None.
    """

    images: torch.Tensor
    labels: torch.Tensor
    learned_lr: float | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    zca: ZCA | None = None

    def __post_init__(self) -> None:
        if self.images.dim() != 4:
            raise SyntheticSetFileError(f"images must be (N, C, H, W), got shape {tuple(self.images.shape)}")
        if self.labels.dim() == 0:
            raise SyntheticSetFileError("labels must be (N,) or (N, K), got a 0-d tensor")
        if self.labels.shape[0] != self.images.shape[0]:
            raise SyntheticSetFileError(
                f"{self.images.shape[0]} images but {self.labels.shape[0]} labels")
        if self.labels.dim() == 1 and self.labels.dtype != torch.int64:
            raise SyntheticSetFileError(f"hard labels must be int64, got {self.labels.dtype}")
        if self.zca is not None and tuple(self.images.shape[1:]) != self.zca.shape:
            raise SyntheticSetFileError(f"images of shape {tuple(self.images.shape[1:])} do not match the ZCA "
                                        f"fitted on shape {self.zca.shape}")

    def validate(self) -> "SyntheticSet":
        """Check the tensors against the file format and the metadata; run on every set read from a
        file (:func:`load_synthetic_set`, the importers) before anything trains on it.

        Images: float32, finite, (N, C, H, W) with N ≥ 1 and C, H, W those of the metadata
        (``channels``, ``image_size``) when it has them. Labels: N of them; hard labels int64 in
        ``[0, K)``, soft labels float32 (N, K), finite, K the metadata's ``num_classes`` (else the
        length of ``class_names``; not checked when neither is given). The learned lr, when set, a
        finite number > 0. Returns the set.

        Raises:
            SyntheticSetFileError: the first value that breaks a rule, with what was found and what
                is expected (the caller adds the file's name).
        """
        images, labels, meta = self.images, self.labels, self.metadata
        if images.dtype != torch.float32:
            raise SyntheticSetFileError(f"images are {_dtype(images)}; expected float32")
        if images.shape[0] == 0:
            raise SyntheticSetFileError("holds no image (images of shape "
                                        f"{tuple(images.shape)}); expected at least one")
        if "channels" in meta and "image_size" in meta:
            want = [meta["channels"], *meta["image_size"]] if isinstance(meta["image_size"], (list, tuple)) else None
            if list(images.shape[1:]) != want:
                raise SyntheticSetFileError(
                    f"images of shape {tuple(images.shape[1:])} do not match metadata "
                    f"channels={meta['channels']!r} image_size={meta['image_size']!r}")
        _check_finite(images, "images", "image")
        k = meta.get("num_classes", len(meta["class_names"]) if isinstance(meta.get("class_names"), list) else None)
        if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
            raise SyntheticSetFileError(f"metadata num_classes is {k!r}; expected an integer ≥ 1")
        if labels.dim() == 1:
            if labels.dtype != torch.int64:
                raise SyntheticSetFileError(f"hard labels are {_dtype(labels)}; expected int64")
            outside = labels[(labels < 0) | (labels >= k)] if k is not None else labels[labels < 0]
            if outside.numel():
                accepted = f"0..{k - 1} (the {k} classes of the metadata)" if k is not None else "≥ 0"
                raise SyntheticSetFileError(f"labels hold class {int(outside[0])} ({outside.numel()} label(s) "
                                            f"out of range); accepted: {accepted}")
        elif labels.dim() == 2:
            if labels.dtype != torch.float32:
                raise SyntheticSetFileError(f"soft labels are {_dtype(labels)}; expected float32")
            if k is not None and labels.shape[1] != k:
                raise SyntheticSetFileError(f"soft labels of shape {tuple(labels.shape)} have {labels.shape[1]} "
                                            f"columns; expected {k} (the classes of the metadata)")
            _check_finite(labels, "soft labels", "row")
        else:
            raise SyntheticSetFileError(f"labels of shape {tuple(labels.shape)}; expected (N,) int64 hard labels "
                                        "or (N, K) float32 soft labels")
        lr = self.learned_lr
        if lr is not None and not (math.isfinite(lr) and lr > 0):
            raise SyntheticSetFileError(f"learned_lr is {lr!r}; expected a finite number > 0")
        return self

    @property
    def label_kind(self) -> str:
        return "hard" if self.labels.dim() == 1 else self.metadata.get("label_kind", "soft_logits")

    @property
    def hard_labels(self) -> torch.Tensor:
        """(N,) int64 class of each image (argmax of soft labels)."""
        return self.labels if self.labels.dim() == 1 else self.labels.argmax(dim=1)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def unwhitened(self) -> torch.Tensor:
        """(N, C, H, W) float32 on the CPU, normalised with ``metadata["mean"]``/``["std"]``: the images
        with the ZCA whitening undone (the stored images themselves when the set holds no ZCA)."""
        images = self.images.detach().to("cpu", torch.float32)
        return images if self.zca is None else self.zca.unwhiten(images)

    def pixels(self) -> torch.Tensor:
        """(N, C, H, W) float32 on the CPU, pixel intensities in [0, 1]: ZCA undone, then
        ``x * std + mean`` per channel, then clamped to [0, 1] (a learned image may leave the range)."""
        if "mean" not in self.metadata or "std" not in self.metadata:
            raise SyntheticSetFileError("the set's metadata has no mean/std; its pixels cannot be computed")
        shape = (1, -1, 1, 1)
        mean = torch.tensor(self.metadata["mean"], dtype=torch.float32).view(shape)
        std = torch.tensor(self.metadata["std"], dtype=torch.float32).view(shape)
        return (self.unwhitened() * std + mean).clamp_(0.0, 1.0)

    def to_dataset(self, normalised: bool = True, transform: Callable | None = None,
                   target_transform: Callable | None = None) -> "SyntheticDataset":
        """The set as a map-style :class:`torch.utils.data.Dataset` for one's own training code.

        Item ``i`` is ``(image, label)``:

        * ``image``: (C, H, W) float32 CPU tensor. ``normalised=True``: as stored and as datadistill
          trains on it, i.e. ``(pixel - mean) / std`` per channel (``metadata["mean"]``/``["std"]``),
          or ZCA-whitened when the set holds a ZCA (``self.zca.whiten`` of those; test images must
          then be whitened the same way, with ``self.zca.whiten``). ``normalised=False``: pixel
          intensities in [0, 1], the ZCA and the normalisation undone, clamped to [0, 1]
          (:meth:`pixels`), the input ``torchvision.transforms.v2`` expects for a float image (e.g.
          ``v2.Normalize`` of your own).
        * ``label``: hard labels, the class index as a Python ``int`` (``metadata["class_names"][label]``
          names it); soft labels, a (K,) float32 tensor as stored (``label_kind`` says logits or
          probabilities).

        ``transform`` is applied to the image (a plain tensor, which ``transforms.v2`` treats as an
        image), ``target_transform`` to the label. With the default collate function a
        ``DataLoader`` yields (B, C, H, W) float32 images and (B,) int64 or (B, K) float32 labels.
        The images are computed once (on the CPU) when the dataset is made.
        """
        images = self.images.detach().to("cpu", torch.float32) if normalised else self.pixels()
        labels = self.labels.detach().cpu()
        return SyntheticDataset(images, labels if labels.dim() == 2 else labels.tolist(), transform,
                                target_transform)


class SyntheticDataset(Dataset):
    """A synthetic set's images and labels as a ``torch.utils.data.Dataset``
    (built by :meth:`SyntheticSet.to_dataset`, which documents the items)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor | list[int], transform: Callable | None = None,
                 target_transform: Callable | None = None) -> None:
        self.images, self.labels = images, labels
        self.transform, self.target_transform = transform, target_transform

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, index: int):
        image, label = self.images[index], self.labels[index]
        if self.transform is not None:
            image = self.transform(image)
        if self.target_transform is not None:
            label = self.target_transform(label)
        return image, label


def _dtype(tensor: torch.Tensor) -> str:
    return str(tensor.dtype).removeprefix("torch.")


def _check_finite(tensor: torch.Tensor, what: str, item: str) -> None:
    bad = ~torch.isfinite(tensor)
    if bad.any():
        first = int(bad.flatten().nonzero()[0]) // max(1, tensor[0].numel())
        raise SyntheticSetFileError(f"{what} hold {int(bad.sum())} non-finite value(s) (NaN or infinity), "
                                    f"the first in {item} {first}; expected finite values")


def save_synthetic_set(syn: SyntheticSet, path: str | os.PathLike) -> Path:
    """Write ``syn`` to ``path`` atomically (a temporary file renamed into place)."""
    tensors = {"images": syn.images.detach().to("cpu", torch.float32), "labels": syn.labels.detach()}
    if syn.learned_lr is not None:
        tensors["learned_lr"] = torch.tensor(float(syn.learned_lr), dtype=torch.float32)
    meta = {**syn.metadata, "label_kind": syn.label_kind}
    meta.pop("zca", None)
    if syn.zca is not None:
        tensors.update(syn.zca.tensors())
        meta["zca"] = syn.zca.metadata()
    return write_tensor_file(path, tensors, meta, FORMAT, FORMAT_VERSION)


def load_synthetic_set(path: str | os.PathLike) -> SyntheticSet:
    """Read a synthetic-set file written by :func:`save_synthetic_set` (no unpickling).

    Raises:
        SyntheticSetFileError: the file is missing, not a safetensors file, corrupt, or not a
            datadistill synthetic set (missing tensors or metadata, or metadata ``zca`` without
            its tensors), or its tensors break a rule of :meth:`SyntheticSet.validate` (non-finite
            or non-float32 images, labels outside the classes, ...): the message names the file
            and the bad value.
    """
    tensors, meta = read_tensor_file(path, FORMAT, FORMAT_VERSION, SyntheticSetFileError, "synthetic set")
    missing = [k for k in _REQUIRED_META if k not in meta] + [k for k in ("images", "labels") if k not in tensors]
    if missing:
        raise SyntheticSetFileError(f"{path}: missing {missing[0]!r}")
    with error_context(str(path)):
        lr = tensors.get("learned_lr")
        if lr is not None and lr.numel() != 1:
            raise SyntheticSetFileError(f"learned_lr holds {lr.numel()} values; expected one number")
        syn = SyntheticSet(tensors["images"], tensors["labels"], None if lr is None else float(lr), meta)
        syn.validate()
    if meta.get("zca") is not None:
        try:
            syn.zca = ZCA.from_metadata(tensors, meta["zca"], syn.images.shape[1:])
        except SyntheticSetFileError as exc:
            raise SyntheticSetFileError(f"{path}: {exc}") from exc
    return syn
