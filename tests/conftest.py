"""Shared fixtures: a tiny in-memory dataset, a tiny registered model, a fake MNIST on disk."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from datadistill.data import SplitDataset
from datadistill.models import MODELS
from helpers import TINY_MODEL, make_tiny_dataset, tiny_builder, write_fake_mnist

torch.set_num_threads(1)


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
def mnist_root(tmp_path) -> Path:
    """A data root holding a fake MNIST (200 train / 100 test random images, labels 0..9 balanced)."""
    root = tmp_path / "data"
    write_fake_mnist(root)
    return root
