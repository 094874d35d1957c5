"""Builders of the official on-disk layouts of MHIST, CIFAR-10/100, SVHN, TinyImageNet and image
folders, with small random images (used by the dataset-layout tests: test_layout_loading.py,
test_layout_errors.py, test_dataset_cli.py, test_streaming.py, test_dataset_stats.py …). Every builder
returns what it wrote so a test can compare the loaded tensors with the pixels on disk; the helpers at
the end compute, independently of the loader, what those pixels should load as."""

from __future__ import annotations

import csv
import pickle
import struct
from pathlib import Path

import numpy as np
import torch
from PIL import Image

MHIST_HEADER = ["Image Name", "Majority Vote Label", "Number of Annotators who Selected SSA (Out of 7)", "Partition"]


def random_rgb(rng: np.random.Generator, size: int | tuple[int, int]) -> np.ndarray:
    h, w = (size, size) if isinstance(size, int) else size
    return rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)


# --------------------------------------------------------------------------- MHIST
def write_mhist(root: Path, counts: dict[tuple[str, str], int] | None = None, size: int = 32, seed: int = 0,
                sizes: dict[str, int] | None = None) -> dict:
    """MHIST's layout: ``root/annotations.csv`` (the four official columns) and ``root/images/*.png``.

    Args:
        counts: images per (partition, label), default train HP 6, train SSA 3, test HP 3, test SSA 1
            (imbalanced like the real set).
        size: side of every image; ``sizes`` overrides it per image name.

    Returns:
        ``{"rows": [(name, label, partition)], "pixels": {name: (H, W, 3) uint8}, "csv": path}``.
    """
    counts = counts or {("train", "HP"): 6, ("train", "SSA"): 3, ("test", "HP"): 3, ("test", "SSA"): 1}
    rng = np.random.default_rng(seed)
    images = Path(root) / "images"
    images.mkdir(parents=True, exist_ok=True)
    rows, pixels = [], {}
    k = 0
    for (part, label), n in counts.items():
        for _ in range(n):
            name = f"MHIST_{k:03d}.png"
            side = (sizes or {}).get(name, size)
            pixels[name] = random_rgb(rng, side)
            Image.fromarray(pixels[name]).save(images / name)
            rows.append((name, label, part))
            k += 1
    order = rng.permutation(len(rows))  # the official file is not sorted by partition
    rows = [rows[i] for i in order]
    write_mhist_csv(Path(root) / "annotations.csv", [[n, lab, 5 if lab == "SSA" else 1, p] for n, lab, p in rows])
    return {"rows": rows, "pixels": pixels, "csv": Path(root) / "annotations.csv"}


def write_mhist_csv(path: Path, rows: list[list], header: list[str] = MHIST_HEADER) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)


# --------------------------------------------------------------------------- CIFAR
class Py2Pickler(pickle._Pickler):
    """Writes bytes as Python 2 ``str`` (BINSTRING opcodes), as the official CIFAR batches (pickled by
    Python 2 with numpy 1.x) hold their keys and pixel buffers."""

    dispatch = dict(pickle._Pickler.dispatch)

    def save_bytes(self, obj):
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_bytes


def pickle_bytes(obj, protocol: int = 2, py2: bool = False) -> bytes:
    """``obj`` pickled; ``py2`` writes it as the official (Python 2, numpy 1.x) CIFAR files are:
    protocol 2, byte strings as Python 2 str, numpy's classes under ``numpy.core``."""
    if not py2:
        return pickle.dumps(obj, protocol=protocol)
    import io

    buf = io.BytesIO()
    Py2Pickler(buf, protocol=2).dump(obj)
    return buf.getvalue().replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")


def write_pickle(path: Path, obj, protocol: int = 2, py2: bool = False) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_bytes(pickle_bytes(obj, protocol, py2))


def _py2_keys(d: dict, py2: bool) -> dict:
    return {(k.encode() if py2 else k): v for k, v in d.items()}


def write_cifar10(root: Path, per_batch: int = 10, n_test: int = 10, seed: int = 0, protocol: int = 2,
                  py2: bool = False, names: list[str] | None = None) -> dict:
    """``root/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}``; labels cycle 0..9 over
    the five batches (shuffled within each).

    Returns:
        ``{"train": (N, 3072) uint8, "train_labels": list, "test": ..., "test_labels": ..., "names": [...]}``.
    """
    rng = np.random.default_rng(seed)
    folder = Path(root) / "cifar-10-batches-py"
    train, train_labels = [], []
    for i in range(1, 6):
        data = rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.permutation((np.arange(per_batch) + (i - 1) * per_batch) % 10)]
        write_pickle(folder / f"data_batch_{i}", _py2_keys(
            {"batch_label": f"training batch {i} of 5", "labels": labels, "data": data,
             "filenames": [f"img_{i}_{j}.png" for j in range(per_batch)]}, py2), protocol, py2)
        train.append(data)
        train_labels += labels
    test = rng.integers(0, 256, size=(n_test, 3072), dtype=np.uint8)
    test_labels = [int(v) for v in np.arange(n_test) % 10]
    write_pickle(folder / "test_batch", _py2_keys({"batch_label": "testing batch 1 of 1", "labels": test_labels,
                                                   "data": test}, py2), protocol, py2)
    names = names or [f"class{c}" for c in range(10)]
    write_pickle(folder / "batches.meta", _py2_keys({"num_cases_per_batch": per_batch, "label_names": names,
                                                     "num_vis": 3072}, py2), protocol, py2)
    return {"train": np.concatenate(train), "train_labels": train_labels, "test": test, "test_labels": test_labels,
            "names": names, "folder": folder}


def write_cifar100(root: Path, n_train: int = 200, n_test: int = 100, seed: int = 0, protocol: int = 2) -> dict:
    """``root/cifar-100-python/{train, test, meta}``: fine labels cycle 0..99, coarse = fine // 5."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / "cifar-100-python"
    out = {"folder": folder}
    for split, n in (("train", n_train), ("test", n_test)):
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        fine = [int(v) for v in rng.permutation(np.arange(n) % 100)]
        write_pickle(folder / split, {"filenames": [f"{split}_{j}.png" for j in range(n)], "batch_label": split,
                                      "fine_labels": fine, "coarse_labels": [f // 5 for f in fine], "data": data},
                     protocol)
        out[split], out[f"{split}_labels"] = data, fine
    out["names"] = [f"fine{c:02d}" for c in range(100)]
    write_pickle(folder / "meta", {"fine_label_names": out["names"],
                                   "coarse_label_names": [f"coarse{c}" for c in range(20)]}, protocol)
    return out


# --------------------------------------------------------------------------- SVHN
def write_svhn(root: Path, n_train: int = 20, n_test: int = 10, seed: int = 0) -> dict:
    """``root/train_32x32.mat``, ``root/test_32x32.mat``: X (32, 32, 3, N) uint8, y (N, 1) in 1..10
    (10 = digit 0), as the official files."""
    import scipy.io

    rng = np.random.default_rng(seed)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        x = rng.integers(0, 256, size=(32, 32, 3, n), dtype=np.uint8)
        y = (np.arange(n) % 10 + 1).astype(np.uint8).reshape(n, 1)
        scipy.io.savemat(str(Path(root) / f"{split}_32x32.mat"), {"X": x, "y": y})
        out[split], out[f"{split}_labels"] = x, y
    return out


# --------------------------------------------------------------------------- TinyImageNet
def write_tinyimagenet(root: Path, wnids=("n01443537", "n01629819", "n01641577"), per_class: int = 3,
                       val_per_class: int = 2, size: int = 64, seed: int = 0) -> dict:
    """``root/tiny-imagenet-200/`` with wnids.txt, words.txt, train/<wnid>/images/*.JPEG (and the
    per-class boxes file), val/images/*.JPEG and val/val_annotations.txt."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / "tiny-imagenet-200"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "wnids.txt").write_text("".join(f"{w}\n" for w in wnids))
    words = {w: f"word{k}, synonym{k}" for k, w in enumerate(wnids)}
    words["n99999999"] = "unused entry"  # words.txt covers all of ImageNet, more than wnids.txt
    (folder / "words.txt").write_text("".join(f"{w}\t{t}\n" for w, t in words.items()))
    for w in wnids:
        images = folder / "train" / w / "images"
        images.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.fromarray(random_rgb(rng, size)).save(images / f"{w}_{i}.JPEG")
        (folder / "train" / w / f"{w}_boxes.txt").write_text(
            "".join(f"{w}_{i}.JPEG\t0\t0\t10\t10\n" for i in range(per_class)))
    val = folder / "val" / "images"
    val.mkdir(parents=True, exist_ok=True)
    lines, val_labels = [], []
    k = 0
    for c, w in enumerate(wnids):
        for _ in range(val_per_class):
            Image.fromarray(random_rgb(rng, size)).save(val / f"val_{k}.JPEG")
            lines.append(f"val_{k}.JPEG\t{w}\t1\t2\t30\t40")
            val_labels.append(c)
            k += 1
    (folder / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    return {"folder": folder, "wnids": list(wnids), "val_labels": val_labels,
            "names": [words[w].split(",")[0] for w in wnids]}


# --------------------------------------------------------------------------- ImageFolder
def write_image_folder(path: Path, per_class: dict[str, int], size: int = 16, seed: int = 0,
                       grey: bool = False) -> dict[str, list[np.ndarray]]:
    """``path/<class>/*.png``; returns the pixels written per class (in file-name order)."""
    rng = np.random.default_rng(seed)
    out = {}
    for cls, n in per_class.items():
        d = Path(path) / cls
        d.mkdir(parents=True, exist_ok=True)
        out[cls] = []
        for i in range(n):
            px = rng.integers(0, 256, size=(size, size), dtype=np.uint8) if grey else random_rgb(rng, size)
            Image.fromarray(px).save(d / f"{i:03d}.png")
            out[cls].append(px)
    return out


# --------------------------------------------------------------------------- expected values
def normalised(pixels_hwc: np.ndarray, mean, std) -> torch.Tensor:
    """(H, W, C) uint8 → (C, H, W) float32 ``(p / 255 - mean) / std``, computed independently of the loader."""
    x = torch.from_numpy(pixels_hwc.astype(np.float64) / 255.0).permute(2, 0, 1)
    m = torch.tensor(mean, dtype=torch.float64).view(-1, 1, 1)
    s = torch.tensor(std, dtype=torch.float64).view(-1, 1, 1)
    return ((x - m) / s).float()


def numpy_stats(arrays) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and population std of (H, W, C) uint8 images, scaled to [0, 1]."""
    px = np.concatenate([a.reshape(-1, a.shape[-1]) for a in arrays]).astype(np.float64) / 255.0
    return px.mean(axis=0), px.std(axis=0)


def mhist_split_rows(written, part):
    return [(n, lab) for n, lab, p in written["rows"] if p == part]
