"""Mean and std of file datasets (MHIST, image folders): computed from the training split only, at the
chosen image size, cached under $XDG_CACHE_HOME (invalidated when a training image changes), and taken
from a synthetic set's metadata instead of recomputed when its data is loaded again."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import datadistill.data.files as files_mod
from datadistill.data import load_dataset, load_dataset_of
from layout_fixtures import mhist_split_rows, normalised, numpy_stats, write_cifar10, write_image_folder, write_mhist

pytestmark = pytest.mark.usefixtures("isolated_cache_home")


@pytest.fixture
def cache_home(tmp_path, monkeypatch):
    """A fresh, empty stats cache for one test."""
    path = tmp_path / "xdg"
    monkeypatch.setenv("XDG_CACHE_HOME", str(path))
    return path


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
