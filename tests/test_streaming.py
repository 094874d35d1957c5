"""Streamed datasets (image files decoded when sampled): the same tensors as in memory, batches in
order with worker processes, only the sampled files decoded, ``stream auto`` above the size threshold,
and ZCA refused on a streamed set. ``mhist_root`` is a small MHIST (tests/conftest.py)."""

from __future__ import annotations

import pytest
import torch

import datadistill.api as api
import datadistill.data.files as files_mod
import datadistill.data.streamed as streamed_mod
from datadistill.config import DistillConfig
from datadistill.data import LabelledImages, RealSet, StreamedImages, load_dataset
from datadistill.errors import ConfigError

pytestmark = pytest.mark.usefixtures("isolated_cache_home")


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
