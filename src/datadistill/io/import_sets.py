"""Import a synthetic set from an image folder, a saved Hugging Face dataset or a datadistill ``.npz``
export (``datadistill import PATH --dataset NAME``), so that a small set made anywhere can be
evaluated, compared and scored here.

* **Image folder**: one sub-folder per class holding image files (``.png``, ``.jpg``, ``.jpeg``,
  ``.bmp``, ``.gif``, ``.tif``, ``.tiff``, ``.webp``, ``.ppm``, ``.pgm``; other files and hidden
  entries are ignored), the layout ``export --format imagefolder`` writes and torchvision's
  ``ImageFolder`` reads. Each folder is named by a class name of the dataset (or by its folder form,
  see :func:`~datadistill.io.export.class_folder_names`); a class may have no folder. Images must
  have the dataset's size; they are read as 8-bit grey (1 channel) or RGB (3), scaled to [0, 1] and
  normalised with the dataset's mean/std. Order: by file name, then class (an exported folder comes
  back in its original order). ``datadistill.json`` beside the class folders (written by export)
  gives back the method, learned lr and the rest of the metadata.
* **Hugging Face dataset** (a folder written by ``save_to_disk``; a ``DatasetDict`` with one split or a
  ``train`` split): an image column ``image`` (or ``img``, ``pixel_values``, ``images``) and a label
  column ``label`` (or ``labels``). A ``ClassLabel`` label is mapped to the dataset's classes by name
  (every name must be one of them); plain integers are class indices. Images: an ``Image`` feature
  (decoded, 8-bit) or arrays (C, H, W), (H, W, C) or, for 1 channel, (H, W); integer arrays are 8-bit
  pixels (0..255) / 255, float arrays pixels in [0, 1], then normalised; a dataset written by ``export --format hf``
  holds normalised float32 images, taken as they are (bit for bit). A ``soft_label`` column (N, K)
  float32 gives soft labels. Needs ``pip install datadistill[hf]``.
* **npz export** (``export --format npz``): read with ``numpy.load(allow_pickle=False)``, back bit for
  bit, with its ZCA when it holds one.

With a ZCA (``--zca-eps``), the images of an image folder or Hugging Face dataset (never whitened)
are whitened with it and the ZCA is stored with the set; an npz export already holds its own.

Raises (every reader): SyntheticSetFileError naming the path and what is wrong: unreadable files,
class names that are not the dataset's, images of another size or channel count, no image at all,
an export of another dataset's mean/std, labels out of range, non-finite values.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from datadistill.data.base import DatasetSpec
from datadistill.errors import SyntheticSetFileError, error_context
from datadistill.io.export import METADATA_FILE, class_folder_names, quiet_datasets, require_datasets
from datadistill.io.synthetic_set import SyntheticSet, synthetic_set_metadata
from datadistill.preprocess.zca import ZCA

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"})
HF_MARKERS = ("state.json", "dataset_dict.json")  # save_to_disk of a Dataset / a DatasetDict
_IMAGE_COLUMNS = ("image", "img", "pixel_values", "images")
_LABEL_COLUMNS = ("label", "labels")
# keys rebuilt from the dataset's spec, or describing the file rather than the set
_NOT_KEPT = {"dataset", "channels", "image_size", "class_names", "num_classes", "mean", "std", "method", "ipc",
             "format", "format_version", "label_kind", "learned_lr", "zca", "export", "source_file",
             "source_format"}


def exported_form(path: Path) -> str | None:
    """``"npz"``, ``"hf"`` or ``"imagefolder"`` for a path of that form, else None (an MTT run folder,
    which holds images_best.pt, is told apart by the caller first)."""
    if path.is_file():
        return "npz" if path.suffix == ".npz" else None
    if not path.is_dir():
        return None
    if any((path / marker).is_file() for marker in HF_MARKERS):
        return "hf"
    return "imagefolder" if any(d.is_dir() and not d.name.startswith(".") for d in path.iterdir()) else None


def import_exported(path: str | os.PathLike, spec: DatasetSpec, zca: ZCA | None = None) -> SyntheticSet:
    """Import an image folder, a saved Hugging Face dataset or an npz export (see the module docstring)."""
    path = Path(path)
    form = exported_form(path)
    if form is None:
        raise SyntheticSetFileError(f"{path} is neither an image folder, a saved Hugging Face dataset nor an .npz file")
    return {"npz": import_npz, "hf": import_hf, "imagefolder": import_imagefolder}[form](path, spec, zca)


def import_imagefolder(path: str | os.PathLike, spec: DatasetSpec, zca: ZCA | None = None) -> SyntheticSet:
    """Import a one-folder-per-class folder of images (see the module docstring)."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    index = _class_index(spec)
    folders = sorted(d for d in path.iterdir() if d.is_dir() and not d.name.startswith("."))
    unknown = [d.name for d in folders if d.name not in index]
    if unknown or not folders:
        found = f"folder(s) {unknown[:5]} that are not" if unknown else "no sub-folder named by"
        raise SyntheticSetFileError(f"{path}: {found} a class of dataset {spec.name!r}; an image folder holds one "
                                    f"sub-folder per class, named by its class name: {_names(spec)}")
    files = sorted((f.name, index[d.name], f) for d in folders for f in d.iterdir()
                   if f.is_file() and not f.name.startswith(".") and f.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise SyntheticSetFileError(f"{path}: the class folders hold no image file "
                                    f"({', '.join(sorted(IMAGE_SUFFIXES))})")
    arrays = []
    for _, _, file in files:
        try:
            with Image.open(file) as image:
                arrays.append(_image_array(file, image, spec))
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            raise SyntheticSetFileError(f"{file} is not a readable image ({type(exc).__name__}: {exc})") from None
    labels = torch.tensor([label for _, label, _ in files], dtype=torch.int64)
    images = _normalise(_pixels(np.stack(arrays)), spec)
    exported = _read_json(path / METADATA_FILE) if (path / METADATA_FILE).is_file() else None
    return _finish(path, "imagefolder", spec, images, labels, exported, zca)


def import_hf(path: str | os.PathLike, spec: DatasetSpec, zca: ZCA | None = None) -> SyntheticSet:
    """Import a Hugging Face dataset saved with ``save_to_disk`` (see the module docstring)."""
    datasets = require_datasets()
    path = Path(path)
    try:
        with quiet_datasets(datasets):
            ds = datasets.load_from_disk(str(path))
    except Exception as exc:  # FileNotFoundError, ValueError, pyarrow errors, json errors, ...
        raise SyntheticSetFileError(f"{path} is not a readable saved Hugging Face dataset "
                                    f"({type(exc).__name__}: {' '.join(str(exc).split())[:300]})") from None
    if isinstance(ds, datasets.DatasetDict):
        if len(ds) != 1 and "train" not in ds:
            raise SyntheticSetFileError(f"{path}: a DatasetDict of splits {sorted(ds)}; expected one split or "
                                        "a 'train' split")
        ds = ds["train"] if "train" in ds else next(iter(ds.values()))
    image_col = next((c for c in _IMAGE_COLUMNS if c in ds.column_names), None)
    label_col = next((c for c in _LABEL_COLUMNS if c in ds.column_names), None)
    if image_col is None or label_col is None:
        raise SyntheticSetFileError(f"{path}: columns {ds.column_names}; expected an image column "
                                    f"({' or '.join(_IMAGE_COLUMNS)}) and a label column "
                                    f"({' or '.join(_LABEL_COLUMNS)})")
    if len(ds) == 0:
        raise SyntheticSetFileError(f"{path}: the dataset holds no image")
    exported = _parse_json(ds.info.description)
    native = exported is not None and exported["export"].get("format") == "hf"
    if native:
        _check_same_dataset(path, exported, spec)
    columns = ds.with_format("numpy", columns=[c for c in (label_col, "soft_label") if c in ds.column_names])[:]
    order = _label_order(path, ds.features[label_col], spec, datasets)
    labels = torch.as_tensor(np.asarray(columns[label_col])).to(torch.int64)
    if order is not None:
        outside = labels[(labels < 0) | (labels >= len(order))]
        if outside.numel():
            raise SyntheticSetFileError(f"{path}: labels hold class {int(outside[0])}; the ClassLabel has "
                                        f"{len(order)} names")
        labels = torch.tensor(order)[labels]
    if isinstance(ds.features[image_col], datasets.Image):
        images = _normalise(_pixels(np.stack([_image_array(path, im, spec) for im in ds[image_col]])), spec)
    else:
        array = np.asarray(ds.with_format("numpy", columns=[image_col])[:][image_col])
        images = _array_images(path, array, spec, normalised=native)
    if "soft_label" in columns:
        soft = torch.as_tensor(np.asarray(columns["soft_label"], dtype=np.float32))
        if soft.dim() != 2 or soft.shape[1] != spec.num_classes:
            raise SyntheticSetFileError(f"{path}: soft_label of shape {tuple(soft.shape)}; "
                                        f"expected (N, {spec.num_classes})")
        labels = soft if order is None else torch.zeros_like(soft).index_copy_(1, torch.tensor(order), soft)
    return _finish(path, "hf", spec, images, labels, exported if native else None, zca)


def import_npz(path: str | os.PathLike, spec: DatasetSpec, zca: ZCA | None = None) -> SyntheticSet:
    """Import an ``export --format npz`` file, bit for bit (see the module docstring)."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise SyntheticSetFileError(f"{path} is not a readable .npz file ({type(exc).__name__}: {exc})") from None
    missing = [k for k in ("images", "labels", "metadata") if k not in arrays]
    text = arrays.get("metadata")
    meta = _parse_json(str(text)) if text is not None and text.dtype.kind == "U" else None
    if missing or meta is None:
        raise SyntheticSetFileError(f"{path}: not an npz written by datadistill export (arrays {sorted(arrays)}; "
                                    "expected images, labels and metadata, the metadata JSON with its 'export' entry)")
    if zca is not None:
        raise SyntheticSetFileError(f"{path}: an npz export holds its images as stored (with its own ZCA when the set "
                                    "had one); import it without --zca-eps")
    images, labels = (torch.from_numpy(arrays[k]) for k in ("images", "labels"))
    _check_shape(path, images, spec)
    _check_same_dataset(path, meta, spec)
    if images.dtype != torch.float32:
        raise SyntheticSetFileError(f"{path}: images are {images.dtype}; expected float32")
    stored = None
    if "zca_mean" in arrays or meta.get("zca") is not None:
        if not isinstance(meta.get("zca"), dict) or "eps" not in meta["zca"]:
            raise SyntheticSetFileError(f"{path}: zca arrays without metadata zca {{\"eps\": …}} (or the reverse)")
        with error_context(str(path)):
            stored = ZCA.from_metadata({k: torch.from_numpy(v) for k, v in arrays.items() if k.startswith("zca_")},
                                       meta["zca"], images.shape[1:])
    lr = arrays.get("learned_lr")
    if lr is not None:
        meta["learned_lr"] = float(lr.reshape(()))
    return _finish(path, "npz", spec, images, labels, meta, stored, whiten=False)


def _class_index(spec: DatasetSpec) -> dict[str, int]:
    """Class name → index, for the class names and their image-folder forms."""
    index = {name: i for i, name in enumerate(class_folder_names(list(spec.class_names)))}
    index.update((name, i) for i, name in enumerate(spec.class_names))
    return index


def _names(spec: DatasetSpec) -> str:
    names = list(spec.class_names)
    return ", ".join(names[:20]) + (f", … ({len(names)} classes)" if len(names) > 20 else "")


def _label_order(path: Path, feature, spec: DatasetSpec, datasets) -> list[int] | None:
    """For a ClassLabel feature, the dataset class index of each of its names; None for plain integers."""
    if not isinstance(feature, datasets.ClassLabel):
        return None
    index = _class_index(spec)
    unknown = [n for n in feature.names if n not in index]
    if unknown:
        raise SyntheticSetFileError(f"{path}: label names {unknown[:5]} are not classes of dataset {spec.name!r}: "
                                    f"{_names(spec)}")
    order = [index[n] for n in feature.names]
    return None if order == list(range(len(order))) else order


def _image_array(source: Path, image, spec: DatasetSpec) -> np.ndarray:
    """An image (PIL) as (H, W) or (H, W, C) uint8 of the dataset's channels, its size checked."""
    h, w = spec.image_size
    if image.size != (w, h):
        where = getattr(image, "filename", "") or source
        raise SyntheticSetFileError(f"{where}: image of {image.size[1]}×{image.size[0]} pixels; dataset {spec.name!r} "
                                    f"has {h}×{w} images")
    if spec.channels not in (1, 3):
        raise SyntheticSetFileError(f"dataset {spec.name!r} has {spec.channels}-channel images; image files give "
                                    "1 or 3")
    return np.asarray(image.convert("L" if spec.channels == 1 else "RGB"), dtype=np.uint8)


def _pixels(array: np.ndarray) -> torch.Tensor:
    """(N, H, W) or (N, H, W, C) uint8 → (N, C, H, W) float32 in [0, 1]."""
    x = torch.from_numpy(array).to(torch.float32) / 255
    return x.unsqueeze(1) if x.dim() == 3 else x.permute(0, 3, 1, 2).contiguous()


def _normalise(pixels: torch.Tensor, spec: DatasetSpec) -> torch.Tensor:
    mean = torch.tensor(spec.mean, dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.tensor(spec.std, dtype=torch.float32).view(1, -1, 1, 1)
    return (pixels - mean) / std


def _array_images(path: Path, array: np.ndarray, spec: DatasetSpec, normalised: bool) -> torch.Tensor:
    """Image arrays of a Hugging Face dataset → (N, C, H, W) float32 normalised images."""
    c, (h, w) = spec.channels, spec.image_size
    if array.dtype == object or array.ndim not in (3, 4):
        raise SyntheticSetFileError(f"{path}: images of shape {array.shape} ({array.dtype}); expected arrays of the "
                                    f"dataset's size, (C, H, W) = ({c}, {h}, {w}) or (H, W, C)")
    x = torch.from_numpy(np.ascontiguousarray(array))
    if array.ndim == 3 and c == 1 and tuple(x.shape[1:]) == (h, w):
        x = x.unsqueeze(1)
    elif array.ndim == 4 and tuple(x.shape[1:]) == (h, w, c) and tuple(x.shape[1:]) != (c, h, w):
        x = x.permute(0, 3, 1, 2).contiguous()
    _check_shape(path, x, spec)
    if normalised:
        return x.to(torch.float32)
    if x.is_floating_point():
        return _normalise(x.to(torch.float32), spec)
    if x.dtype == torch.bool or x.is_complex() or x.min() < 0 or x.max() > 255:
        raise SyntheticSetFileError(f"{path}: images of dtype {array.dtype} (values {x.min()}..{x.max()}); expected "
                                    "8-bit pixels 0..255 (an integer dtype) or float pixels in [0, 1]")
    return _normalise(x.to(torch.float32) / 255, spec)


def _check_shape(path: Path, images: torch.Tensor, spec: DatasetSpec) -> None:
    want = (spec.channels, *spec.image_size)
    if images.dim() != 4 or tuple(images.shape[1:]) != want:
        raise SyntheticSetFileError(f"{path}: images of shape {tuple(images.shape)} do not match dataset "
                                    f"{spec.name!r}, whose images are (N, {', '.join(map(str, want))})")


def _check_same_dataset(path: Path, meta: dict[str, Any], spec: DatasetSpec) -> None:
    """An export of normalised images: its classes and mean/std must be the dataset's."""
    if meta.get("class_names") is not None and list(meta["class_names"]) != list(spec.class_names):
        raise SyntheticSetFileError(f"{path}: exported with class names {meta['class_names']}; dataset {spec.name!r} "
                                    f"has {list(spec.class_names)}")
    for key in ("mean", "std"):
        if key in meta and [float(v) for v in meta[key]] != [float(v) for v in getattr(spec, key)]:
            raise SyntheticSetFileError(f"{path}: images normalised with {key} {meta[key]} (dataset "
                                        f"{meta.get('dataset')!r}); dataset {spec.name!r} has "
                                        f"{list(getattr(spec, key))}")


def _parse_json(text: str | None) -> dict[str, Any] | None:
    """The metadata of a datadistill export held in ``text``, or None (not JSON, or no ``export`` entry)."""
    try:
        meta = json.loads(text) if text else None
    except ValueError:
        return None
    return meta if isinstance(meta, dict) and isinstance(meta.get("export"), dict) else None


def _read_json(file: Path) -> dict[str, Any] | None:
    try:
        return _parse_json(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise SyntheticSetFileError(f"{file} cannot be read ({exc})") from None


def _finish(path: Path, form: str, spec: DatasetSpec, images: torch.Tensor, labels: torch.Tensor,
            exported: dict[str, Any] | None, zca: ZCA | None, whiten: bool = True) -> SyntheticSet:
    """The set with ``zca`` (the images whitened with it first when ``whiten``), its metadata rebuilt
    from ``spec`` and the export's own metadata, validated."""
    from datadistill._version import __version__

    if zca is not None:
        if zca.shape != tuple(images.shape[1:]):
            raise SyntheticSetFileError(f"{path}: the ZCA was fitted on images of shape {zca.shape}, the set holds "
                                        f"images of shape {tuple(images.shape[1:])}")
        images = zca.whiten(images) if whiten else images
    hard = labels if labels.dim() == 1 else labels.argmax(dim=1)
    counts = torch.bincount(hard.clamp(min=0), minlength=spec.num_classes)
    ipc = int(counts[0]) if bool((counts == counts[0]).all()) and int(counts[0]) > 0 else None
    if exported is None:
        meta = synthetic_set_metadata(spec, method=f"imported:{form}", ipc=ipc, init=None, model=None, seed=None,
                                      iterations=None, config={}, package_version=__version__)
        lr = None
    else:
        kept = {k: v for k, v in exported.items() if k not in _NOT_KEPT}
        meta = synthetic_set_metadata(spec, method=exported.get("method", f"imported:{form}"), ipc=ipc, **kept)
        lr = exported.get("learned_lr")
        if labels.dim() == 2 and exported.get("label_kind") in ("soft_logits", "soft_probabilities"):
            meta["label_kind"] = exported["label_kind"]
    meta.update(source_file=str(path), source_format=form)
    with error_context(str(path)):
        if lr is not None and (isinstance(lr, bool) or not isinstance(lr, (int, float))):
            raise SyntheticSetFileError(f"learned_lr is {lr!r}; expected a number")
        return SyntheticSet(images, labels, None if lr is None else float(lr), meta, zca).validate()


__all__ = ["IMAGE_SUFFIXES", "exported_form", "import_exported", "import_hf", "import_imagefolder", "import_npz"]
