"""The dataset layouts added with streaming: MHIST, CIFAR-10/100, SVHN, TinyImageNet and image folders,
built in their official on-disk layouts (tests/layout_fixtures.py) with tiny random images.

Covers: loading (sizes, channels, labels, pixels, class names, splits), distillation and evaluation
through the CLI, malformed layouts (clear errors naming the file and line), the restricted unpickler,
streaming (same tensors as in memory, only the sampled files decoded), mean/std from the training set
and its cache, balanced / per-class accuracy, the ConvNet depth by image size, ``data info`` and
dataset names.
"""

from __future__ import annotations

import builtins
import json
import os
import pickle
import shutil
import struct

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import datadistill.api as api
import datadistill.data.files as files_mod
import datadistill.data.streamed as streamed_mod
from datadistill.cli import main
from datadistill.config import DistillConfig
from datadistill.data import LabelledImages, RealSet, StreamedImages, check_dataset_name, load_dataset, load_dataset_of
from datadistill.data.files import IMAGENET_MEAN, IMAGENET_STD, read_mhist_annotations
from datadistill.data.torchvision_sets import CIFAR10_SPEC, CIFAR100_MEAN, SVHN_SPEC, restricted_unpickle
from datadistill.errors import ConfigError, DatasetLayoutError, DatasetNotFoundError, UnknownNameError
from datadistill.evaluation import EvalResult
from datadistill.evaluation.protocol import accuracy, class_correct, per_class_percent
from datadistill.io import load_synthetic_set
from datadistill.models import build_model
from datadistill.models.convnet import default_depth
from helpers import assert_clean_failure
from layout_fixtures import (
    MHIST_HEADER,
    pickle_bytes,
    random_rgb,
    write_cifar10,
    write_cifar100,
    write_image_folder,
    write_mhist,
    write_mhist_csv,
    write_pickle,
    write_svhn,
    write_tinyimagenet,
)

FAST = ["--ipc", "1", "--iterations", "2", "--num-eval", "1", "--eval-epochs", "1", "--batch-real", "2", "--quiet"]


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def clean_failure(result, *needles):
    """One ``error:`` line naming every needle, exit status 2, no traceback."""
    line = assert_clean_failure(result, *needles)
    assert result.exit_code == 2, result.output
    return line


@pytest.fixture(scope="module", autouse=True)
def _cache_home(tmp_path_factory):
    """Mean/std of file datasets are cached under $XDG_CACHE_HOME: keep them out of the user's cache."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg_cache")))
        yield


@pytest.fixture
def cache_home(tmp_path, monkeypatch):
    """A fresh, empty stats cache for one test."""
    path = tmp_path / "xdg"
    monkeypatch.setenv("XDG_CACHE_HOME", str(path))
    return path


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


# =========================================================================== 1. loading each layout
def test_mhist_loads_sizes_labels_pixels_and_split(tmp_path):
    w = write_mhist(tmp_path / "mhist", size=32)
    data = load_dataset("mhist", tmp_path / "mhist", stream="off", num_workers=0)
    spec = data.spec
    assert (spec.name, spec.channels, spec.image_size, spec.class_names) == ("mhist", 3, (32, 32), ("HP", "SSA"))
    for part, split in (("train", data.train), ("test", data.test)):
        rows = mhist_split_rows(w, part)  # CSV order, partition by partition
        assert len(split) == len(rows)
        assert split.labels.tolist() == [("HP", "SSA").index(lab) for _, lab in rows]
        assert split.labels.dtype == torch.int64 and split.images.dtype == torch.float32
        expected = torch.stack([normalised(w["pixels"][n], spec.mean, spec.std) for n, _ in rows])
        torch.testing.assert_close(split.images, expected, atol=1e-5, rtol=0)
    assert len(data.train) == 9 and len(data.test) == 4 and not data.train.streamed


def test_mhist_in_a_subfolder_of_the_root(tmp_path):
    write_mhist(tmp_path / "root" / "MHIST", size=16)
    data = load_dataset("mhist", tmp_path / "root", num_workers=0)
    assert (len(data.train), len(data.test), data.spec.image_size) == (9, 4, (16, 16))


def test_mhist_at_224_pixels_and_resized(tmp_path):
    root = tmp_path / "mhist"
    counts = {("train", "HP"): 2, ("train", "SSA"): 1, ("test", "HP"): 1, ("test", "SSA"): 1}
    w = write_mhist(root, counts=counts, size=224)
    full = load_dataset("mhist", root, num_workers=0)
    assert full.train.images.shape == (3, 3, 224, 224) and full.test.images.shape == (2, 3, 224, 224)
    assert full.spec.image_size == (224, 224) and default_depth(full.spec.image_size) == 7
    small = load_dataset("mhist", root, image_size=32, num_workers=0)
    assert small.train.images.shape == (3, 3, 32, 32) and small.spec.image_size == (32, 32)
    # mean/std are computed at the chosen size: averaging 7×7 blocks of noise shrinks the std
    assert all(s32 < 0.6 * s224 for s32, s224 in zip(small.spec.std, full.spec.std))
    np.testing.assert_allclose(full.spec.mean, numpy_stats([w["pixels"][n] for n, _ in mhist_split_rows(w, "train")])[0],
                               atol=1e-6)


@pytest.mark.parametrize("protocol, py2", [(2, True), (2, False), (4, False), (5, False)],
                         ids=["py2-official", "protocol2", "protocol4", "protocol5"])
def test_cifar10_layout(tmp_path, protocol, py2):
    w = write_cifar10(tmp_path, per_batch=10, n_test=10, protocol=protocol, py2=py2,
                      names=["airplane", "car", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"])
    # one distinctive pixel: image 23 (batch 3, row 3), blue channel, row 5, column 7
    i, c, h, x = 23, 2, 5, 7
    batch3 = restricted_unpickle(w["folder"] / "data_batch_3")
    batch3["data"] = batch3["data"].copy()
    batch3["data"][3, c * 1024 + h * 32 + x] = 200  # channel-major, then row-major, as the CIFAR docs say
    write_pickle(w["folder"] / "data_batch_3", {(k.encode() if py2 else k): v for k, v in batch3.items()}, protocol, py2)
    w["train"][i, c * 1024 + h * 32 + x] = 200
    raw = (w["folder"] / "data_batch_3").read_bytes()
    assert raw[1] == protocol
    if py2:  # Python 2 str keys (SHORT_BINSTRING) and numpy 1.x module names, as in the official files
        assert b"U\x04data" in raw and b"numpy.core.multiarray\n_reconstruct" in raw
    data = load_dataset("cifar10", tmp_path)
    spec = data.spec
    assert spec.mean == CIFAR10_SPEC.mean and spec.std == CIFAR10_SPEC.std
    assert spec.class_names == ("airplane", "car", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
    assert data.train.images.shape == (50, 3, 32, 32) and data.test.images.shape == (10, 3, 32, 32)
    assert data.train.labels.tolist() == w["train_labels"] and data.test.labels.tolist() == w["test_labels"]
    assert data.train.images[i, c, h, x].item() == pytest.approx((200 / 255 - spec.mean[c]) / spec.std[c], abs=1e-5)
    expected = torch.stack([normalised(row.reshape(3, 32, 32).transpose(1, 2, 0), spec.mean, spec.std)
                            for row in w["train"]])
    torch.testing.assert_close(data.train.images, expected, atol=1e-5, rtol=0)


def test_cifar10_without_meta_and_resized(tmp_path):
    w = write_cifar10(tmp_path, per_batch=4, n_test=4)
    (w["folder"] / "batches.meta").unlink()
    data = load_dataset("cifar10", tmp_path, image_size=16)
    assert data.spec.class_names == tuple(str(k) for k in range(10))
    assert data.train.images.shape == (20, 3, 16, 16) and data.spec.image_size == (16, 16)


def test_cifar100_layout(tmp_path):
    w = write_cifar100(tmp_path, n_train=200, n_test=100, protocol=2)
    data = load_dataset("cifar100", tmp_path)
    assert data.spec.num_classes == 100 and data.spec.class_names == tuple(w["names"])
    assert data.train.images.shape == (200, 3, 32, 32) and data.test.images.shape == (100, 3, 32, 32)
    assert data.train.labels.tolist() == w["train_labels"]  # the fine labels, not the coarse ones
    assert data.test.labels.tolist() == w["test_labels"]
    assert data.spec.mean == CIFAR100_MEAN
    expected = normalised(w["test"][7].reshape(3, 32, 32).transpose(1, 2, 0), data.spec.mean, data.spec.std)
    torch.testing.assert_close(data.test.images[7], expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("subfolder", ["", "svhn"])
def test_svhn_layout_labels_and_orientation(tmp_path, subfolder):
    import scipy.io

    folder = tmp_path / subfolder if subfolder else tmp_path
    folder.mkdir(exist_ok=True)
    w = write_svhn(folder, n_train=20, n_test=10)
    x = w["train"].copy()
    x[:, :, :, 0] = 0
    x[5, :, 1, 0] = 255  # image 0: row 5 of the green channel white, everything else black
    x[:, 9, 2, 1] = 255  # image 1: column 9 of the blue channel white
    scipy.io.savemat(str(folder / "train_32x32.mat"), {"X": x, "y": w["train_labels"]})
    data = load_dataset("svhn", tmp_path)
    assert data.train.images.shape == (20, 3, 32, 32) and data.test.images.shape == (10, 3, 32, 32)
    assert data.train.labels.tolist() == [int(v) % 10 for v in w["train_labels"].ravel()]  # 10 → digit 0
    assert 10 not in data.train.labels.tolist() and data.train.labels.tolist()[9] == 0
    mean, std = SVHN_SPEC.mean, SVHN_SPEC.std
    img0 = data.train.images[0]
    lo, hi = (0 - mean[1]) / std[1], (1 - mean[1]) / std[1]
    assert torch.allclose(img0[1, 5, :], torch.full((32,), hi), atol=1e-5)
    assert torch.allclose(img0[1, 4, :], torch.full((32,), lo), atol=1e-5)
    assert torch.allclose(img0[1, :, 3], torch.tensor([hi if r == 5 else lo for r in range(32)]), atol=1e-5)
    assert torch.allclose(img0[0], torch.full((32, 32), (0 - mean[0]) / std[0]), atol=1e-5)
    col = data.train.images[1, 2, :, 9]
    assert torch.allclose(col, torch.full((32,), (1 - mean[2]) / std[2]), atol=1e-5)
    expected = normalised(w["test"][:, :, :, 3], mean, std)  # (H, W, C) of test image 3
    torch.testing.assert_close(data.test.images[3], expected, atol=1e-5, rtol=0)


def test_tinyimagenet_layout(tmp_path):
    w = write_tinyimagenet(tmp_path, per_class=3, val_per_class=2)
    grey = w["folder"] / "train" / w["wnids"][1] / "images" / f"{w['wnids'][1]}_1.JPEG"
    Image.fromarray(np.full((64, 64), 77, dtype=np.uint8)).save(grey)  # the real set has grey JPEGs
    data = load_dataset("tinyimagenet", tmp_path, num_workers=0)
    spec = data.spec
    assert spec.class_names == tuple(w["names"]) == ("word0", "word1", "word2")  # words.txt, first synonym
    assert (spec.channels, spec.image_size, spec.mean, spec.std) == (3, (64, 64), IMAGENET_MEAN, IMAGENET_STD)
    assert data.train.images.shape == (9, 3, 64, 64) and data.test.images.shape == (6, 3, 64, 64)
    assert data.train.labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert data.test.labels.tolist() == w["val_labels"]
    g = data.train.images[4]  # the grey image, replicated to RGB
    expected = torch.tensor([(77 / 255 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD)]).view(3, 1, 1)
    torch.testing.assert_close(g, expected.expand(3, 64, 64), atol=1e-5, rtol=0)
    small = load_dataset("tinyimagenet", tmp_path, image_size=32, num_workers=0)
    assert small.train.images.shape == (9, 3, 32, 32)


def test_tinyimagenet_without_words_uses_wnids(tmp_path):
    w = write_tinyimagenet(tmp_path, wnids=("n01", "n02"), per_class=1, val_per_class=1, size=64)
    (w["folder"] / "words.txt").unlink()
    assert load_dataset("tinyimagenet", tmp_path, num_workers=0).spec.class_names == ("n01", "n02")


def test_imagefolder_without_split_holds_out_ten_percent_per_class(tmp_path):
    per_class = {"cats": 20, "dogs": 10, "eels": 5}
    px = write_image_folder(tmp_path / "f", per_class, size=16)
    name = f"imagefolder:{tmp_path / 'f'}"
    data = load_dataset(name, stream="on", num_workers=0)
    again = load_dataset(name, stream="on", num_workers=0)
    assert data.spec.class_names == ("cats", "dogs", "eels") and data.spec.channels == 3
    assert data.spec.name == f"imagefolder:{(tmp_path / 'f').resolve()}"
    test_counts = torch.bincount(data.test.labels, minlength=3).tolist()
    assert test_counts == [2, 1, 1]  # 10 % of each class, at least one image
    assert torch.bincount(data.train.labels, minlength=3).tolist() == [18, 9, 4]
    train_paths, test_paths = set(data.train.files.paths), set(data.test.files.paths)
    assert not train_paths & test_paths and len(train_paths | test_paths) == 35
    assert data.test.files.paths == again.test.files.paths  # a fixed split
    for path, label in zip(data.test.files.paths, data.test.labels.tolist()):
        assert path.parent.name == data.spec.class_names[label]
    memory = load_dataset(name, stream="off", num_workers=0)
    for k in (0, 17, 30):
        path = data.train.files.paths[k]
        expected = normalised(px[path.parent.name][int(path.stem)], memory.spec.mean, memory.spec.std)
        torch.testing.assert_close(memory.train.images[k], expected, atol=1e-5, rtol=0)


def test_imagefolder_with_only_a_train_folder_carves_its_test_set(tmp_path):
    write_image_folder(tmp_path / "f" / "train", {"ant": 10, "bee": 10}, size=12)
    data = load_dataset(f"imagefolder:{tmp_path / 'f'}", num_workers=0)
    assert data.spec.class_names == ("ant", "bee")  # "train" is the split, not a class
    assert torch.bincount(data.test.labels, minlength=2).tolist() == [1, 1]
    assert len(data.train) == 18


def test_imagefolder_default_out_folder_is_named_after_the_folder(tmp_path, monkeypatch):
    write_image_folder(tmp_path / "pets", {"cat": 4, "dog": 4}, size=12)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["distill", "--dataset", f"imagefolder:{tmp_path / 'pets'}", "--method", "random",
                                       "--ipc", "1", "--num-eval", "0", "--num-workers", "0", "--quiet"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "runs" / "imagefolder_pets_random_ipc1" / "synthetic.safetensors").is_file()


@pytest.mark.parametrize("test_dir", ["test", "val"])
def test_imagefolder_with_train_and_test_folders(tmp_path, test_dir):
    write_image_folder(tmp_path / "f" / "train", {"ant": 3, "bee": 2, "cow": 2}, size=12, seed=1)
    write_image_folder(tmp_path / "f" / test_dir, {"ant": 1, "cow": 2}, size=12, seed=2)  # no "bee" test image
    data = load_dataset(f"imagefolder:{tmp_path / 'f'}", num_workers=0)
    assert data.spec.class_names == ("ant", "bee", "cow")
    assert data.train.labels.tolist() == [0, 0, 0, 1, 1, 2, 2]
    assert data.test.labels.tolist() == [0, 2, 2]  # matched by class name, not by folder position
    assert data.train.images.shape == (7, 3, 12, 12)


def test_imagefolder_grey_images_have_one_channel(tmp_path):
    px = write_image_folder(tmp_path / "g", {"a": 4, "b": 4}, size=10, grey=True)
    data = load_dataset(f"imagefolder:{tmp_path / 'g'}", stream="on", num_workers=0)
    assert data.spec.channels == 1 and data.train.image_shape == (1, 10, 10) and len(data.spec.mean) == 1
    path = data.train.files.paths[2]
    expected = normalised(px[path.parent.name][int(path.stem)][..., None], data.spec.mean, data.spec.std)
    torch.testing.assert_close(data.train.take(torch.tensor([2]))[0], expected, atol=1e-5, rtol=0)


# =========================================================================== 2. distil + evaluate via the CLI
def _mhist32(root):
    w = write_mhist(root, size=32)
    return "mhist", {"train": [6, 3], "test": [3, 1]}, w


def _mhist48(root):
    w = write_mhist(root, size=48)
    return "mhist", {"train": [6, 3], "test": [3, 1]}, w


def _cifar10(root):
    w = write_cifar10(root, per_batch=4, n_test=10)
    return "cifar10", {"train": np.bincount(w["train_labels"], minlength=10).tolist(), "test": [1] * 10}, w


def _cifar100(root):
    w = write_cifar100(root, n_train=100, n_test=100)
    return "cifar100", {"train": [1] * 100, "test": [1] * 100}, w


def _svhn(root):
    root.mkdir(parents=True)
    w = write_svhn(root, n_train=20, n_test=10)
    return "svhn", {"train": [2] * 10, "test": [1] * 10}, w


def _tinyimagenet(root):
    w = write_tinyimagenet(root, per_class=2, val_per_class=1)
    return "tinyimagenet", {"train": [2, 2, 2], "test": [1, 1, 1]}, w


def _folder_flat(root):
    write_image_folder(root / "imgs", {"a": 10, "b": 10}, size=16)
    return f"imagefolder:{root / 'imgs'}", {"train": [9, 9], "test": [1, 1]}, None


def _folder_split(root):
    write_image_folder(root / "imgs" / "train", {"x": 3, "y": 3, "z": 3}, size=16, seed=3)
    write_image_folder(root / "imgs" / "test", {"x": 1, "y": 1, "z": 1}, size=16, seed=4)
    return f"imagefolder:{root / 'imgs'}", {"train": [3, 3, 3], "test": [1, 1, 1]}, None


E2E = [
    # id, builder, distill flags, evaluation model, expected (C, H, W)
    ("mhist-stream-on", _mhist32, ["--method", "dm", "--stream", "on"], "convnet", (3, 32, 32)),
    ("mhist-resized-48-to-32", _mhist48, ["--method", "datadam", "--image-size", "32"], "convnet", (3, 32, 32)),
    ("cifar10", _cifar10, ["--method", "dm"], "convnet", (3, 32, 32)),
    ("cifar100", _cifar100, ["--method", "dm", "--model", "convnet_w32", "--batch-real", "1"], "convnet_w32",
     (3, 32, 32)),
    ("svhn", _svhn, ["--method", "datadam"], "convnet", (3, 32, 32)),
    ("tinyimagenet-stream-on", _tinyimagenet, ["--method", "dm", "--stream", "on", "--num-workers", "0"], "convnet",
     (3, 64, 64)),
    ("imagefolder-flat", _folder_flat, ["--method", "dm"], "convnet", (3, 16, 16)),
    ("imagefolder-train-test", _folder_split, ["--method", "datadam", "--stream", "on"], "convnet", (3, 16, 16)),
]


@pytest.mark.parametrize("builder, flags, eval_model, shape", [e[1:] for e in E2E], ids=[e[0] for e in E2E])
def test_distill_then_evaluate_through_the_cli(tmp_path, monkeypatch, builder, flags, eval_model, shape):
    root = tmp_path / "data"
    dataset, counts, written = builder(root)
    out = tmp_path / "run"
    result = run("distill", "--dataset", dataset, "--data-root", root, "--out", out, *FAST, *flags)
    assert result.exit_code == 0, result.output + repr(result.exception)
    m = json.loads((out / "metrics.json").read_text())
    k = len(counts["train"])
    assert m["dataset"] == dataset and m["iterations"] == 2 and len(m["accuracies"]) == 1
    assert m["class_counts"] == counts
    assert 0 <= m["accuracy_mean"] <= 100
    present = [a for a in m["per_class_accuracy_mean"] if a is not None]
    assert len(m["per_class_accuracy_mean"]) == k
    assert m["balanced_accuracy_mean"] == pytest.approx(sum(present) / len(present))
    syn = load_synthetic_set(out / "synthetic.safetensors")
    assert tuple(syn.images.shape) == (k, *shape) and syn.labels.tolist() == list(range(k))
    meta = syn.metadata
    size = int(flags[flags.index("--image-size") + 1]) if "--image-size" in flags else None
    reference = load_dataset(dataset, root, image_size=size, stream="on", num_workers=0).spec  # cached stats
    assert meta["dataset"] == reference.name and meta["image_size"] == list(shape[1:])
    assert meta["mean"] == pytest.approx(list(reference.mean)) and meta["std"] == pytest.approx(list(reference.std))
    assert meta["class_names"] == list(reference.class_names)
    if dataset == "mhist":  # computed from the training images, at the set's size
        train_px = [written["pixels"][n] for n, _ in mhist_split_rows(written, "train")]
        native_mean, native_std = numpy_stats(train_px)
        if size is None:
            np.testing.assert_allclose(meta["mean"], native_mean, atol=1e-6)
            np.testing.assert_allclose(meta["std"], native_std, atol=1e-6)
        else:
            assert all(s < 0.95 * n for s, n in zip(meta["std"], native_std))  # resizing averages the noise

    seen = []

    def spy(metadata, data_root=None, **options):
        data = load_dataset_of(metadata, data_root, **options)
        seen.append(data)
        return data

    monkeypatch.setattr(api, "load_dataset_of", spy)
    result = run("evaluate", out / "synthetic.safetensors", "--data-root", root, "--num-eval", "1",
                 "--eval-epochs", "1", "--models", eval_model)
    assert result.exit_code == 0, result.output + repr(result.exception)
    (data,) = seen
    assert data.test.image_shape == shape and data.spec.image_size == shape[1:]  # re-read at the set's size
    assert data.spec.mean == pytest.approx(tuple(meta["mean"])) and data.spec.std == pytest.approx(tuple(meta["std"]))
    assert len(data.test) == sum(counts["test"])
    balanced = [line for line in result.stdout.splitlines() if "balanced accuracy" in line]
    assert len(balanced) == (1 if k == 2 else 0), result.stdout


def test_evaluate_prints_balanced_accuracy_for_two_classes(tmp_path):
    root = tmp_path / "data"
    write_mhist(root, size=16)
    out = tmp_path / "run"
    result = run("distill", "--dataset", "mhist", "--data-root", root, "--out", out, *FAST, "--method", "dm",
                 "--num-eval", "0")
    assert result.exit_code == 0, result.output + repr(result.exception)
    args = ["evaluate", out / "synthetic.safetensors", "--data-root", root, "--num-eval", "2", "--eval-epochs", "1"]
    text, as_json = run(*args), run(*args, "--json")
    assert text.exit_code == 0 and as_json.exit_code == 0, text.output + as_json.output
    row = json.loads(as_json.stdout)["rows"][0]
    per = row["per_class_accuracies"]
    assert len(per) == 2 and all(len(r) == 2 for r in per)
    assert row["balanced_accuracies"] == pytest.approx([(a + b) / 2 for a, b in per])
    # the test set holds 3 HP and 1 SSA image: accuracy is the image-weighted mean, balanced the class mean
    assert row["accuracies"] == pytest.approx([(3 * a + 1 * b) / 4 for a, b in per])
    (line,) = [ln for ln in text.stdout.splitlines() if "balanced accuracy" in ln]
    assert f"balanced accuracy {row['balanced_accuracy_mean']:.2f} ± {row['balanced_accuracy_std']:.2f} %" in line
    assert f"HP {row['per_class_accuracy_mean'][0]:.2f}" in line and f"SSA {row['per_class_accuracy_mean'][1]:.2f}" in line


# =========================================================================== 3. malformed layouts
def _mhist_rows(w):
    return [[n, lab, 5 if lab == "SSA" else 1, p] for n, lab, p in w["rows"]]


def _mhist_case(case, root):
    """Break a fresh MHIST layout as ``case`` says; returns (exception, needles)."""
    w = write_mhist(root, size=16)
    csv_path = str(w["csv"])
    rows = _mhist_rows(w)
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


@pytest.mark.parametrize("case", MHIST_CASES)
def test_mhist_malformed_layouts(tmp_path, case):
    exc, needles = _mhist_case(case, tmp_path / "m")
    with pytest.raises(exc) as info:
        load_dataset("mhist", tmp_path / "m", num_workers=0)
    for needle in needles:
        assert needle in str(info.value), (needle, str(info.value))


def test_mhist_not_an_image_with_image_size(tmp_path):
    _, needles = _mhist_case("not an image", tmp_path / "m")
    with pytest.raises(DatasetLayoutError, match=needles[0]):
        load_dataset("mhist", tmp_path / "m", image_size=16, num_workers=0)


def test_mhist_mixed_sizes_need_image_size(tmp_path):
    w = write_mhist(tmp_path / "m", size=32, sizes={"MHIST_004.png": 40})
    with pytest.raises(DatasetLayoutError) as info:
        load_dataset("mhist", tmp_path / "m", num_workers=0)
    assert "MHIST_004.png" in str(info.value) and "40×40" in str(info.value) and "--image-size" in str(info.value)
    data = load_dataset("mhist", tmp_path / "m", image_size=32, num_workers=0)
    assert data.train.images.shape == (9, 3, 32, 32)
    assert len(data.train) + len(data.test) == len(w["rows"])


def test_mhist_annotations_line_numbers_count_the_header(tmp_path):
    w = write_mhist(tmp_path / "m", size=16)
    rows = _mhist_rows(w)
    rows[0][1] = "??"
    write_mhist_csv(w["csv"], rows)
    with pytest.raises(DatasetLayoutError, match="line 2:"):
        read_mhist_annotations(w["csv"])


CIFAR_CASES = ["missing batch", "a list", "no labels", "not a pickle", "wrong shape", "float pixels",
               "labels count", "label out of range", "meta names", "truncated"]


def _cifar_case(case, root):
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


@pytest.mark.parametrize("case", CIFAR_CASES)
def test_cifar10_malformed_layouts(tmp_path, case):
    exc, needles = _cifar_case(case, tmp_path)
    with pytest.raises(exc) as info:
        load_dataset("cifar10", tmp_path)
    for needle in needles:
        assert needle in str(info.value), (needle, str(info.value))


def test_cifar100_needs_fine_labels(tmp_path):
    w = write_cifar100(tmp_path, n_train=100, n_test=100)
    write_pickle(w["folder"] / "test", {"data": w["test"], "labels": w["test_labels"]})
    with pytest.raises(DatasetLayoutError, match="'fine_labels'"):
        load_dataset("cifar100", tmp_path)
    (w["folder"] / "train").unlink()
    with pytest.raises(DatasetNotFoundError, match="cifar-100-python"):
        load_dataset("cifar100", tmp_path)


def _corrupt_length(folder):
    """A protocol-4 batch whose BINBYTES8 length field was damaged (more than sys.maxsize)."""
    return b"\x80\x04}\x94\x8c\x04data\x94\x8e" + struct.pack("<Q", 2 ** 63 + 5) + b"xx"


def _corrupt_codec(folder):
    """A protocol-2 batch (Python 3 bytes go through _codecs.encode) whose codec name was damaged."""
    raw = pickle_bytes({"data": np.zeros((1, 3072), np.uint8), "labels": [0]}, protocol=2)
    assert b"latin1" in raw
    return raw.replace(b"latin1", b"lat!n1", 1)


@pytest.mark.parametrize("damage", [_corrupt_length, _corrupt_codec], ids=["length-field", "codec-name"])
def test_cifar_damaged_batch_is_a_layout_error(tmp_path, damage):
    """A damaged file must give DatasetLayoutError naming it, not an OverflowError/LookupError traceback."""
    w = write_cifar10(tmp_path, per_batch=2, n_test=2)
    target = w["folder"] / "data_batch_4"
    target.write_bytes(damage(w["folder"]))
    with pytest.raises(DatasetLayoutError, match="data_batch_4"):
        restricted_unpickle(target)


# --------------------------------------------------------------------------- malicious pickles
class _System:
    """Unpickling calls os.system(cmd)."""

    def __init__(self, cmd):
        self.cmd = cmd

    def __reduce__(self):
        return (os.system, (self.cmd,))


class _Eval:
    """Unpickling calls builtins.eval(code)."""

    def __init__(self, code):
        self.code = code

    def __reduce__(self):
        return (builtins.eval, (self.code,))


def _payload(kind, marker):
    if kind == "os.system":
        return _System(f"touch {marker}")
    return _Eval(f"open({str(marker)!r}, 'w').close()")


@pytest.mark.parametrize("kind", ["os.system", "builtins.eval"])
@pytest.mark.parametrize("where", ["data_batch_1", "batches.meta"])
def test_malicious_pickle_is_refused_and_not_run(tmp_path, kind, where):
    w = write_cifar10(tmp_path / "root", per_batch=2, n_test=2)
    marker = tmp_path / "pwned"
    data = w["train"][:2]
    obj = ({"data": data, "labels": [0, 1], "batch_label": _payload(kind, marker)} if where == "data_batch_1"
           else {"label_names": _payload(kind, marker)})
    write_pickle(w["folder"] / where, obj)
    # the payload is live: plain pickle would run it
    control = tmp_path / "control"
    assert not control.exists()
    pickle.loads(pickle.dumps(_payload(kind, control), protocol=2))
    assert control.exists()
    with pytest.raises(DatasetLayoutError) as info:
        restricted_unpickle(w["folder"] / where)
    assert "refusing" in str(info.value) and str(w["folder"] / where) in str(info.value)
    assert ("system" in str(info.value)) == (kind == "os.system") and ("eval" in str(info.value)) == (kind != "os.system")
    with pytest.raises(DatasetLayoutError):
        load_dataset("cifar10", tmp_path / "root")
    assert not marker.exists()


def test_restricted_unpickle_refuses_other_classes(tmp_path):
    import collections

    path = tmp_path / "batch"
    write_pickle(path, {"data": collections.OrderedDict(a=1)})
    with pytest.raises(DatasetLayoutError, match="collections.OrderedDict"):
        restricted_unpickle(path)


# --------------------------------------------------------------------------- SVHN
SVHN_CASES = ["missing file", "wrong X shape", "X count", "label 0", "label 11", "missing keys", "empty file",
              "not a mat file"]


def _svhn_case(case, root):
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


@pytest.mark.parametrize("case", SVHN_CASES)
def test_svhn_malformed_layouts(tmp_path, case):
    exc, needles = _svhn_case(case, tmp_path / "s")
    with pytest.raises(exc) as info:
        load_dataset("svhn", tmp_path / "s")
    for needle in needles:
        assert needle in str(info.value), (needle, str(info.value))


# --------------------------------------------------------------------------- TinyImageNet
TIN_CASES = ["unknown wnid", "missing val image", "missing train images", "missing wnids", "missing annotations",
             "bad annotation line", "mixed sizes"]


def _tin_case(case, root):
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


@pytest.mark.parametrize("case", TIN_CASES)
def test_tinyimagenet_malformed_layouts(tmp_path, case):
    exc, needles = _tin_case(case, tmp_path / "t")
    with pytest.raises(exc) as info:
        load_dataset("tinyimagenet", tmp_path / "t", num_workers=0)
    for needle in needles:
        assert needle in str(info.value), (needle, str(info.value))


# --------------------------------------------------------------------------- ImageFolder
def test_imagefolder_malformed_layouts(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=str(tmp_path / "nope")):
        load_dataset(f"imagefolder:{tmp_path / 'nope'}")
    write_image_folder(tmp_path / "f" / "train", {"a": 2, "b": 2}, size=8)
    write_image_folder(tmp_path / "f" / "test", {"a": 1, "zebra": 1}, size=8)
    with pytest.raises(DatasetLayoutError) as info:
        load_dataset(f"imagefolder:{tmp_path / 'f'}")
    assert "'zebra'" in str(info.value) and str(tmp_path / "f" / "test" / "zebra") in str(info.value)
    (tmp_path / "flat").mkdir()
    Image.fromarray(random_rgb(np.random.default_rng(0), 8)).save(tmp_path / "flat" / "lonely.png")
    with pytest.raises(DatasetLayoutError, match="sub-folder"):  # images but no class folders
        load_dataset(f"imagefolder:{tmp_path / 'flat'}")
    (tmp_path / "empty" / "a").mkdir(parents=True)
    (tmp_path / "empty" / "a" / "notes.txt").write_text("no image here")
    with pytest.raises(DatasetLayoutError, match="no image files"):
        load_dataset(f"imagefolder:{tmp_path / 'empty'}")


# --------------------------------------------------------------------------- through the CLI
def _cli_mhist_label(root, marker):
    _mhist_case("unknown label", root)
    return ["distill", "--dataset", "mhist"], ["annotations.csv", "line 6", "'TA'"]


def _cli_cifar_missing(root, marker):
    _cifar_case("missing batch", root)
    return ["distill", "--dataset", "cifar10"], ["data_batch_3", "not found"]


def _cli_cifar_malicious(root, marker):
    w = write_cifar10(root, per_batch=2, n_test=2)
    write_pickle(w["folder"] / "data_batch_5", {"data": w["train"][:2], "labels": [0, 1],
                                                "filenames": _System(f"touch {marker}")})
    return ["distill", "--dataset", "cifar10"], ["data_batch_5", "refusing"]


def _cli_cifar_damaged(root, marker):
    w = write_cifar10(root, per_batch=2, n_test=2)
    (w["folder"] / "test_batch").write_bytes(_corrupt_length(w["folder"]))
    return ["distill", "--dataset", "cifar10"], ["test_batch"]


def _cli_svhn_shape(root, marker):
    _svhn_case("wrong X shape", root)
    return ["data", "info", "svhn"], ["test_32x32.mat", "(32, 32, 3, N)"]


def _cli_svhn_empty(root, marker):
    _svhn_case("empty file", root)
    return ["data", "info", "svhn"], ["test_32x32.mat"]


def _cli_tin_wnid(root, marker):
    _tin_case("unknown wnid", root)
    return ["data", "info", "tinyimagenet"], ["val_annotations.txt", "line 3", "n00000042"]


def _tin_many_mixed(root, workers):
    """64 training images (enough for the DataLoader to decode with workers), one of them 48×48."""
    w = write_tinyimagenet(root, wnids=("n01", "n02"), per_class=32, val_per_class=1)
    bad = w["folder"] / "train" / "n02" / "images" / "n02_7.JPEG"
    Image.fromarray(random_rgb(np.random.default_rng(1), 48)).save(bad)
    return (["data", "info", "tinyimagenet", "--stream", "off", "--num-workers", str(workers)],
            ["n02_7.JPEG", "48×48", "--image-size"])


def _cli_tin_mixed_no_workers(root, marker):
    return _tin_many_mixed(root, 0)


def _cli_tin_mixed_workers(root, marker):
    return _tin_many_mixed(root, 2)


def _cli_folder_missing(root, marker):
    return ["distill", "--dataset", f"imagefolder:{root / 'nowhere'}"], ["nowhere", "does not exist"]


def _cli_zca_streamed(root, marker):
    write_mhist(root, size=16)
    return ["distill", "--dataset", "mhist", "--stream", "on", "--zca-eps", "0.1"], ["zca", "streamed", "mhist"]


def _cli_no_path(root, marker):
    return ["distill", "--dataset", "imagefolder"], ["imagefolder:/path/to/folder"]


def _cli_needless_path(root, marker):
    return ["distill", "--dataset", "mnist:/x"], ["mnist", "takes no path", "--data-root"]


def _cli_unknown(root, marker):
    return ["data", "info", "mhistt"], ["mhistt", "mhist", "tinyimagenet", "imagefolder"]


CLI_FAILURES = [
    ("mhist-unknown-label", _cli_mhist_label),
    ("cifar-missing-batch", _cli_cifar_missing),
    ("cifar-malicious-pickle", _cli_cifar_malicious),
    ("cifar-damaged-batch", _cli_cifar_damaged),
    ("svhn-wrong-shape", _cli_svhn_shape),
    ("svhn-empty-file", _cli_svhn_empty),
    ("tinyimagenet-unknown-wnid", _cli_tin_wnid),
    ("tinyimagenet-mixed-sizes-0-workers", _cli_tin_mixed_no_workers),
    ("tinyimagenet-mixed-sizes-2-workers", _cli_tin_mixed_workers),
    ("imagefolder-missing", _cli_folder_missing),
    ("zca-on-streamed", _cli_zca_streamed),
    ("imagefolder-without-path", _cli_no_path),
    ("mnist-with-path", _cli_needless_path),
    ("unknown-dataset", _cli_unknown),
]


@pytest.mark.parametrize("case", [c[1] for c in CLI_FAILURES], ids=[c[0] for c in CLI_FAILURES])
def test_cli_dataset_failures_are_clean(tmp_path, monkeypatch, case):
    root = tmp_path / "data"
    marker = tmp_path / "pwned"
    args, needles = case(root, marker)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    out = work / "out"
    if args[0] == "distill":
        args = [*args, "--data-root", root, "--out", out, *FAST]
    else:
        args = [*args, "--data-root", root]
    result = run(*args)
    clean_failure(result, *needles)
    assert os.listdir(work) == []  # no output folder, no runs/ folder
    assert result.stdout == ""
    assert not marker.exists()


# =========================================================================== 4. streaming
@pytest.fixture
def mhist_root(tmp_path):
    root = tmp_path / "mhist"
    write_mhist(root, size=16, counts={("train", "HP"): 7, ("train", "SSA"): 4, ("test", "HP"): 3,
                                       ("test", "SSA"): 2})
    return root


def test_streamed_set_reads_the_same_tensors_as_in_memory(mhist_root):
    memory = load_dataset("mhist", mhist_root, stream="off", num_workers=0)
    streamed = load_dataset("mhist", mhist_root, stream="on", num_workers=0)
    assert isinstance(memory.train, LabelledImages) and isinstance(streamed.train, StreamedImages)
    assert streamed.train.streamed and streamed.test.streamed and not memory.train.streamed
    assert streamed.spec == memory.spec
    for a, b in ((memory.train, streamed.train), (memory.test, streamed.test)):
        assert len(a) == len(b) and a.image_shape == b.image_shape and torch.equal(a.labels, b.labels)
        torch.testing.assert_close(b.materialise().images, a.images, atol=0, rtol=0)
    idx = torch.tensor([[3, 0], [10, 3], [5, 7]])
    torch.testing.assert_close(streamed.train.take(idx), memory.train.take(idx), atol=0, rtol=0)
    assert streamed.train.take(torch.tensor([], dtype=torch.int64)).shape == (0, 3, 16, 16)
    order = torch.randperm(len(memory.train), generator=torch.Generator().manual_seed(3))
    got = list(streamed.train.batches(order, batch_size=4))
    want = list(memory.train.batches(order, batch_size=4))
    assert [len(i) for i, _ in got] == [4, 4, 3]
    for (gi, gx), (wi, wx) in zip(got, want):
        assert torch.equal(gi, wi)
        torch.testing.assert_close(gx, wx, atol=0, rtol=0)
    sub = torch.tensor([9, 1, 4])
    s, m = streamed.train.subset(sub), memory.train.subset(sub)
    assert isinstance(s, StreamedImages) and torch.equal(s.labels, m.labels) and len(s) == 3
    torch.testing.assert_close(s.take(torch.arange(3)), m.images, atol=0, rtol=0)


def test_streamed_batches_with_worker_processes_keep_the_order(mhist_root):
    memory = load_dataset("mhist", mhist_root, stream="off", num_workers=0)
    streamed = load_dataset("mhist", mhist_root, stream="on", num_workers=2)
    order = torch.tensor([10, 2, 7, 0, 5, 9, 1, 3, 8, 4, 6])
    got = torch.cat([x for _, x in streamed.train.batches(order, batch_size=3)])
    torch.testing.assert_close(got, memory.train.images[order], atol=0, rtol=0)


def test_realset_sample_on_a_streamed_set_decodes_only_the_sampled_files(mhist_root, monkeypatch):
    memory = load_dataset("mhist", mhist_root, stream="off", num_workers=0)
    streamed = load_dataset("mhist", mhist_root, stream="on", num_workers=0)
    decoded = []
    original = streamed_mod.read_image

    def counting(path, *args, **kwargs):
        decoded.append(path)
        return original(path, *args, **kwargs)

    monkeypatch.setattr(streamed_mod, "read_image", counting)
    real = RealSet(streamed.train, 2)
    assert real.class_counts == [7, 4] and decoded == []
    sample = real.sample(3, torch.Generator().manual_seed(11))
    assert sample.shape == (2, 3, 3, 16, 16)
    assert len(decoded) == 6 and len(set(decoded)) == 6
    labels = [streamed.train.labels[streamed.train.files.paths.index(p)].item() for p in decoded]
    assert sorted(labels) == [0, 0, 0, 1, 1, 1]
    expected = RealSet(memory.train, 2).sample(3, torch.Generator().manual_seed(11))
    torch.testing.assert_close(sample, expected, atol=0, rtol=0)
    with pytest.raises(ConfigError, match="stream"):
        real.images
    with pytest.raises(ConfigError, match="stream"):
        streamed.test.images


def test_stream_auto_streams_only_above_the_threshold(mhist_root, monkeypatch):
    small = load_dataset("mhist", mhist_root, num_workers=0)
    assert not small.train.streamed and isinstance(small.train, LabelledImages)
    nbytes = 11 * 3 * 16 * 16 * 4  # the training set as float32
    monkeypatch.setattr(files_mod, "STREAM_THRESHOLD_BYTES", nbytes)
    assert not load_dataset("mhist", mhist_root, num_workers=0).train.streamed
    monkeypatch.setattr(files_mod, "STREAM_THRESHOLD_BYTES", nbytes - 1)
    big = load_dataset("mhist", mhist_root, num_workers=0)
    assert big.train.streamed and big.train.nbytes == nbytes
    assert not load_dataset("mhist", mhist_root, stream="off", num_workers=0).train.streamed
    info = api.dataset_info("mhist", str(mhist_root), num_workers=0)
    assert info["streamed"] and info["train_bytes"] == nbytes


def test_zca_on_a_streamed_dataset_is_a_config_error(mhist_root):
    config = DistillConfig(dataset="mhist", data_root=str(mhist_root), method="dm", ipc=1, iterations=1, num_eval=0,
                           batch_real=2, zca_eps=0.1, stream="on", num_workers=0)
    with pytest.raises(ConfigError, match="zca_eps = 0.1.*streamed"):
        api.distill(config)
    config = DistillConfig(dataset="mhist", data_root=str(mhist_root), method="dm", ipc=1, iterations=1, num_eval=0,
                           batch_real=2, zca_eps=0.1, stream="off", num_workers=0)
    result = api.distill(config)  # in memory, ZCA works
    assert result.synthetic_set.zca is not None


# =========================================================================== 5. mean/std from the training set
def test_mhist_mean_std_from_the_training_set_and_cached(tmp_path, cache_home, monkeypatch):
    root = tmp_path / "m"
    w = write_mhist(root, size=24)
    for name, _ in mhist_split_rows(w, "test"):  # white test images would shift any mean that included them
        Image.fromarray(np.full((24, 24, 3), 255, np.uint8)).save(root / "images" / name)
    calls = []
    original = files_mod.channel_stats

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(files_mod, "channel_stats", counting)
    data = load_dataset("mhist", root, num_workers=0)
    mean, std = numpy_stats([w["pixels"][n] for n, _ in mhist_split_rows(w, "train")])
    np.testing.assert_allclose(data.spec.mean, mean, atol=1e-6)
    np.testing.assert_allclose(data.spec.std, std, atol=1e-6)
    assert len(calls) == 1
    cached = list((cache_home / "datadistill" / "stats").glob("*.json"))
    assert len(cached) == 1 and json.loads(cached[0].read_text())["mean"] == pytest.approx(list(mean))
    again = load_dataset("mhist", root, stream="on", num_workers=0)
    assert len(calls) == 1 and again.spec.mean == data.spec.mean and again.spec.std == data.spec.std
    # a changed training image invalidates the cache
    name = mhist_split_rows(w, "train")[0][0]
    Image.fromarray(np.zeros((24, 24, 3), np.uint8)).save(root / "images" / name)
    changed = load_dataset("mhist", root, num_workers=0)
    assert len(calls) == 2 and changed.spec.mean[0] < data.spec.mean[0]
    # another image size is another cache entry
    load_dataset("mhist", root, image_size=16, num_workers=0)
    assert len(calls) == 3


def test_imagefolder_mean_std_from_the_training_split(tmp_path, cache_home):
    px = write_image_folder(tmp_path / "f", {"a": 10, "b": 20}, size=12, seed=7)
    data = load_dataset(f"imagefolder:{tmp_path / 'f'}", stream="on", num_workers=0)
    train = [px[p.parent.name][int(p.stem)] for p in data.train.files.paths]
    assert len(train) == 27
    mean, std = numpy_stats(train)
    np.testing.assert_allclose(data.spec.mean, mean, atol=1e-6)
    np.testing.assert_allclose(data.spec.std, std, atol=1e-6)
    everything = numpy_stats([p for cls in px.values() for p in cls])
    assert not np.allclose(everything[0], mean, atol=1e-6)  # the held-out images are not counted


def test_load_dataset_of_uses_the_sets_mean_and_std(tmp_path, cache_home, monkeypatch):
    root = tmp_path / "m"
    w = write_mhist(root, size=24)
    monkeypatch.setattr(files_mod, "channel_stats", lambda *a, **k: pytest.fail("mean/std must not be recomputed"))
    meta = {"dataset": "mhist", "image_size": [24, 24], "mean": [0.25, 0.5, 0.75], "std": [0.5, 0.25, 0.125]}
    data = load_dataset_of(meta, root, num_workers=0)
    assert data.spec.mean == (0.25, 0.5, 0.75) and data.spec.std == (0.5, 0.25, 0.125)
    name = mhist_split_rows(w, "test")[0][0]
    torch.testing.assert_close(data.test.images[0], normalised(w["pixels"][name], meta["mean"], meta["std"]),
                               atol=1e-5, rtol=0)
    resized = load_dataset_of({**meta, "image_size": [16, 16]}, root, num_workers=0)
    assert resized.test.image_shape == (3, 16, 16)
    cifar = tmp_path / "c"
    write_cifar10(cifar, per_batch=2, n_test=2)
    c = load_dataset_of({"dataset": "cifar10", "image_size": [32, 32], "mean": [0.5] * 3, "std": [0.5] * 3}, cifar)
    assert c.spec.mean == (0.5, 0.5, 0.5) and float(c.train.images.min()) >= -1.0 - 1e-6


# =========================================================================== 6. balanced and per-class accuracy
class AlwaysZero(torch.nn.Module):
    """Predicts class 0 for every image."""

    def forward(self, x):
        n = x.shape[0]
        return torch.stack([torch.ones(n), torch.zeros(n)], dim=1)


class BrightIsOne(torch.nn.Module):
    """Predicts class 1 when the image's mean is positive."""

    def forward(self, x):
        s = x.flatten(1).mean(dim=1)
        return torch.stack([-s, s], dim=1)


def test_class_correct_on_an_imbalanced_set():
    labels = torch.tensor([0] * 7 + [1] * 3)
    images = torch.randn(10, 1, 4, 4)
    data = LabelledImages(images, labels)
    correct, count = class_correct(AlwaysZero(), data, torch.device("cpu"), 2, batch_size=3)
    assert correct.tolist() == [7, 0] and count.tolist() == [7, 3]
    rates = per_class_percent(correct, count)
    assert rates == [100.0, 0.0] and sum(rates) / 2 == 50.0
    assert accuracy(AlwaysZero(), data, torch.device("cpu")) == pytest.approx(70.0)  # the majority share
    # a net right on 2 of the 3 class-1 images and 6 of the 7 class-0 images
    signs = torch.tensor([-1, -1, -1, -1, -1, -1, 1, 1, 1, -1], dtype=torch.float32)
    data = LabelledImages(signs.view(-1, 1, 1, 1).expand(10, 1, 4, 4).clone(), labels)
    correct, count = class_correct(BrightIsOne(), data, torch.device("cpu"), 3)
    assert correct.tolist() == [6, 2, 0] and count.tolist() == [7, 3, 0]
    assert per_class_percent(correct, count) == [pytest.approx(600 / 7), pytest.approx(200 / 3), None]


def test_class_correct_on_a_streamed_set(mhist_root):
    streamed = load_dataset("mhist", mhist_root, stream="on", num_workers=0)
    correct, count = class_correct(AlwaysZero(), streamed.test, torch.device("cpu"), 2, batch_size=2)
    assert count.tolist() == [3, 2] and correct.tolist() == [3, 0]


def test_eval_result_balanced_and_per_class():
    r = EvalResult("convnet", accuracies=[70.0, 65.0], train_accuracies=[100.0, 100.0], seconds=1.0,
                   per_class_accuracies=[[100.0, None, 50.0], [80.0, None, 40.0]])
    assert r.balanced_accuracies == pytest.approx([75.0, 60.0])
    assert r.per_class_mean() == [pytest.approx(90.0), None, pytest.approx(45.0)]
    d = r.as_dict()
    assert d["balanced_accuracy_mean"] == pytest.approx(67.5) and d["balanced_accuracy_std"] == pytest.approx(7.5)
    assert d["per_class_accuracies"] == r.per_class_accuracies
    plain = EvalResult("convnet", [50.0], [50.0], 0.0)
    assert plain.balanced_accuracies == [] and plain.per_class_mean() == [] and "balanced_accuracy_mean" not in plain.as_dict()


# =========================================================================== 7. ConvNet depth by image size
@pytest.mark.parametrize("side, depth", [(8, 3), (28, 3), (32, 3), (33, 4), (48, 4), (64, 4), (128, 5), (129, 7),
                                         (224, 7)])
def test_default_depth(side, depth):
    assert default_depth((side, side)) == depth


def test_convnet_at_224_has_seven_blocks_and_runs():
    torch.manual_seed(0)
    net = build_model("convnet", 3, 2, (224, 224))
    assert len(net.blocks) == 7 and net.embedding_dim == 128 * 1 * 1
    with torch.no_grad():
        assert net(torch.randn(1, 3, 224, 224)).shape == (1, 2)
    assert len(build_model("convnet", 3, 200, (64, 64)).blocks) == 4


def test_mnist_convnet_parameter_count_unchanged():
    net = build_model("convnet", 1, 10, (28, 28))
    assert len(net.blocks) == 3 and sum(p.numel() for p in net.parameters()) == 317_706


# =========================================================================== 8. data info and dataset names
def test_data_info_mhist_prints_counts_and_imbalance(tmp_path):
    root = tmp_path / "m"
    write_mhist(root, size=16)
    result = run("data", "info", "mhist", "--data-root", root, "--num-workers", "0")
    assert result.exit_code == 0, result.output + repr(result.exception)
    lines = result.stdout.splitlines()
    assert lines[0].startswith("mhist: 9 train / 4 test images of 3×16×16, 2 classes, in memory")
    assert lines[1] == "train images per class: HP 6, SSA 3 (imbalance 2.00:1)"
    assert f"{9 * 3 * 16 * 16 * 4 / 2 ** 20:,.1f} MiB" in lines[2]
    d = json.loads(run("data", "info", "mhist", "--data-root", root, "--json", "--stream", "on").stdout)
    assert d["class_counts"] == {"train": [6, 3], "test": [3, 1]} and d["streamed"] is True
    assert d["image_size"] == [16, 16] and d["class_names"] == ["HP", "SSA"]
    resized = json.loads(run("data", "info", "mhist", "--data-root", root, "--json", "--image-size", "8").stdout)
    assert resized["image_size"] == [8, 8] and resized["train_bytes"] == 9 * 3 * 8 * 8 * 4


def test_imbalance_line_with_many_classes(tmp_path):
    write_cifar100(tmp_path, n_train=100, n_test=100)
    line = api.dataset_info("cifar100", str(tmp_path))["imbalance"]
    assert line.startswith("train images per class: fine00 1, fine01 1") and "(100 classes)" in line
    assert line.endswith("(imbalance 1.00:1)")


@pytest.mark.parametrize("name, error, needle", [
    ("imagefolder", ConfigError, "needs a folder"),
    ("imagefolder:", ConfigError, "needs a folder"),
    ("mnist:/x", ConfigError, "takes no path"),
    ("cifar10:/data/cifar", ConfigError, "takes no path"),
    ("nosuchset", UnknownNameError, "mhist"),
    ("imagefolderx:/x", UnknownNameError, "imagefolder"),
])
def test_check_dataset_name_errors(name, error, needle):
    with pytest.raises(error, match=needle):
        check_dataset_name(name)


@pytest.mark.parametrize("name", ["mhist", "MHIST", "imagefolder:/some/folder", "cifar100", "svhn", "tinyimagenet"])
def test_check_dataset_name_accepts(name):
    check_dataset_name(name)
