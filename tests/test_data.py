import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from datadistill.data import DatasetSpec, LabelledImages, RealSet, SplitDataset, list_datasets, load_dataset, resolve_data_root
from datadistill.data.prepare import idx_bytes, prepare, prepare_fashion_mnist, prepare_mnist
from datadistill.errors import ConfigError, DatasetNotFoundError, UnknownNameError
from helpers import write_fake_mnist

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081


def test_idx_bytes_header_and_payload():
    arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    data = idx_bytes(arr)
    assert data[:4] == bytes([0, 0, 8, 3])
    assert [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(3)] == [2, 3, 4]
    assert data[16:] == arr.tobytes()
    assert len(idx_bytes(np.zeros(5, dtype=np.uint8))) == 4 + 4 + 5
    with pytest.raises(ValueError, match="uint8"):
        idx_bytes(np.zeros((2, 2), dtype=np.int32))


def test_fake_mnist_is_read_back(tmp_path):
    arrays = write_fake_mnist(tmp_path, n_train=120, n_test=40, seed=3)
    data = load_dataset("mnist", tmp_path)
    assert isinstance(data, SplitDataset)
    assert data.spec.name == "mnist" and data.spec.num_classes == 10 and data.spec.channels == 1
    tr, te = data.train, data.test
    assert tr.images.shape == (120, 1, 28, 28) and te.images.shape == (40, 1, 28, 28)
    assert tr.images.dtype == torch.float32 and te.images.dtype == torch.float32
    assert tr.labels.dtype == torch.int64 and te.labels.dtype == torch.int64
    assert tr.labels.tolist() == arrays["train-labels-idx1-ubyte"].tolist()
    assert te.labels.tolist() == arrays["t10k-labels-idx1-ubyte"].tolist()
    expected = (torch.from_numpy(arrays["train-images-idx3-ubyte"]).float() / 255 - MNIST_MEAN) / MNIST_STD
    assert torch.allclose(tr.images[:, 0], expected, atol=1e-5)
    expected_test = (torch.from_numpy(arrays["t10k-images-idx3-ubyte"]).float() / 255 - MNIST_MEAN) / MNIST_STD
    assert torch.allclose(te.images[:, 0], expected_test, atol=1e-5)
    # de-normalising gives the pixels back
    assert torch.allclose(data.spec.denormalise(tr.images)[:, 0] * 255,
                          torch.from_numpy(arrays["train-images-idx3-ubyte"]).float(), atol=1e-3)


def test_normalisation_extremes(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    imgs = np.zeros((20, 28, 28), dtype=np.uint8)
    imgs[10:] = 255
    labels = (np.arange(20) % 10).astype(np.uint8)
    for split in ("train", "t10k"):
        (raw / f"{split}-images-idx3-ubyte").write_bytes(idx_bytes(imgs))
        (raw / f"{split}-labels-idx1-ubyte").write_bytes(idx_bytes(labels))
    data = load_dataset("mnist", tmp_path)
    assert torch.allclose(data.train.images[:10], torch.tensor(-MNIST_MEAN / MNIST_STD), atol=1e-6)
    assert torch.allclose(data.train.images[10:], torch.tensor((1 - MNIST_MEAN) / MNIST_STD), atol=1e-6)


def test_missing_dataset_names_prepare_command(tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("mnist", tmp_path / "empty")
    msg = str(info.value)
    assert "datadistill data prepare mnist" in msg
    assert str(tmp_path / "empty") in msg
    with pytest.raises(DatasetNotFoundError, match="datadistill data prepare fashion_mnist"):
        load_dataset("fashion_mnist", tmp_path)


def test_dataset_not_found_is_a_file_not_found_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_dataset("mnist", tmp_path)


def test_unknown_dataset(tmp_path):
    with pytest.raises(UnknownNameError, match="mnist"):
        load_dataset("cifar1000", tmp_path)
    assert {"mnist", "fashion_mnist"} <= set(list_datasets())


def _write_fake_fashion_source(folder: Path, n_train=60, n_test=20):
    rng = np.random.default_rng(1)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": (np.arange(n_train) % 10).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": (np.arange(n_test) % 10).astype(np.uint8),
    }
    for name, arr in arrays.items():
        with gzip.open(folder / f"{name}.gz", "wb") as fh:
            fh.write(idx_bytes(arr))
    return arrays


def test_prepare_fashion_mnist_from_source(tmp_path):
    arrays = _write_fake_fashion_source(tmp_path / "src")
    root = tmp_path / "root"
    raw = prepare_fashion_mnist(root, source=tmp_path / "src")
    assert raw == root / "FashionMNIST" / "raw"
    assert sorted(p.name for p in raw.iterdir()) == sorted(arrays)  # no temporary files left
    for name, arr in arrays.items():
        assert (raw / name).read_bytes() == idx_bytes(arr)
    data = load_dataset("fashion_mnist", root)
    assert data.spec.name == "fashion_mnist"
    assert data.train.images.shape == (60, 1, 28, 28) and data.test.images.shape == (20, 1, 28, 28)
    assert data.train.labels.tolist() == arrays["train-labels-idx1-ubyte"].tolist()
    assert "flip" in data.spec.dsa_strategy


def test_prepare_dispatch_with_source(tmp_path):
    _write_fake_fashion_source(tmp_path / "src")
    raw = prepare("fashion_mnist", tmp_path / "root", tmp_path / "src")
    assert (raw / "t10k-labels-idx1-ubyte").is_file()


def test_prepare_fashion_mnist_missing_source(tmp_path):
    root = tmp_path / "root"
    with pytest.raises(DatasetNotFoundError, match="apt-get") as info:
        prepare_fashion_mnist(root, source=tmp_path / "nowhere")
    assert "train-images-idx3-ubyte.gz" in str(info.value)
    assert not (root / "FashionMNIST" / "raw").exists() or not any((root / "FashionMNIST" / "raw").iterdir())


def test_prepare_fashion_mnist_partial_source(tmp_path):
    _write_fake_fashion_source(tmp_path / "src")
    (tmp_path / "src" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DatasetNotFoundError, match="t10k-labels-idx1-ubyte.gz"):
        prepare_fashion_mnist(tmp_path / "root", source=tmp_path / "src")


def test_prepare_mnist_is_a_no_op_when_files_exist(tmp_path):
    write_fake_mnist(tmp_path)
    before = {p.name: p.read_bytes() for p in (tmp_path / "MNIST" / "raw").iterdir()}
    assert prepare_mnist(tmp_path) == tmp_path / "MNIST" / "raw"
    assert prepare("mnist", tmp_path) == tmp_path / "MNIST" / "raw"
    assert {p.name: p.read_bytes() for p in (tmp_path / "MNIST" / "raw").iterdir()} == before


def test_prepare_unknown_dataset(tmp_path):
    with pytest.raises(ConfigError, match="nosuch"):
        prepare("nosuch", tmp_path)


# --------------------------------------------------------------------------- RealSet
def id_dataset(counts=(5, 7, 6)):
    """Image i is filled with the value i, so sampled images can be traced back."""
    labels = torch.tensor([c for c, k in enumerate(counts) for _ in range(k)])
    labels = labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))]
    images = torch.arange(len(labels), dtype=torch.float32).view(-1, 1, 1, 1).expand(-1, 2, 3, 3).contiguous()
    return LabelledImages(images, labels)


def test_realset_sample_shape_and_classes():
    data = id_dataset()
    real = RealSet(data, 3)
    assert real.class_counts == [5, 7, 6] and real.min_class_count == 5
    batch = real.sample(4, torch.Generator().manual_seed(1))
    assert batch.shape == (3, 4, 2, 3, 3)
    for c in range(3):
        ids = batch[c, :, 0, 0, 0].long()
        assert (batch[c] == batch[c, :, :1, :1, :1]).all()  # whole images, not mixed
        assert data.labels[ids].tolist() == [c] * 4
        assert len(set(ids.tolist())) == 4  # without replacement


def test_realset_sample_all_of_smallest_class_and_repeatability():
    data = id_dataset()
    real = RealSet(data, 3)
    batch = real.sample(5, torch.Generator().manual_seed(2))
    ids0 = set(batch[0, :, 0, 0, 0].long().tolist())
    assert ids0 == set(torch.nonzero(data.labels == 0).flatten().tolist())
    a = real.sample(3, torch.Generator().manual_seed(9))
    b = real.sample(3, torch.Generator().manual_seed(9))
    assert torch.equal(a, b)


def test_realset_sampling_more_than_smallest_class_raises():
    real = RealSet(id_dataset(), 3)
    with pytest.raises(ConfigError, match="5"):
        real.sample(6)


def test_realset_empty_class_raises():
    data = LabelledImages(torch.zeros(4, 1, 2, 2), torch.tensor([0, 0, 2, 2]))
    with pytest.raises(ConfigError, match="class 1"):
        RealSet(data, 3)


def test_carve_validation(tiny_dataset):
    ids = id_dataset((10, 10, 10))
    split = SplitDataset(tiny_dataset.spec, ids, tiny_dataset.test)
    train, val = split.carve_validation(7, torch.Generator().manual_seed(0))
    assert len(train) == 23 and len(val) == 7
    ids_train = train.images[:, 0, 0, 0].long()
    ids_val = val.images[:, 0, 0, 0].long()
    assert sorted(ids_train.tolist() + ids_val.tolist()) == list(range(30))  # a partition
    assert torch.equal(train.labels, ids.labels[ids_train]) and torch.equal(val.labels, ids.labels[ids_val])
    assert split.test is tiny_dataset.test
    for bad in (0, 30, -1):
        with pytest.raises(ConfigError):
            split.carve_validation(bad, torch.Generator())


def test_labelled_images_len_and_to(tiny_dataset):
    assert len(tiny_dataset.train) == 60
    moved = tiny_dataset.test.to("cpu")
    assert torch.equal(moved.images, tiny_dataset.test.images)


def test_denormalise_clamps():
    spec = DatasetSpec("x", 2, (2, 2), ("a",), (0.5, 0.25), (0.5, 0.25), "none")
    x = torch.tensor([[[[0.0]], [[0.0]]], [[[10.0]], [[-10.0]]]]).expand(2, 2, 2, 2)
    out = spec.denormalise(x)
    assert torch.allclose(out[0, 0], torch.full((2, 2), 0.5))
    assert torch.allclose(out[0, 1], torch.full((2, 2), 0.25))
    assert out[1, 0].eq(1.0).all() and out[1, 1].eq(0.0).all()


# --------------------------------------------------------------------------- data root
def test_resolve_data_root_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("DATADISTILL_DATA", str(tmp_path / "env"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert resolve_data_root(tmp_path / "arg") == tmp_path / "arg"
    assert resolve_data_root(str(tmp_path / "arg")) == tmp_path / "arg"
    assert resolve_data_root() == tmp_path / "env"
    assert resolve_data_root(None) == tmp_path / "env"
    monkeypatch.delenv("DATADISTILL_DATA")
    assert resolve_data_root() == tmp_path / "xdg" / "datadistill"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert resolve_data_root() == tmp_path / "home" / ".cache" / "datadistill"


def test_resolve_data_root_expands_user(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert resolve_data_root("~/data") == tmp_path / "data"
    monkeypatch.setenv("DATADISTILL_DATA", "~/envdata")
    assert resolve_data_root() == tmp_path / "envdata"


def test_load_dataset_uses_env_root(mnist_root, monkeypatch):
    monkeypatch.setenv("DATADISTILL_DATA", str(mnist_root))
    assert load_dataset("mnist").train.images.shape == (200, 1, 28, 28)
