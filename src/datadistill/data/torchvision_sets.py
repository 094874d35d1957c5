"""Datasets in torchvision's on-disk layouts, held in memory.

- ``mnist``, ``fashion_mnist``: torchvision's classes (``ROOT/MNIST/raw/*-ubyte``,
  ``ROOT/FashionMNIST/raw/*-ubyte``).
- ``cifar10``, ``cifar100``: the "python version" batches torchvision reads
  (``ROOT/cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}``,
  ``ROOT/cifar-100-python/{train,test,meta}``). Those files are pickles: torchvision unpickles them
  with ``pickle.load``, which can run any code a file asks for, so we read them with
  :func:`restricted_unpickle`, which builds only dicts, lists, strings, numbers and numpy arrays.
- ``svhn``: torchvision's layout (``ROOT/{train,test}_32x32.mat``, MATLAB files read with
  ``scipy.io.loadmat``, label 10 = digit 0), without torchvision's MD5 check of the full files.

Pixels become float32 (N, C, H, W), ``(pixel / 255 - mean) / std``; an ``image_size`` option
resizes them (antialiased bilinear).
"""

from __future__ import annotations

import codecs
import io
import pickle
from pathlib import Path

import numpy as np
import torch

from datadistill.data.base import DATASETS, DataOptions, DatasetSpec, LabelledImages, SplitDataset
from datadistill.errors import DatasetLayoutError, DatasetNotFoundError

_NO_FLIP = "color_crop_cutout_scale_rotate"
_WITH_FLIP = "color_crop_cutout_flip_scale_rotate"

MNIST_SPEC = DatasetSpec(
    name="mnist", channels=1, image_size=(28, 28), class_names=tuple(str(i) for i in range(10)),
    mean=(0.1307,), std=(0.3081,), dsa_strategy=_NO_FLIP,
)
FASHION_MNIST_SPEC = DatasetSpec(
    name="fashion_mnist", channels=1, image_size=(28, 28),
    class_names=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                 "Bag", "Ankle boot"),
    mean=(0.2861,), std=(0.3530,), dsa_strategy=_WITH_FLIP,
)
# mean/std: the values of the reference code (DC/DSA/DM, MTT), reference §2
CIFAR10_SPEC = DatasetSpec(
    name="cifar10", channels=3, image_size=(32, 32),
    class_names=("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
    mean=(0.4914, 0.4822, 0.4465), std=(0.2023, 0.1994, 0.2010), dsa_strategy=_WITH_FLIP,
)
CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4866, 0.4409), (0.2673, 0.2564, 0.2762)
# SVHN: the values of DC's code (utils.get_dataset); no flip (digits), reference §3
SVHN_SPEC = DatasetSpec(
    name="svhn", channels=3, image_size=(32, 32), class_names=tuple(str(i) for i in range(10)),
    mean=(0.4377, 0.4438, 0.4728), std=(0.1980, 0.2010, 0.1970), dsa_strategy=_NO_FLIP,
)


def with_options(spec: DatasetSpec, options: DataOptions) -> DatasetSpec:
    """``spec`` at ``options.image_size`` and with ``options``' mean/std when given."""
    from dataclasses import replace

    size = (options.image_size, options.image_size) if options.image_size else spec.image_size
    return replace(spec, image_size=size, mean=options.mean or spec.mean, std=options.std or spec.std)


def normalise_uint8(data: torch.Tensor, spec: DatasetSpec) -> torch.Tensor:
    """uint8 (N, H, W) or (N, C, H, W) → float32 (N, C, H, W) at ``spec.image_size``, normalised."""
    x = data if data.dim() == 4 else data.unsqueeze(1)
    if tuple(x.shape[-2:]) != tuple(spec.image_size):
        from torchvision.transforms.v2 import functional as TF

        x = TF.resize(x, list(spec.image_size), antialias=True)
    x = x.to(torch.float32).div_(255.0)
    mean = torch.tensor(spec.mean, dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.tensor(spec.std, dtype=torch.float32).view(1, -1, 1, 1)
    return x.sub_(mean).div_(std)


def _split(spec: DatasetSpec, train: tuple[torch.Tensor, torch.Tensor], test: tuple[torch.Tensor, torch.Tensor]) -> SplitDataset:
    return SplitDataset(spec, *(LabelledImages(normalise_uint8(x, spec), y.to(torch.int64)) for x, y in (train, test)))


# --------------------------------------------------------------------------- MNIST, Fashion-MNIST
def _load_idx_dataset(cls, spec: DatasetSpec, root: Path, options: DataOptions) -> SplitDataset:
    spec = with_options(spec, options)
    splits = []
    for train in (True, False):
        try:
            ds = cls(str(root), train=train, download=False)
        except RuntimeError as exc:  # torchvision: "Dataset not found. You can use download=True ..."
            raise DatasetNotFoundError(
                f"{spec.name} not found under {root}: run `datadistill data prepare {spec.name}"
                f" --data-root {root}` first"
            ) from exc
        splits.append((ds.data, ds.targets))
    return _split(spec, *splits)


@DATASETS.register("mnist")
def load_mnist(root: Path, options: DataOptions = DataOptions()) -> SplitDataset:
    """MNIST, 60,000 / 10,000 images of 1×28×28, 10 classes (LeCun et al., 1998)."""
    from torchvision.datasets import MNIST

    return _load_idx_dataset(MNIST, MNIST_SPEC, root, options)


@DATASETS.register("fashion_mnist")
def load_fashion_mnist(root: Path, options: DataOptions = DataOptions()) -> SplitDataset:
    """Fashion-MNIST, 60,000 / 10,000 images of 1×28×28, 10 classes (Xiao et al., 2017)."""
    from torchvision.datasets import FashionMNIST

    return _load_idx_dataset(FashionMNIST, FASHION_MNIST_SPEC, root, options)


# --------------------------------------------------------------------------- CIFAR
def _numpy_reconstructors() -> dict[tuple[str, str], object]:
    from numpy._core import multiarray, numeric

    allowed = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): codecs.encode,  # bytes in protocol-2 pickles written by Python 3
    }
    for module in ("numpy.core", "numpy._core"):  # pickles from numpy 1.x name numpy.core
        allowed[(f"{module}.multiarray", "_reconstruct")] = multiarray._reconstruct
        allowed[(f"{module}.multiarray", "scalar")] = multiarray.scalar
        allowed[(f"{module}.numeric", "_frombuffer")] = numeric._frombuffer
    return allowed


class _RestrictedUnpickler(pickle.Unpickler):
    _allowed = None

    def find_class(self, module: str, name: str):
        allowed = type(self)._allowed
        if allowed is None:
            allowed = type(self)._allowed = _numpy_reconstructors()
        if (module, name) in allowed:
            return allowed[(module, name)]
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only numpy arrays and plain "
                                     "containers are read from dataset files")


def restricted_unpickle(path: Path) -> object:
    """Read a pickle that may hold only dicts, lists, tuples, strings, bytes, numbers and numpy
    arrays (the CIFAR "python version" batches); any other object (a function to call, a class to
    build) is refused. Strings from Python 2 pickles are decoded as latin-1, as torchvision does.

    Raises:
        DatasetLayoutError: the file is not such a pickle (truncated, another format, or it asks for
            any other object).
    """
    try:
        with open(path, "rb") as fh:
            return _RestrictedUnpickler(io.BytesIO(fh.read()), encoding="latin1").load()
    except Exception as exc:  # only allow-listed objects are built: any failure means a damaged file
        raise DatasetLayoutError(f"{path} is not a CIFAR batch file: {exc}") from None


def _cifar_batch(path: Path, label_key: str) -> tuple[torch.Tensor, torch.Tensor]:
    if not path.is_file():
        raise DatasetNotFoundError(f"{path} not found: CIFAR needs torchvision's 'python version' layout "
                                   "(download cifar-10-python.tar.gz / cifar-100-python.tar.gz and extract it "
                                   "into --data-root)")
    entry = restricted_unpickle(path)
    if not isinstance(entry, dict) or "data" not in entry or label_key not in entry:
        keys = sorted(entry) if isinstance(entry, dict) else type(entry).__name__
        raise DatasetLayoutError(f"{path}: expected a dict with 'data' and {label_key!r}, got {keys}")
    data = np.asarray(entry["data"])
    labels = np.asarray(entry[label_key])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(labels) != len(data):
        raise DatasetLayoutError(f"{path}: 'data' must be uint8 (N, 3072) with N labels, got {data.dtype} "
                                 f"{data.shape} and {len(labels)} labels")
    return torch.from_numpy(data.reshape(-1, 3, 32, 32).copy()), torch.from_numpy(labels.astype(np.int64))


def _cifar_names(path: Path, key: str, count: int) -> tuple[str, ...]:
    if path.is_file():
        meta = restricted_unpickle(path)
        names = meta.get(key) if isinstance(meta, dict) else None
        if isinstance(names, list) and len(names) == count:
            return tuple(str(n) for n in names)
        raise DatasetLayoutError(f"{path}: expected {key!r} with {count} class names")
    return tuple(str(i) for i in range(count))


def _check_labels(labels: torch.Tensor, count: int, path: Path) -> None:
    if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= count):
        raise DatasetLayoutError(f"{path}: labels must be in [0, {count}), got {int(labels.min())}..{int(labels.max())}")


@DATASETS.register("cifar10")
def load_cifar10(root: Path, options: DataOptions = DataOptions()) -> SplitDataset:
    """CIFAR-10 (Krizhevsky, 2009), 50,000 / 10,000 images of 3×32×32, 10 classes, from
    ``ROOT/cifar-10-batches-py``."""
    folder = root / "cifar-10-batches-py"
    parts = [_cifar_batch(folder / f"data_batch_{i}", "labels") for i in range(1, 6)]
    test = _cifar_batch(folder / "test_batch", "labels")
    for (_, y), name in zip([*parts, test], [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]):
        _check_labels(y, 10, folder / name)
    from dataclasses import replace

    spec = replace(CIFAR10_SPEC, class_names=_cifar_names(folder / "batches.meta", "label_names", 10))
    train = (torch.cat([x for x, _ in parts]), torch.cat([y for _, y in parts]))
    return _split(with_options(spec, options), train, test)


@DATASETS.register("cifar100")
def load_cifar100(root: Path, options: DataOptions = DataOptions()) -> SplitDataset:
    """CIFAR-100 (Krizhevsky, 2009), 50,000 / 10,000 images of 3×32×32, 100 fine classes, from
    ``ROOT/cifar-100-python``."""
    folder = root / "cifar-100-python"
    train, test = _cifar_batch(folder / "train", "fine_labels"), _cifar_batch(folder / "test", "fine_labels")
    _check_labels(train[1], 100, folder / "train")
    _check_labels(test[1], 100, folder / "test")
    spec = DatasetSpec(name="cifar100", channels=3, image_size=(32, 32),
                       class_names=_cifar_names(folder / "meta", "fine_label_names", 100),
                       mean=CIFAR100_MEAN, std=CIFAR100_STD, dsa_strategy=_WITH_FLIP)
    return _split(with_options(spec, options), train, test)


# --------------------------------------------------------------------------- SVHN
def _svhn_split(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    import scipy.io

    if not path.is_file():
        raise DatasetNotFoundError(f"{path} not found: SVHN needs torchvision's layout, the cropped-digits "
                                   "files train_32x32.mat and test_32x32.mat in --data-root")
    try:
        mat = scipy.io.loadmat(str(path))
    except (ValueError, OSError, NotImplementedError, TypeError, IndexError, scipy.io.matlab.MatReadError) as exc:
        raise DatasetLayoutError(f"{path} is not a readable MATLAB file: {exc}") from None
    if "X" not in mat or "y" not in mat:
        raise DatasetLayoutError(f"{path}: expected the arrays 'X' (32, 32, 3, N) and 'y' (N, 1), "
                                 f"got {sorted(k for k in mat if not k.startswith('__'))}")
    x, y = np.asarray(mat["X"]), np.asarray(mat["y"]).reshape(-1).astype(np.int64)
    if x.ndim != 4 or x.shape[:3] != (32, 32, 3) or x.shape[3] != len(y):
        raise DatasetLayoutError(f"{path}: 'X' must be (32, 32, 3, N) with N = len(y) = {len(y)}, got {x.shape}")
    if len(y) and (y.min() < 1 or y.max() > 10):
        raise DatasetLayoutError(f"{path}: labels 'y' must be 1..10 (10 = digit 0), got {y.min()}..{y.max()}")
    y[y == 10] = 0
    images = torch.from_numpy(np.ascontiguousarray(np.transpose(x, (3, 2, 0, 1))).astype(np.uint8))
    return images, torch.from_numpy(y)


@DATASETS.register("svhn")
def load_svhn(root: Path, options: DataOptions = DataOptions()) -> SplitDataset:
    """SVHN cropped digits (Netzer et al., 2011), 73,257 / 26,032 images of 3×32×32, 10 classes,
    from ``ROOT/train_32x32.mat`` and ``ROOT/test_32x32.mat`` (or ``ROOT/svhn/…``)."""
    folder = root / "svhn" if not (root / "train_32x32.mat").exists() and (root / "svhn").is_dir() else root
    return _split(with_options(SVHN_SPEC, options), _svhn_split(folder / "train_32x32.mat"),
                  _svhn_split(folder / "test_32x32.mat"))
