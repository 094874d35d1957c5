"""Datasets stored as image files: MHIST, TinyImageNet and any image folder.

Layouts:

- ``mhist`` (Wei et al., 2021; colorectal polyp histopathology, 224×224 RGB): ``ROOT/annotations.csv``
  (or ``ROOT/mhist/`` / ``ROOT/MHIST/``) with the columns ``Image Name``, ``Majority Vote Label``
  (``HP`` → class 0, ``SSA`` → class 1) and ``Partition`` (``train`` / ``test``); the official file
  also has ``Number of Annotators who Selected SSA (Out of 7)``, which is not needed. Images in
  ``ROOT/images/``.
- ``tinyimagenet`` (200 classes, 64×64 RGB): ``ROOT/tiny-imagenet-200/`` (or ``ROOT`` itself) with
  ``wnids.txt``, optional ``words.txt`` (class names), ``train/<wnid>/images/*.JPEG`` and
  ``val/images/*.JPEG`` labelled by ``val/val_annotations.txt``; the validation split is the test set
  (the official test split has no labels).
- ``imagefolder:PATH``: torchvision's ImageFolder layout, one sub-folder per class (class names
  from the folder names). ``PATH/train`` and ``PATH/test`` (or ``PATH/val``) when present; otherwise
  ``PATH`` (or ``PATH/train`` alone) holds every image and a fixed 10 % of each class (seeded
  permutation, at least one image) becomes the test set.

The files are indexed without decoding (torchvision's folder scan; image sizes from the file headers
with Pillow). Mean and std are published values where they exist (TinyImageNet: ImageNet's, as in
the MTT code) and otherwise computed from the training images at the chosen size, once, then cached
in ``$XDG_CACHE_HOME/datadistill/stats/``. Training sets larger than 1 GiB as float32 are streamed
(``stream: auto``): see :mod:`datadistill.data.streamed`.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from datadistill.data.base import DATASETS, DataOptions, DatasetSpec, SplitDataset, check_class_count
from datadistill.data.streamed import STREAM_THRESHOLD_BYTES, ImageFiles, StreamedImages, channel_stats
from datadistill.errors import DatasetLayoutError, DatasetNotFoundError
from datadistill.fsutil import atomic_write_text

_WITH_FLIP = "color_crop_cutout_flip_scale_rotate"
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

MHIST_COLUMNS = ("Image Name", "Majority Vote Label", "Partition")
MHIST_CLASSES = ("HP", "SSA")


@dataclass
class FileSplit:
    """Paths and int64 labels of one split."""

    paths: list[Path]
    labels: list[int]


def _header_size(path: Path) -> tuple[int, int]:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return im.size[1], im.size[0]
    except FileNotFoundError:
        raise DatasetLayoutError(f"image file {path} does not exist") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise DatasetLayoutError(f"cannot read image {path}: {exc}") from None


def _image_channels(path: Path) -> int:
    from PIL import Image

    with Image.open(path) as im:
        return 1 if im.mode in ("1", "L", "I", "I;16", "F") else 3


def check_sizes(paths: Sequence[Path]) -> tuple[int, int]:
    """The (H, W) shared by every file (from the headers).

    Raises:
        DatasetLayoutError: a file is unreadable, or differs in size from the first (names both).
    """
    first = _header_size(paths[0])
    for p in paths[1:]:
        hw = _header_size(p)
        if hw != first:
            raise DatasetLayoutError(f"image {p} is {hw[1]}×{hw[0]} but {paths[0]} is {first[1]}×{first[0]}: "
                                     "mixed image sizes; pass --image-size N to resize them all")
    return first


def stats_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "datadistill" / "stats"


def cached_channel_stats(files: ImageFiles, num_workers: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """:func:`channel_stats` of ``files``, cached by (file list, sizes, mtimes, image size, channels)."""
    h = hashlib.sha256()
    h.update(json.dumps([files.channels, list(files.image_size)]).encode())
    for p in files.paths:
        st = p.stat()
        h.update(f"{p.resolve()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    path = stats_cache_dir() / f"{h.hexdigest()[:32]}.json"
    if path.is_file():
        try:
            d = json.loads(path.read_text())
            return tuple(d["mean"]), tuple(d["std"])
        except (ValueError, KeyError, TypeError):
            pass  # a damaged cache entry is recomputed
    mean, std = channel_stats(files, num_workers)
    try:
        atomic_write_text(path, json.dumps({"mean": mean, "std": std, "images": len(files)}) + "\n")
    except OSError:
        pass  # a read-only cache only costs the recomputation
    return mean, std


def build_split_dataset(name: str, class_names: Sequence[str], train: FileSplit, test: FileSplit,
                        options: DataOptions, *, channels: int = 3, native: tuple[int, int] | None = None,
                        mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                        dsa_strategy: str = _WITH_FLIP) -> SplitDataset:
    """A :class:`SplitDataset` over image files, streamed or loaded into memory as ``options.stream`` says.

    Args:
        native: the files' (H, W) when known (checked at decoding); None reads it from the headers of
            every file (mixed sizes are an error unless ``options.image_size`` resizes them).
        mean, std: published normalisation; None computes it from the training images (cached).

    Raises:
        DatasetLayoutError: fewer than two classes, an empty split, a missing or unreadable image,
            mixed sizes.
    """
    check_class_count(name, class_names)  # before any image is read
    for split, what in ((train, "training"), (test, "test")):
        if not split.paths:
            raise DatasetLayoutError(f"{name}: the {what} split has no image")
    if options.image_size:
        size = (options.image_size, options.image_size)
        for p in (*train.paths, *test.paths):
            if not p.is_file():
                raise DatasetLayoutError(f"image file {p} does not exist")
    else:
        size = native or check_sizes([*train.paths, *test.paths])
    resize = options.image_size is not None
    files = {k: ImageFiles(s.paths, torch.tensor(s.labels, dtype=torch.int64), channels, size,
                           [0.0] * channels, [1.0] * channels, resize) for k, s in (("train", train), ("test", test))}
    if options.mean is not None:
        mean, std = options.mean, options.std
    elif mean is None:
        mean, std = cached_channel_stats(files["train"], options.num_workers)
    spec = DatasetSpec(name=name, channels=channels, image_size=size, class_names=tuple(class_names),
                       mean=tuple(mean), std=tuple(std), dsa_strategy=dsa_strategy)
    streamed = {}
    for k, f in files.items():
        f.mean = torch.tensor(spec.mean, dtype=torch.float32).view(-1, 1, 1)
        f.std = torch.tensor(spec.std, dtype=torch.float32).view(-1, 1, 1)
        streamed[k] = StreamedImages(f, options.num_workers)
    stream = options.stream == "on" or (options.stream == "auto" and streamed["train"].nbytes > STREAM_THRESHOLD_BYTES)
    if stream:
        return SplitDataset(spec, streamed["train"], streamed["test"])
    return SplitDataset(spec, streamed["train"].materialise(), streamed["test"].materialise())


def _first_folder(root: Path, names: Sequence[str], marker: str) -> Path:
    for name in names:
        candidate = root / name if name else root
        if (candidate / marker).exists():
            return candidate
    return root


# --------------------------------------------------------------------------- MHIST
def read_mhist_annotations(csv_path: Path) -> tuple[FileSplit, FileSplit]:
    """Parse MHIST's ``annotations.csv`` into train and test splits (images next to it in ``images/``).

    Raises:
        DatasetNotFoundError: no ``annotations.csv``.
        DatasetLayoutError: a missing column, an unknown label or partition, a missing image file,
            or an empty file; the message names the file and line.
    """
    if not csv_path.is_file():
        raise DatasetNotFoundError(
            f"MHIST not found: {csv_path} does not exist. MHIST is distributed after a data-use form "
            "(https://bmirds.github.io/MHIST/): put annotations.csv and the images/ folder in one folder "
            "and pass it as --data-root")
    images = csv_path.parent / "images"
    splits = {"train": FileSplit([], []), "test": FileSplit([], [])}
    with open(csv_path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        columns = [c.strip() for c in (reader.fieldnames or [])]
        missing = [c for c in MHIST_COLUMNS if c not in columns]
        if missing:
            raise DatasetLayoutError(f"{csv_path}: missing column {missing[0]!r} (found: {', '.join(columns) or 'none'}); "
                                     f"expected {', '.join(repr(c) for c in MHIST_COLUMNS)}")
        for row in reader:
            line = reader.line_num
            if None in row:  # csv.DictReader puts the fields beyond the header under the key None
                raise DatasetLayoutError(f"{csv_path} line {line}: {len(columns) + len(row[None])} fields but the "
                                         f"header has {len(columns)} ({', '.join(columns)})")
            row = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
            label, part, name = row["Majority Vote Label"], row["Partition"].lower(), row["Image Name"]
            if label not in MHIST_CLASSES:
                raise DatasetLayoutError(f"{csv_path} line {line}: unknown label {label!r} for {name!r}: "
                                         f"expected {' or '.join(MHIST_CLASSES)}")
            if part not in splits:
                raise DatasetLayoutError(f"{csv_path} line {line}: unknown partition {row['Partition']!r} for "
                                         f"{name!r}: expected train or test")
            path = images / name
            if not name or not path.is_file():
                raise DatasetLayoutError(f"{csv_path} line {line}: image file {path} does not exist")
            splits[part].paths.append(path)
            splits[part].labels.append(MHIST_CLASSES.index(label))
    if not splits["train"].paths and not splits["test"].paths:
        raise DatasetLayoutError(f"{csv_path} lists no image")
    return splits["train"], splits["test"]


@DATASETS.register("mhist")
def load_mhist(root: Path, options: DataOptions = DataOptions()) -> SplitDataset:
    """MHIST: 3,152 colorectal polyp images (2,175 train / 977 test), 2 classes HP / SSA, 3×224×224
    (``--image-size 32|64|128`` to shrink). Imbalanced (about 70 % HP): the evaluation reports balanced
    and per-class accuracy next to accuracy. Mean and std are computed from the training images."""
    folder = _first_folder(root, ("", "mhist", "MHIST"), "annotations.csv")
    train, test = read_mhist_annotations(folder / "annotations.csv")
    return build_split_dataset("mhist", MHIST_CLASSES, train, test, options)


# --------------------------------------------------------------------------- TinyImageNet
def _read_lines(path: Path) -> list[str]:
    return [line.rstrip("\n\r") for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@DATASETS.register("tinyimagenet")
def load_tinyimagenet(root: Path, options: DataOptions = DataOptions()) -> SplitDataset:
    """TinyImageNet: 200 classes, 100,000 training (500 per class) and 10,000 validation images
    (the test set here) of 3×64×64, from the official ``tiny-imagenet-200`` folder. Normalised with
    ImageNet's mean/std, as the MTT code does; streamed by default (about 4.9 GB as float32)."""
    folder = _first_folder(root, ("tiny-imagenet-200", ""), "wnids.txt")
    wnids_path = folder / "wnids.txt"
    if not wnids_path.is_file():
        raise DatasetNotFoundError(f"TinyImageNet not found: {wnids_path} does not exist; extract "
                                   "tiny-imagenet-200.zip into --data-root")
    wnids = _read_lines(wnids_path)
    index = {w: i for i, w in enumerate(wnids)}
    names = list(wnids)
    words = folder / "words.txt"
    if words.is_file():
        table = dict(line.split("\t", 1) for line in _read_lines(words) if "\t" in line)
        names = [table.get(w, w).split(",")[0].strip() or w for w in wnids]
    train = FileSplit([], [])
    for w in wnids:
        images = folder / "train" / w / "images"
        if not images.is_dir():
            raise DatasetLayoutError(f"{folder / 'train' / w}: missing images/ folder for class {w} of wnids.txt")
        found = sorted(p for p in images.iterdir() if p.suffix.lower() in (".jpeg", ".jpg", ".png"))
        if not found:
            raise DatasetLayoutError(f"{images} holds no image for class {w}")
        train.paths += found
        train.labels += [index[w]] * len(found)
    annotations = folder / "val" / "val_annotations.txt"
    if not annotations.is_file():
        raise DatasetLayoutError(f"{annotations} does not exist (labels of the validation images)")
    test = FileSplit([], [])
    for n, line in enumerate(annotations.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) < 2:
            raise DatasetLayoutError(f"{annotations} line {n}: expected 'file<TAB>wnid…', got {line!r}")
        if parts[1] not in index:
            raise DatasetLayoutError(f"{annotations} line {n}: unknown class {parts[1]!r} (not in wnids.txt)")
        path = folder / "val" / "images" / parts[0]
        if not path.is_file():
            raise DatasetLayoutError(f"{annotations} line {n}: image file {path} does not exist")
        test.paths.append(path)
        test.labels.append(index[parts[1]])
    native = None if options.image_size else (64, 64)
    return build_split_dataset("tinyimagenet", names, train, test, options, native=native,
                               mean=IMAGENET_MEAN, std=IMAGENET_STD)


# --------------------------------------------------------------------------- ImageFolder
def _scan(directory: Path, class_to_idx: dict[str, int] | None = None) -> tuple[list[str], FileSplit]:
    from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

    try:
        classes, found = find_classes(str(directory))
    except FileNotFoundError as exc:
        raise DatasetLayoutError(f"{directory}: {exc}; expected one sub-folder of images per class") from None
    if class_to_idx is not None:
        extra = [c for c in classes if c not in class_to_idx]
        if extra:
            raise DatasetLayoutError(f"{directory / extra[0]}: class {extra[0]!r} is not among the training "
                                     f"classes ({', '.join(class_to_idx)})")
        found = {c: class_to_idx[c] for c in classes}
    try:
        samples = make_dataset(str(directory), found, extensions=IMG_EXTENSIONS, allow_empty=True)
    except FileNotFoundError as exc:
        raise DatasetLayoutError(f"{directory}: {exc}") from None
    if not samples:
        raise DatasetLayoutError(f"{directory}: no image files ({', '.join(IMG_EXTENSIONS)}) in its class folders")
    return classes, FileSplit([Path(p) for p, _ in samples], [int(y) for _, y in samples])


def _carve_test(split: FileSplit, num_classes: int, fraction: float = 0.1, seed: int = 0) -> tuple[FileSplit, FileSplit]:
    generator = torch.Generator().manual_seed(seed)
    labels = torch.tensor(split.labels)
    train, test = FileSplit([], []), FileSplit([], [])
    for c in range(num_classes):
        ids = torch.nonzero(labels == c).flatten()
        ids = ids[torch.randperm(len(ids), generator=generator)]
        k = max(1, round(fraction * len(ids))) if len(ids) > 1 else 0
        for target, chosen in ((test, ids[:k]), (train, ids[k:])):
            target.paths += [split.paths[i] for i in chosen.tolist()]
            target.labels += [c] * len(chosen)
    return train, test


@DATASETS.register("imagefolder")
def load_imagefolder(root: Path, options: DataOptions = DataOptions()) -> SplitDataset:
    """Any image folder, ``imagefolder:PATH`` (layout in the module docstring). Channels: 1 when the
    first image is greyscale, else 3 (RGB). Mean/std computed from the training images."""
    if not options.path:
        raise DatasetLayoutError("imagefolder needs a folder: --dataset imagefolder:/path/to/folder")
    base = Path(options.path).expanduser()
    if not base.is_dir():
        raise DatasetNotFoundError(f"image folder {base} does not exist")
    test_dir = next((base / n for n in ("test", "val") if (base / n).is_dir()), None)
    if (base / "train").is_dir() and test_dir is not None:
        classes, train = _scan(base / "train")
        _, test = _scan(test_dir, {c: i for i, c in enumerate(classes)})
    else:  # PATH/<class>, or PATH/train/<class> alone: the test set is carved from it
        classes, everything = _scan(base / "train" if (base / "train").is_dir() else base)
        train, test = _carve_test(everything, len(classes))
    channels = _image_channels(train.paths[0])
    return build_split_dataset(f"imagefolder:{base.resolve()}", classes, train, test, options, channels=channels)


__all__ = ["FileSplit", "build_split_dataset", "cached_channel_stats", "check_sizes", "load_imagefolder",
           "load_mhist", "load_tinyimagenet", "read_mhist_annotations"]
