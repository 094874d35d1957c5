"""Helpers shared by the tests (imported by conftest.py and the test modules)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from datadistill.augment import DSA
from datadistill.data import DatasetSpec, LabelledImages, RealSet, SplitDataset
from datadistill.data.prepare import idx_bytes
from datadistill.methods import METHODS
from datadistill.models import ConvNet
from datadistill.runtime import make_generator

TINY_MODEL = "test_tiny_convnet"
DSA_ON = "color_crop_cutout_scale_rotate"  # every DSA transform, for tests that augment
TINY_SPEC = DatasetSpec(
    name="tiny", channels=1, image_size=(28, 28), class_names=("zero", "one", "two"),
    mean=(0.5,), std=(0.25,), dsa_strategy="color_crop_cutout_scale_rotate",
)


def make_tiny_dataset(per_class: int = 20, test_size: int = 30, seed: int = 1234,
                      spec: DatasetSpec = TINY_SPEC) -> SplitDataset:
    """``per_class`` random normalised images per class (classes interleaved), and a test set."""
    gen = torch.Generator().manual_seed(seed)
    k = spec.num_classes
    shape = (spec.channels, *spec.image_size)
    train_labels = torch.arange(k).repeat(per_class)
    train = LabelledImages(torch.randn(k * per_class, *shape, generator=gen), train_labels)
    test = LabelledImages(torch.randn(test_size, *shape, generator=gen), torch.arange(test_size) % k)
    return SplitDataset(spec, train, test)


def tiny_builder(channels, num_classes, image_size, **kwargs):
    return ConvNet(channels, num_classes, image_size, **{"width": 8, **kwargs})


def make_distiller(method: str, data: SplitDataset, *, ipc: int = 2, model: str = TINY_MODEL,
                   dsa: str = "none", seed: int = 0, device: str = "cpu", **cfg):
    """A distiller of ``method`` on ``data`` with a small real batch (config overrides in ``cfg``)."""
    cls = METHODS.get(method)
    config = cls.config_class.from_dict({"batch_real": 4, **cfg})
    real = RealSet(data.train, data.spec.num_classes)
    # the keyword arguments api.distill passes, all of them (zca_eps included), as the API does
    return cls(config, data.spec, real, ipc=ipc, model=model, dsa=DSA(dsa), device=torch.device(device),
               generator=make_generator(seed), zca_eps=None)


def write_fake_mnist(root: Path, n_train: int = 200, n_test: int = 100, seed: int = 0,
                     folder: str = "MNIST") -> dict[str, np.ndarray]:
    """Write random uint8 28×28 images with balanced labels 0..9 in torchvision's raw layout
    (``root/<folder>/raw/*-ubyte``); returns the arrays written."""
    rng = np.random.default_rng(seed)
    raw = Path(root) / folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, size=(n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.permutation(np.arange(n_train) % 10).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, size=(n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.permutation(np.arange(n_test) % 10).astype(np.uint8),
    }
    for name, arr in arrays.items():
        (raw / name).write_bytes(idx_bytes(arr))
    return arrays


def assert_clean_failure(result, *needles):
    """Non-zero exit, no traceback, and exactly one error line that names every needle."""
    assert result.exit_code != 0, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    err_lines = [line for line in result.stderr.splitlines() if line.lower().startswith("error")]
    assert len(err_lines) == 1, result.stderr
    for needle in needles:
        assert needle in err_lines[0], (needle, err_lines[0])
    return err_lines[0]


def manual_class_gradients(net, images, labels, create_graph=False):
    """Per-class gradients by a plain loop, one backward pass per class: the reference for
    ``class_gradients`` and the DC step. Returns one (G, *param.shape) tensor per parameter."""
    out = []
    for c in range(images.shape[0]):
        loss = F.cross_entropy(net(images[c]), labels[c])
        out.append(torch.autograd.grad(loss, list(net.parameters()), create_graph=create_graph))
    return [torch.stack(ts) for ts in zip(*out)]


def without_keys(value, drop):
    """``value`` (nested dicts and lists) without the dict entries whose key is in ``drop`` (a
    container of keys, or a predicate on a key): the timings, which differ from run to run."""
    dropped = drop if callable(drop) else drop.__contains__
    if isinstance(value, dict):
        return {k: without_keys(v, dropped) for k, v in value.items() if not dropped(k)}
    if isinstance(value, list):
        return [without_keys(v, dropped) for v in value]
    return value


def run_cli(*args):
    """``datadistill ARGS`` in this process (click's CliRunner), each argument passed as ``str``."""
    from click.testing import CliRunner

    from datadistill.cli import main

    return CliRunner().invoke(main, [str(a) for a in args])


def cli_ok(result):
    """A :func:`run_cli` result that exited 0 (else the assertion shows its output and exception)."""
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result
