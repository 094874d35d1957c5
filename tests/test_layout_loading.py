"""Loading each official dataset layout (tests/layout_fixtures.py, tiny random images): MHIST,
CIFAR-10/100 (every pickle protocol, Python 2 batches), SVHN, TinyImageNet and image folders, checking
sizes, channels, labels, pixels (against values computed independently of the loader), class names,
splits and resizing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from datadistill.data import load_dataset
from datadistill.data.files import IMAGENET_MEAN, IMAGENET_STD
from datadistill.data.torchvision_sets import CIFAR10_SPEC, CIFAR100_MEAN, SVHN_SPEC, restricted_unpickle
from datadistill.models.convnet import default_depth
from layout_fixtures import (
    mhist_split_rows,
    normalised,
    numpy_stats,
    write_cifar10,
    write_cifar100,
    write_image_folder,
    write_mhist,
    write_pickle,
    write_svhn,
    write_tinyimagenet,
)

pytestmark = pytest.mark.usefixtures("isolated_cache_home")


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
