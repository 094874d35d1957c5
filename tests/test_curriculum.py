"""PAD's data curriculum: the easy-to-hard window by epoch (the paper's schedule), the subset it takes
from each class's ranking, its validation, and expert training that sees only the window."""

from __future__ import annotations

import json

import pytest
import torch

from datadistill.data import LabelledImages, SplitDataset
from datadistill.errors import ConfigError
from datadistill.trajectory import Curriculum, train_experts
from trajectory_helpers import CPU, epoch_file, expert_settings, read_epoch


@pytest.mark.parametrize("epoch, window", [
    (0, (0, 75)), (4, (0, 80)), (10, (0, 88)), (19, (0, 99)), (20, (0, 100)), (39, (0, 100)),
    (40, (10, 100)), (59, (10, 100)), (60, (20, 100)), (99, (20, 100)),
])
def test_curriculum_window_follows_the_schedule(epoch, window):
    # paper schedule: init_ratio 0.75, add_end_epoch 20, rm 10 % from epoch 40 and 20 % from epoch 60
    # hi = ceil(100·(0.75 + 0.25·min(e/20, 1))): e=4 → 80, e=10 → 87.5 → 88, e=19 → 98.75 → 99
    assert Curriculum(scores_file="s.safetensors").window(epoch, 100) == window


def test_curriculum_subset_takes_the_easy_end_of_each_class():
    cur = Curriculum(scores_file="s", init_ratio=0.5, add_end_epoch=2, rm_epoch_first=3, rm_epoch_second=5,
                     rm_easy_ratio_first=0.25, rm_easy_ratio_second=0.5)
    orders = [torch.tensor([5, 2, 8, 0]), torch.tensor([1, 7, 3, 9])]  # easy → hard
    assert cur.subset(0, orders).tolist() == [5, 2, 1, 7]
    assert cur.subset(1, orders).tolist() == [5, 2, 8, 1, 7, 3]
    assert cur.subset(2, orders).tolist() == [5, 2, 8, 0, 1, 7, 3, 9]
    assert cur.subset(3, orders).tolist() == [2, 8, 0, 7, 3, 9]
    assert cur.subset(5, orders).tolist() == [8, 0, 3, 9]


@pytest.mark.parametrize("bad", [{"init_ratio": 0.0}, {"init_ratio": 1.5}, {"rm_easy_ratio_first": 1.0},
                                 {"rm_epoch_first": -1}])
def test_curriculum_validation(bad):
    with pytest.raises(ConfigError):
        Curriculum(scores_file="s", **bad)


def class_orders(data: SplitDataset, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    orders = []
    for c in range(data.spec.num_classes):
        ids = torch.nonzero(data.train.labels == c).flatten()
        orders.append(ids[torch.randperm(len(ids), generator=g)])
    return orders


def test_train_experts_records_the_curriculum_schedule(tiny_dataset, tiny_model, tmp_path):
    cur = Curriculum(scores_file="unused.safetensors", init_ratio=0.5, add_end_epoch=2, rm_epoch_first=3,
                     rm_epoch_second=4, rm_easy_ratio_first=0.1, rm_easy_ratio_second=0.25)
    settings = expert_settings(tiny_model, num_experts=1, epochs=5, curriculum=cur)
    root = train_experts(tiny_dataset, tmp_path / "pad", settings, CPU, class_orders(tiny_dataset))
    counts = [read_epoch(epoch_file(root, 0, e))[1].get("train_images") for e in range(6)]
    # 20 per class, 3 classes: epoch 0 → [0,10), 1 → [0,15), 2 → [0,20), 3 → [2,20), 4 → [5,20)
    assert counts == [None, 30, 45, 60, 54, 45]
    manifest = json.loads((root / "experts.json").read_text())
    assert manifest["settings"]["curriculum"]["init_ratio"] == 0.5


def test_curriculum_experts_see_only_the_window(tiny_dataset, tiny_model, tmp_path):
    settings = expert_settings(tiny_model, num_experts=1, epochs=1,
                               curriculum=Curriculum(scores_file="unused", init_ratio=0.5, add_end_epoch=10))
    orders = class_orders(tiny_dataset)
    shown = torch.cat([o[:10] for o in orders])
    hidden = torch.cat([o[10:] for o in orders])

    def train_with_changed(idx: torch.Tensor, name: str) -> dict[str, torch.Tensor]:
        images = tiny_dataset.train.images.clone()
        images[idx] = images[idx] * -1.0 + 2.0
        data = SplitDataset(tiny_dataset.spec, LabelledImages(images, tiny_dataset.train.labels), tiny_dataset.test)
        root = train_experts(data, tmp_path / name, settings, CPU, orders)
        return read_epoch(epoch_file(root, 0, 1))[0]

    base = train_with_changed(torch.tensor([], dtype=torch.long), "base")
    hid = train_with_changed(hidden, "hidden")
    one_shown = train_with_changed(shown[:1], "shown")
    params = [k for k in base if not k.startswith("__")]
    assert all(torch.equal(base[k], hid[k]) for k in params)  # the hard half is not used at epoch 0
    assert any(not torch.equal(base[k], one_shown[k]) for k in params)


def test_curriculum_without_an_order_raises(tiny_dataset, tiny_model, tmp_path):
    settings = expert_settings(tiny_model, curriculum=Curriculum(scores_file="s"))
    with pytest.raises(ConfigError, match="order"):
        train_experts(tiny_dataset, tmp_path / "x", settings, CPU)
    assert not (tmp_path / "x").exists()
