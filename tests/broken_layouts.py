"""Ways to break the official layouts written by tests/layout_fixtures.py, one named case each: every
``*_case(case, root)`` writes a fresh layout under ``root``, breaks it as ``case`` says and returns the
exception that loading must raise and the words its message must hold. Used by test_layout_errors.py
(loading) and test_dataset_cli.py (the same failures through the CLI), with the hostile and damaged
pickles both need."""

from __future__ import annotations

import os
import shutil
import struct

import numpy as np
from PIL import Image

from datadistill.errors import DatasetLayoutError, DatasetNotFoundError
from layout_fixtures import (
    MHIST_HEADER,
    random_rgb,
    write_cifar10,
    write_mhist,
    write_mhist_csv,
    write_pickle,
    write_svhn,
    write_tinyimagenet,
)


# --------------------------------------------------------------------------- MHIST
def mhist_rows(w):
    return [[n, lab, 5 if lab == "SSA" else 1, p] for n, lab, p in w["rows"]]


def mhist_case(case, root):
    """Break a fresh MHIST layout as ``case`` says; returns (exception, needles)."""
    w = write_mhist(root, size=16)
    csv_path = str(w["csv"])
    rows = mhist_rows(w)
    if case == "missing column":
        write_mhist_csv(w["csv"], [r[:3] for r in rows], header=MHIST_HEADER[:3])
        return DatasetLayoutError, [csv_path, "'Partition'"]
    if case == "unknown label":
        rows[4][1] = "TA"
        write_mhist_csv(w["csv"], rows)
        return DatasetLayoutError, [csv_path, "line 6", "'TA'", rows[4][0]]
    if case == "unknown partition":
        rows[2][3] = "validation"
        write_mhist_csv(w["csv"], rows)
        return DatasetLayoutError, [csv_path, "line 4", "'validation'"]
    if case == "missing image":
        (root / "images" / rows[7][0]).unlink()
        return DatasetLayoutError, [csv_path, "line 9", rows[7][0], "does not exist"]
    if case == "extra field":
        rows[3].append("")  # a trailing comma on line 5
        write_mhist_csv(w["csv"], rows)
        return DatasetLayoutError, [csv_path, "line 5"]
    if case == "no rows":
        write_mhist_csv(w["csv"], [])
        return DatasetLayoutError, [csv_path]
    if case == "not an image":
        (root / "images" / rows[1][0]).write_bytes(b"this is not a PNG file")
        return DatasetLayoutError, [rows[1][0]]
    if case == "missing annotations.csv":
        w["csv"].unlink()
        return DatasetNotFoundError, [csv_path, "does not exist"]
    raise AssertionError(case)


MHIST_CASES = ["missing column", "unknown label", "unknown partition", "missing image", "extra field", "no rows",
               "not an image", "missing annotations.csv"]


# --------------------------------------------------------------------------- CIFAR
CIFAR_CASES = ["missing batch", "a list", "no labels", "not a pickle", "wrong shape", "float pixels",
               "labels count", "label out of range", "meta names", "truncated"]


def cifar_case(case, root):
    w = write_cifar10(root, per_batch=4, n_test=4)
    folder = w["folder"]
    target = folder / "data_batch_2"
    data = w["train"][4:8].copy()
    if case == "missing batch":
        (folder / "data_batch_3").unlink()
        return DatasetNotFoundError, [str(folder / "data_batch_3")]
    if case == "a list":
        write_pickle(target, [data, [0, 1, 2, 3]])
        return DatasetLayoutError, [str(target), "dict"]
    if case == "no labels":
        write_pickle(target, {"data": data, "fine_labels": [0, 1, 2, 3]})
        return DatasetLayoutError, [str(target), "'labels'"]
    if case == "not a pickle":
        target.write_text("these are not the batches you are looking for\n")
        return DatasetLayoutError, [str(target)]
    if case == "wrong shape":
        write_pickle(target, {"data": data[:, :3000], "labels": [0, 1, 2, 3]})
        return DatasetLayoutError, [str(target), "3072", "3000"]
    if case == "float pixels":
        write_pickle(target, {"data": data.astype(np.float32), "labels": [0, 1, 2, 3]})
        return DatasetLayoutError, [str(target), "uint8"]
    if case == "labels count":
        write_pickle(target, {"data": data, "labels": [0, 1, 2]})
        return DatasetLayoutError, [str(target), "3 labels"]
    if case == "label out of range":
        write_pickle(target, {"data": data, "labels": [0, 1, 10, 3]})
        return DatasetLayoutError, [str(target), "[0, 10)"]
    if case == "meta names":
        write_pickle(folder / "batches.meta", {"label_names": ["a", "b"]})
        return DatasetLayoutError, [str(folder / "batches.meta"), "label_names"]
    if case == "truncated":
        target.write_bytes(target.read_bytes()[:2000])
        return DatasetLayoutError, [str(target)]
    raise AssertionError(case)


def corrupt_length(folder):
    """A protocol-4 batch whose BINBYTES8 length field was damaged (more than sys.maxsize)."""
    return b"\x80\x04}\x94\x8c\x04data\x94\x8e" + struct.pack("<Q", 2 ** 63 + 5) + b"xx"


class System:
    """Unpickling calls os.system(cmd)."""

    def __init__(self, cmd):
        self.cmd = cmd

    def __reduce__(self):
        return (os.system, (self.cmd,))


# --------------------------------------------------------------------------- SVHN
SVHN_CASES = ["missing file", "wrong X shape", "X count", "label 0", "label 11", "missing keys", "empty file",
              "not a mat file"]


def svhn_case(case, root):
    import scipy.io

    root.mkdir(parents=True, exist_ok=True)
    w = write_svhn(root, n_train=10, n_test=10)
    test = root / "test_32x32.mat"
    x, y = w["test"], w["test_labels"]
    if case == "missing file":
        test.unlink()
        return DatasetNotFoundError, [str(test)]
    if case == "wrong X shape":
        scipy.io.savemat(str(test), {"X": x.transpose(3, 2, 0, 1), "y": y})  # (N, C, H, W) instead of (H, W, C, N)
        return DatasetLayoutError, [str(test), "'X'", "(32, 32, 3, N)"]
    if case == "X count":
        scipy.io.savemat(str(test), {"X": x[..., :9], "y": y})
        return DatasetLayoutError, [str(test), "len(y) = 10"]
    if case in ("label 0", "label 11"):
        y = y.copy()
        y[4, 0] = 0 if case == "label 0" else 11
        scipy.io.savemat(str(test), {"X": x, "y": y})
        return DatasetLayoutError, [str(test), "1..10"]
    if case == "missing keys":
        scipy.io.savemat(str(test), {"images": x, "y": y})
        return DatasetLayoutError, [str(test), "'X'"]
    if case == "empty file":
        test.write_bytes(b"")  # an interrupted download
        return DatasetLayoutError, [str(test)]
    if case == "not a mat file":
        test.write_text("<html>404 Not Found</html>\n" * 10)
        return DatasetLayoutError, [str(test)]
    raise AssertionError(case)


# --------------------------------------------------------------------------- TinyImageNet
TIN_CASES = ["unknown wnid", "missing val image", "missing train images", "missing wnids", "missing annotations",
             "bad annotation line", "mixed sizes"]


def tin_case(case, root):
    w = write_tinyimagenet(root, per_class=2, val_per_class=2)
    folder = w["folder"]
    ann = folder / "val" / "val_annotations.txt"
    lines = ann.read_text().splitlines()
    if case == "unknown wnid":
        lines[2] = lines[2].replace(w["wnids"][1], "n00000042")
        ann.write_text("\n".join(lines) + "\n")
        return DatasetLayoutError, [str(ann), "line 3", "n00000042"]
    if case == "missing val image":
        (folder / "val" / "images" / "val_4.JPEG").unlink()
        return DatasetLayoutError, [str(ann), "line 5", "val_4.JPEG"]
    if case == "missing train images":
        shutil.rmtree(folder / "train" / w["wnids"][2] / "images")
        return DatasetLayoutError, [str(folder / "train" / w["wnids"][2]), "images"]
    if case == "missing wnids":
        (folder / "wnids.txt").unlink()
        return DatasetNotFoundError, ["wnids.txt"]
    if case == "missing annotations":
        ann.unlink()
        return DatasetLayoutError, [str(ann)]
    if case == "bad annotation line":
        lines[1] = "val_1.JPEG"
        ann.write_text("\n".join(lines) + "\n")
        return DatasetLayoutError, [str(ann), "line 2"]
    if case == "mixed sizes":
        bad = folder / "train" / w["wnids"][0] / "images" / f"{w['wnids'][0]}_1.JPEG"
        Image.fromarray(random_rgb(np.random.default_rng(5), 48)).save(bad)
        return DatasetLayoutError, [str(bad), "48×48", "--image-size"]
    raise AssertionError(case)
