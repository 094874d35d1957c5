"""Malformed dataset layouts (MHIST, CIFAR-10/100, SVHN, TinyImageNet, image folders; the breakages are
in tests/broken_layouts.py): each gives DatasetLayoutError or DatasetNotFoundError naming the file, the
line and what is wrong."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from datadistill.data import load_dataset
from datadistill.data.files import read_mhist_annotations
from datadistill.errors import DatasetLayoutError, DatasetNotFoundError
from broken_layouts import (
    CIFAR_CASES,
    MHIST_CASES,
    SVHN_CASES,
    TIN_CASES,
    cifar_case,
    mhist_case,
    mhist_rows,
    svhn_case,
    tin_case,
)
from layout_fixtures import random_rgb, write_cifar100, write_image_folder, write_mhist, write_mhist_csv, write_pickle

pytestmark = pytest.mark.usefixtures("isolated_cache_home")


# --------------------------------------------------------------------------- MHIST
@pytest.mark.parametrize("case", MHIST_CASES)
def test_mhist_malformed_layouts(tmp_path, case):
    exc, needles = mhist_case(case, tmp_path / "m")
    with pytest.raises(exc) as info:
        load_dataset("mhist", tmp_path / "m", num_workers=0)
    for needle in needles:
        assert needle in str(info.value), (needle, str(info.value))


def test_mhist_not_an_image_with_image_size(tmp_path):
    _, needles = mhist_case("not an image", tmp_path / "m")
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
    rows = mhist_rows(w)
    rows[0][1] = "??"
    write_mhist_csv(w["csv"], rows)
    with pytest.raises(DatasetLayoutError, match="line 2:"):
        read_mhist_annotations(w["csv"])


# --------------------------------------------------------------------------- CIFAR
@pytest.mark.parametrize("case", CIFAR_CASES)
def test_cifar10_malformed_layouts(tmp_path, case):
    exc, needles = cifar_case(case, tmp_path)
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


# --------------------------------------------------------------------------- SVHN
@pytest.mark.parametrize("case", SVHN_CASES)
def test_svhn_malformed_layouts(tmp_path, case):
    exc, needles = svhn_case(case, tmp_path / "s")
    with pytest.raises(exc) as info:
        load_dataset("svhn", tmp_path / "s")
    for needle in needles:
        assert needle in str(info.value), (needle, str(info.value))


# --------------------------------------------------------------------------- TinyImageNet
@pytest.mark.parametrize("case", TIN_CASES)
def test_tinyimagenet_malformed_layouts(tmp_path, case):
    exc, needles = tin_case(case, tmp_path / "t")
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
