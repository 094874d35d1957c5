"""Shared fixtures: a tiny in-memory dataset, a tiny registered model, a fake MNIST and a small MHIST on
disk, expert trajectories of the tiny model, and a private cache folder for the dataset-layout tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from datadistill.data import SplitDataset
from datadistill.models import MODELS
from datadistill.trajectory import train_experts
from helpers import TINY_MODEL, make_tiny_dataset, tiny_builder, write_fake_mnist
from layout_fixtures import write_mhist
from trajectory_helpers import CPU, expert_settings

torch.set_num_threads(1)


def pytest_collection_modifyitems(config, items):
    """Tests marked ``cuda`` (pyproject's markers) are skipped, with the reason, where no CUDA GPU is
    visible; ``scripts/device_check.sh`` runs them on a GPU machine (``pytest -m cuda``)."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (marker cuda): none is visible here")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def tiny_dataset() -> SplitDataset:
    """3 classes × 20 images of 1×28×28 (N(0, 1), i.e. already normalised), 30 test images."""
    return make_tiny_dataset()


@pytest.fixture
def tiny_model(monkeypatch) -> str:
    """Registers a width-8 ConvNet-3 under a test-only name for the duration of one test."""
    monkeypatch.setitem(MODELS._items, TINY_MODEL, tiny_builder)
    return TINY_MODEL


@pytest.fixture
def experts(tiny_dataset, tiny_model, tmp_path) -> Path:
    """2 experts × 4 epochs of the tiny model on the tiny dataset (epoch files 0 … 4)."""
    return train_experts(tiny_dataset, tmp_path / "experts", expert_settings(tiny_model), CPU)


@pytest.fixture
def mnist_root(tmp_path) -> Path:
    """A data root holding a fake MNIST (200 train / 100 test random images, labels 0..9 balanced)."""
    root = tmp_path / "data"
    write_fake_mnist(root)
    return root


@pytest.fixture(scope="module")
def fake_mnist_root(tmp_path_factory) -> Path:
    """:func:`mnist_root` built once per test module, for modules that run many commands on it."""
    root = tmp_path_factory.mktemp("data")
    write_fake_mnist(root)
    return root


@pytest.fixture
def mhist_root(tmp_path) -> Path:
    """A data root holding a small MHIST of 16×16 images: 7 HP + 4 SSA training, 3 HP + 2 SSA test images."""
    root = tmp_path / "mhist"
    write_mhist(root, size=16, counts={("train", "HP"): 7, ("train", "SSA"): 4, ("test", "HP"): 3,
                                       ("test", "SSA"): 2})
    return root


@pytest.fixture(scope="module")
def isolated_cache_home(tmp_path_factory):
    """Mean/std of file datasets are cached under $XDG_CACHE_HOME: keep them out of the user's cache.
    Used by a whole test module: ``pytestmark = pytest.mark.usefixtures("isolated_cache_home")``."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg_cache")))
        yield
