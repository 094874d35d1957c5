"""The trajectory-matching family (MTT, DATM, PAD): the matching loss and masks, the functional student
unroll, expert trajectories (files, resume, curriculum), the distillers' steps (memory modes, roll-back
of non-finite steps, lr floor, DATM's extras), and the API / CLI paths that carry the learned lr and
soft labels. Experts are tiny: a width-8 ConvNet trained a few epochs on 60 images."""

from __future__ import annotations

import copy
import dataclasses
import io
import json
import logging
import math
import shutil
from pathlib import Path

import pytest

import datadistill.io.tensor_file as tensor_file_mod
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from safetensors import safe_open
from safetensors.torch import load_file

import datadistill.evaluation.protocol as protocol
import datadistill.methods.trajectory as trajectory_mod
import datadistill.trajectory.experts as experts_mod
from datadistill.api import distill, evaluate_file, run_distill, run_experts
from datadistill.cli import main
from datadistill.config import DistillConfig
from datadistill.data import LabelledImages, SplitDataset
from datadistill.errors import ConfigError, TrajectoryFileError
from datadistill.io import load_synthetic_set
from datadistill.methods.datm import PADConfig
from datadistill.methods.losses import shallow_mask, smallest_error_mask, trajectory_loss
from datadistill.methods.trajectory import student_step
from datadistill.models import build_model
from datadistill.preprocess.dataset import whiten_dataset
from datadistill.selection import load_scores
from datadistill.trajectory import Curriculum, ExpertBuffer, ExpertSettings, train_experts
from helpers import assert_clean_failure, make_distiller

CPU = torch.device("cpu")
DSA_ON = "color_crop_cutout_scale_rotate"


# --------------------------------------------------------------------------- helpers and fixtures
def expert_settings(model: str, **overrides) -> ExpertSettings:
    return ExpertSettings(**{"model": model, "num_experts": 2, "epochs": 4, "batch_size": 16,
                             "dsa_strategy": "none", **overrides})


@pytest.fixture
def experts(tiny_dataset, tiny_model, tmp_path) -> Path:
    """2 experts × 4 epochs of the tiny model on the tiny dataset (epoch files 0 … 4)."""
    return train_experts(tiny_dataset, tmp_path / "experts", expert_settings(tiny_model), CPU)


def small_args(method: str, **overrides) -> dict:
    """Small MTT-family settings that fit the 4-epoch experts."""
    args = {"syn_steps": 2, "expert_epochs": 1, "max_start_epoch": 2}
    if method in ("datm", "pad"):
        args["current_max_start_epoch"] = 2
    return {**args, **overrides}


def distiller(method: str, data, experts_dir: Path, **overrides):
    return make_distiller(method, data, experts=str(experts_dir), **small_args(method, **overrides))


def epoch_file(root: Path, expert: int, epoch: int) -> Path:
    return root / f"expert_{expert:03d}" / f"epoch_{epoch:03d}.safetensors"


def read_epoch(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    tensors = load_file(str(path))
    with safe_open(str(path), framework="pt") as fh:
        meta = json.loads(fh.metadata()["datadistill"])
    return tensors, meta


def expert_net(model: str, spec, path: Path) -> torch.nn.Module:
    """An nn.Module holding the parameters of one epoch file (read directly, not through ExpertBuffer)."""
    net = build_model(model, spec.channels, spec.num_classes, spec.image_size)
    tensors, _ = read_epoch(path)
    net.load_state_dict({k: v for k, v in tensors.items() if not k.startswith("__")})
    return net


def files_under(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def snapshot(d) -> dict:
    return {"tensors": [t.detach().clone() for t in d.learned_tensors()],
            "ema": None if getattr(d, "ema", None) is None else d.ema.clone(),
            "optimisers": [copy.deepcopy(o.state_dict()) for o in d.optimisers()]}


def assert_nested_equal(a, b) -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            assert_nested_equal(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_nested_equal(x, y)
    else:
        assert a == b


def assert_same_state(now: dict, before: dict) -> None:
    assert len(now["tensors"]) == len(before["tensors"])
    for x, y in zip(now["tensors"], before["tensors"]):
        assert torch.equal(x, y)
    assert (now["ema"] is None) == (before["ema"] is None)
    if now["ema"] is not None:
        assert torch.equal(now["ema"], before["ema"])
    assert_nested_equal(now["optimisers"], before["optimisers"])


def has_momentum(state: dict) -> bool:
    return any("momentum_buffer" in s for o in state["optimisers"] for s in o["state"].values())


# --------------------------------------------------------------------------- 1. loss and masks
def test_trajectory_loss_is_zero_when_the_student_reaches_the_target():
    g = torch.Generator().manual_seed(0)
    start, target = torch.randn(50, generator=g), torch.randn(50, generator=g)
    assert trajectory_loss(target.clone(), start, target).item() == 0.0
    mask = torch.rand(50, generator=g) > 0.5
    assert trajectory_loss(target.clone(), start, target, mask).item() == 0.0
    assert trajectory_loss(start.clone(), start, target).item() == pytest.approx(1.0)  # not moved: 1


def test_trajectory_loss_hand_computed():
    # ‖[1,2] − [1,0]‖² / ‖[0,0] − [1,0]‖² = 4 / 1
    assert trajectory_loss(torch.tensor([1.0, 2.0]), torch.tensor([0.0, 0.0]), torch.tensor([1.0, 0.0])).item() == 4.0
    with pytest.raises(ValueError):
        trajectory_loss(torch.zeros(2), torch.zeros(3), torch.zeros(2))


def test_trajectory_loss_mask_removes_entries_from_numerator_and_normaliser():
    student = torch.tensor([3.0, 2.0, 5.0], requires_grad=True)
    start, target = torch.tensor([0.0, 3.0, 6.0]), torch.tensor([1.0, 0.0, 2.0])
    # per entry: (student − target)² = [4, 4, 9]; (start − target)² = [1, 9, 16]
    assert trajectory_loss(student, start, target).item() == pytest.approx(17 / 26)
    # dropping entry 1 changes the numerator (−4) and the normaliser (−9): 13/17, not 13/26 nor 17/17
    assert trajectory_loss(student, start, target, torch.tensor([True, False, True])).item() == pytest.approx(13 / 17)
    # dropping entry 0: (4 + 9) / (9 + 16), not 13/26 (numerator only) nor 17/25 (normaliser only)
    loss = trajectory_loss(student, start, target, torch.tensor([False, True, True]))
    assert loss.item() == pytest.approx(13 / 25)
    loss.backward()
    torch.testing.assert_close(student.grad, torch.tensor([0.0, 2 * 2 / 25, 2 * 3 / 25]))


@pytest.mark.parametrize("num, ratio, dropped", [(10, 0.25, 2), (10, 0.0, 0), (7, 0.5, 3), (8, 0.5, 4), (100, 0.99, 99)])
def test_shallow_mask_drops_the_leading_floor_ratio_p_entries(num, ratio, dropped):
    mask = shallow_mask(num, ratio)
    assert mask.dtype == torch.bool and mask.shape == (num,)
    assert int((~mask).sum()) == dropped
    assert not mask[:dropped].any() and mask[dropped:].all()


@pytest.mark.parametrize("ratio", [1.0, -0.1])
def test_mask_ratio_out_of_range_raises(ratio):
    with pytest.raises(ValueError):
        shallow_mask(10, ratio)
    with pytest.raises(ValueError):
        smallest_error_mask(torch.zeros(4), torch.ones(4), ratio)


def test_smallest_error_mask_drops_the_smallest_errors_ties_to_lower_index():
    student = torch.zeros(5, requires_grad=True)
    target = torch.tensor([3.0, 1.0, 2.0, -1.0, 0.5])  # errors 9, 1, 4, 1, 0.25
    # ⌊0.4·5⌋ = 2: index 4 (0.25), then the tie at 1 goes to index 1 (not 3)
    mask = smallest_error_mask(student, target, 0.4)
    assert mask.dtype == torch.bool and not mask.requires_grad
    assert mask.tolist() == [True, False, True, True, False]
    assert smallest_error_mask(student, target, 0.6).tolist() == [True, False, True, False, False]
    assert smallest_error_mask(student, target, 0.0).all()
    # all errors tied: the lowest indices go
    tied = smallest_error_mask(torch.zeros(8), torch.tensor([1.0, -1, 1, 1, -1, 1, 1, -1]), 0.5)
    assert tied.tolist() == [False] * 4 + [True] * 4


def test_pad_matching_loss_masks_the_parameters(experts, tiny_dataset):
    d = distiller("pad", tiny_dataset, experts)
    assert PADConfig().mask_ratio == 0.25 and d.config.mask_ratio == 0.25
    traj = d.buffer.trajectories[0]
    student, start, target = ([p.clone() for p in traj[e].values()] for e in (3, 1, 2))
    s, a, b = (torch.cat([p.flatten() for p in ps]) for ps in (student, start, target))
    k = int(0.25 * s.numel())
    depth = ((s[k:] - b[k:]) ** 2).sum() / ((a[k:] - b[k:]) ** 2).sum()
    torch.testing.assert_close(d.matching_loss(student, start, target), depth)
    err = (s - b) ** 2
    keep = torch.argsort(err, stable=True)[k:]
    by_loss = err[keep].sum() / ((a - b) ** 2)[keep].sum()
    d_loss = distiller("pad", tiny_dataset, experts, mask_mode="loss")
    torch.testing.assert_close(d_loss.matching_loss(student, start, target), by_loss)
    full = trajectory_loss(s, a, b)
    mtt = distiller("mtt", tiny_dataset, experts)
    torch.testing.assert_close(mtt.matching_loss(student, start, target), full)
    assert not torch.allclose(full, depth) and not torch.allclose(full, by_loss)


# --------------------------------------------------------------------------- 2. functional unroll
@pytest.mark.parametrize("soft", [False, True], ids=["hard_labels", "soft_labels"])
def test_student_step_unroll_equals_a_plain_sgd_loop(tiny_model, soft):
    torch.manual_seed(0)
    net = build_model(tiny_model, 1, 3, (28, 28))
    ref = copy.deepcopy(net)
    initial = [p.detach().clone() for p in net.parameters()]
    names = [n for n, _ in net.named_parameters()]
    g = torch.Generator().manual_seed(1)
    batches = []
    for _ in range(4):
        x = torch.randn(6, 1, 28, 28, generator=g)
        y = torch.randn(6, 3, generator=g) if soft else torch.randint(0, 3, (6,), generator=g)
        batches.append((x, y))
    lr = 0.1
    params = [p.detach().clone().requires_grad_(True) for p in net.parameters()]
    for x, y in batches:
        params = student_step(net, names, params, x, y, torch.tensor(lr), create_graph=soft)
    opt = torch.optim.SGD(ref.parameters(), lr=lr, momentum=0)
    for x, y in batches:
        # soft labels: cross-entropy against the softmax of the label logits (torch's probability targets)
        loss = F.cross_entropy(ref(x), y.softmax(dim=1) if soft else y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    moved = 0.0
    for (name, p), q, p0 in zip(ref.named_parameters(), params, initial):
        torch.testing.assert_close(q.detach(), p.detach(), rtol=1e-5, atol=1e-6, msg=name)
        moved = max(moved, float((p.detach() - p0).abs().max()))
    assert moved > 1e-2  # the comparison is not between barely-moved parameters
    for p, p0 in zip(net.parameters(), initial):  # functional: the template network is untouched
        assert torch.equal(p, p0)


# --------------------------------------------------------------------------- 3. memory modes
MEMORY_CASES = {
    "mtt": ("mtt", {}),
    "datm_soft_labels": ("datm", {"loss_threshold": 0}),
    "pad_depth_mask": ("pad", {"loss_threshold": 0, "mask_mode": "depth"}),
    "pad_loss_mask": ("pad", {"loss_threshold": 0, "mask_mode": "loss"}),
}


@pytest.mark.parametrize("case", sorted(MEMORY_CASES))
def test_memory_modes_give_the_same_gradients(experts, tiny_dataset, case):
    method, extra = MEMORY_CASES[case]
    runs = {}
    for memory in ("unrolled", "checkpointed"):
        d = distiller(method, tiny_dataset, experts, syn_steps=3, batch_syn=4, memory=memory, dsa=DSA_ON, seed=5,
                      **extra)
        d.initialise("real")
        traj = d.buffer.trajectories[1]
        loss = d.backward(list(traj[1].values()), list(traj[2].values()))
        grads = [p.grad.clone() for p in d.learned_tensors()]
        metrics = d.step()  # a whole iteration: expert, start epoch, batches and DSA drawn from the same stream
        step_grads = [p.grad.clone() for p in d.learned_tensors()]
        runs[memory] = (d, loss, grads, metrics, step_grads)
    (du, lu, gu, mu, su), (dc, lc, gc, mc, sc) = runs["unrolled"], runs["checkpointed"]
    assert len(gu) == (2 if method == "mtt" else 3)  # images, lr (, label logits)
    torch.testing.assert_close(lc, lu, rtol=1e-5, atol=0)
    for a, b in zip(gc + sc, gu + su):
        assert float(b.abs().max()) > 0
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5 * float(b.abs().max()))
    assert mc["skipped"] == mu["skipped"] == 0 and mc["start_epoch"] == mu["start_epoch"]
    assert mc["loss"] == pytest.approx(mu["loss"], rel=1e-5)
    for a, b in zip(dc.learned_tensors(), du.learned_tensors()):
        torch.testing.assert_close(a.detach(), b.detach(), rtol=1e-4, atol=1e-4)


# --------------------------------------------------------------------------- 4. non-finite steps
POISONS = {
    "nan_loss": lambda loss, student: loss * float("nan"),
    "inf_loss": lambda loss, student: loss * float("inf"),
    # finite loss (+ 0) whose gradient is NaN: d√x/dx = inf at 0, times d(0·Σs)/ds = 0
    "nan_gradient": lambda loss, student: loss + (student.sum() * 0.0).sqrt(),
}


@pytest.mark.parametrize("poison", sorted(POISONS))
@pytest.mark.parametrize("memory", ["unrolled", "checkpointed"])
@pytest.mark.parametrize("method", ["mtt", "datm"])
def test_non_finite_step_is_rolled_back(experts, tiny_dataset, monkeypatch, caplog, method, memory, poison):
    extra = {"loss_threshold": 0} if method == "datm" else {}
    d = distiller(method, tiny_dataset, experts, memory=memory, **extra)
    d.initialise("real")
    assert d.step()["skipped"] == 0
    d.iteration = 1
    before = snapshot(d)
    assert has_momentum(before)  # there is optimiser state that a careless update would change
    real_loss = trajectory_mod.trajectory_loss
    calls = []

    def poisoned_once(student, start, target, mask=None):
        loss = real_loss(student, start, target, mask)
        calls.append(1)
        return POISONS[poison](loss, student) if len(calls) == 1 else loss

    monkeypatch.setattr(trajectory_mod, "trajectory_loss", poisoned_once)
    with caplog.at_level(logging.WARNING, logger="datadistill"):
        metrics = d.step()
    assert calls == [1]
    assert metrics["skipped"] == 1.0 and d.skipped == 1
    assert_same_state(snapshot(d), before)
    warnings = [r for r in caplog.records if r.name == "datadistill" and r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "rolled back" in warnings[0].getMessage()
    after = d.step()  # the next normal step learns again
    assert after["skipped"] == 0 and math.isfinite(after["loss"])
    assert not torch.equal(d.images.detach(), before["tensors"][0])


@pytest.mark.parametrize("memory", ["unrolled", "checkpointed"])
@pytest.mark.parametrize("method", ["mtt", "datm"])
def test_non_finite_update_is_restored(experts, tiny_dataset, caplog, method, memory):
    extra = {"loss_threshold": 0, "ema_decay": 0.5} if method == "datm" else {}
    d = distiller(method, tiny_dataset, experts, memory=memory, **extra)
    d.initialise("real")
    assert d.step()["skipped"] == 0
    normal_lr = d.optimiser.param_groups[0]["lr"]
    d.optimiser.param_groups[0]["lr"] = float("inf")  # a huge lr_img: the update makes the images ±inf / NaN
    before = snapshot(d)
    assert has_momentum(before)
    with caplog.at_level(logging.WARNING, logger="datadistill"):
        metrics = d.step()
    assert metrics["skipped"] == 1.0 and d.skipped == 1
    assert_same_state(snapshot(d), before)
    assert all(torch.isfinite(t).all() for t in d.learned_tensors())
    warnings = [r for r in caplog.records if r.name == "datadistill" and r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "rolled back" in warnings[0].getMessage()
    d.optimiser.param_groups[0]["lr"] = normal_lr
    assert d.step()["skipped"] == 0
    assert not torch.equal(d.images.detach(), before["tensors"][0])


# --------------------------------------------------------------------------- 5. learned lr floor
@pytest.mark.parametrize("memory", ["unrolled", "checkpointed"])
@pytest.mark.parametrize("lr_lr", [1e6, 3e38])
def test_learned_lr_is_projected_onto_the_floor(experts, tiny_dataset, lr_lr, memory):
    floor = 1e-4
    d = distiller("mtt", tiny_dataset, experts, lr_lr=lr_lr, momentum_lr=0.0, lr_floor=floor, memory=memory)
    d.initialise("real")
    grads = []
    d.optimiser_lr.register_step_pre_hook(lambda opt, args, kwargs: grads.append(float(d.lr.grad)))
    metrics = d.step()
    # precondition: plain SGD would take α to 0.01 − lr_lr·g < 0 (−inf in float32 for the largest lr_lr)
    assert len(grads) == 1 and grads[0] > 0 and 0.01 - lr_lr * grads[0] < 0
    assert metrics["skipped"] == 0
    floor32 = torch.tensor(floor).item()
    assert d.learned_lr() == floor32 and metrics["lr"] == floor32
    for _ in range(3):
        m = d.step()
        assert math.isfinite(d.learned_lr()) and d.learned_lr() >= floor32 and math.isfinite(m["lr"])


# --------------------------------------------------------------------------- 6. curriculum
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


# --------------------------------------------------------------------------- 7. experts on disk
def test_train_experts_writes_every_epoch(experts, tiny_model):
    expected = ["experts.json"] + [f"expert_{k:03d}/epoch_{e:03d}.safetensors" for k in range(2) for e in range(5)]
    assert files_under(experts) == sorted(expected)  # no temporary files left behind
    manifest = json.loads((experts / "experts.json").read_text())
    assert manifest["dataset"] == "tiny" and manifest["model"] == tiny_model
    assert manifest["settings"]["epochs"] == 4 and manifest["preprocessing"]["zca_eps"] is None
    for k in range(2):
        for e in range(5):
            tensors, meta = read_epoch(epoch_file(experts, k, e))
            assert meta["expert"] == k and meta["epoch"] == e and "__rng_state__" in tensors
            assert (meta["test_accuracy"] is None) == (e == 0)
    a, _ = read_epoch(epoch_file(experts, 0, 0))
    b, _ = read_epoch(epoch_file(experts, 0, 1))
    c, _ = read_epoch(epoch_file(experts, 1, 0))
    assert not torch.equal(a["classifier.weight"], b["classifier.weight"])  # training moves the weights
    assert not torch.equal(a["classifier.weight"], c["classifier.weight"])  # expert k uses seed + k


def assert_same_folders(a: Path, b: Path) -> None:
    assert files_under(a) == files_under(b)
    for name in files_under(a):
        if not name.endswith(".safetensors"):
            continue
        ta, ma = read_epoch(a / name)
        tb, mb = read_epoch(b / name)
        assert ta.keys() == tb.keys(), name
        for k in ta:
            assert torch.equal(ta[k], tb[k]), (name, k)
        assert ma == mb, name


class Killed(RuntimeError):
    pass


# src/datadistill/trajectory/experts.py, train_experts: the resume loop is
# ``for epoch in range(done + 1 if done >= 0 else 0, settings.epochs)`` where ``done`` is the last epoch FILE on
# disk (files 0 … done = ``done`` epochs trained) and training epoch ``epoch`` (0-based) writes file ``epoch + 1``.
# Resuming therefore skips one training epoch: with files 0 … 2 it trains only epoch 3 and writes its parameters
# (3 epochs of training) as epoch_004, epoch_003 is never written; with files 0 … 3 it trains nothing and the
# expert never finishes. Expected ``range(max(done, 0), settings.epochs)``.

@pytest.mark.parametrize("kill_at", [
    pytest.param(0, id="expert0_epoch0"),
    pytest.param(5, id="expert1_epoch0"),
    pytest.param(1, id="expert0_epoch1"),
    pytest.param(3, id="expert0_epoch3"),
    pytest.param(7, id="expert1_epoch2"),
    pytest.param(9, id="expert1_epoch4"),
])
def test_killed_run_resumes_to_the_uninterrupted_trajectories(tiny_dataset, tiny_model, tmp_path, monkeypatch,
                                                              kill_at):
    """Kill the run while it writes its ``kill_at``-th epoch file (0-based, expert 0's five files first)."""
    # momentum and DSA on: the resume must restore the momentum buffers and the shuffle/augmentation stream
    settings = expert_settings(tiny_model, momentum=0.9, dsa_strategy=DSA_ON)
    full = train_experts(tiny_dataset, tmp_path / "full", settings, CPU)
    real_save = tensor_file_mod.save_file
    calls = []

    def dying(tensors, path, metadata=None):
        calls.append(path)
        if len(calls) == kill_at + 1:
            Path(path).write_bytes(b"half a file")
            raise Killed("killed while writing")
        return real_save(tensors, path, metadata=metadata)

    monkeypatch.setattr(tensor_file_mod, "save_file", dying)
    killed = tmp_path / "killed"
    with pytest.raises(Killed):
        train_experts(tiny_dataset, killed, settings, CPU)
    left = [f for f in files_under(killed) if f != "experts.json"]  # whole epochs only, no temporary file
    assert len(left) == kill_at and all(f.endswith(".safetensors") and "/epoch_" in f for f in left)
    monkeypatch.setattr(tensor_file_mod, "save_file", real_save)
    train_experts(tiny_dataset, killed, settings, CPU)
    assert_same_folders(full, killed)


def test_resume_after_losing_the_last_epochs(experts, tiny_dataset, tiny_model, tmp_path):
    reference = tmp_path / "reference"
    shutil.copytree(experts, reference)
    for k, e in [(0, 4), (1, 3), (1, 4)]:
        epoch_file(experts, k, e).unlink()
    train_experts(tiny_dataset, experts, expert_settings(tiny_model), CPU)
    assert_same_folders(reference, experts)


def test_finished_folder_is_not_retrained(experts, tiny_dataset, tiny_model, monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("a finished epoch was written again")

    monkeypatch.setattr(experts_mod, "_save_epoch", fail)
    assert train_experts(tiny_dataset, experts, expert_settings(tiny_model), CPU) == experts


@pytest.mark.parametrize("change", [{"lr": 0.02}, {"epochs": 5}, {"seed": 1}, {"num_experts": 3}, {"zca_eps": 0.1},
                                   {"model": "convnet"}, {"dataset": "other"}])
def test_other_settings_in_the_same_folder_raise(experts, tiny_dataset, tiny_model, change):
    change = dict(change)
    model = change.pop("model", tiny_model)
    data = tiny_dataset
    if "dataset" in change:
        spec = dataclasses.replace(tiny_dataset.spec, name=change.pop("dataset"))
        data = SplitDataset(spec, tiny_dataset.train, tiny_dataset.test)
    manifest = (experts / "experts.json").read_text()
    before = files_under(experts)
    with pytest.raises(ConfigError, match="another"):
        train_experts(data, experts, expert_settings(model, **change), CPU)
    assert (experts / "experts.json").read_text() == manifest and files_under(experts) == before


def test_expert_buffer_load_reads_the_trajectories(experts, tiny_dataset, tiny_model):
    net = build_model(tiny_model, 1, 3, (28, 28))
    names = [n for n, _ in net.named_parameters()]
    buf = ExpertBuffer.load(experts, names)
    assert buf.num_experts == 2 and buf.epochs == 4 and all(len(t) == 5 for t in buf.trajectories)
    for k in range(2):
        for e in range(5):
            tensors, meta = read_epoch(epoch_file(experts, k, e))
            assert list(buf.trajectories[k][e]) == names
            for n in names:
                assert torch.equal(buf.trajectories[k][e][n], tensors[n])
            assert buf.test_accuracy[k][e] == meta["test_accuracy"]
    everything = ExpertBuffer.load(experts)
    assert set(everything.trajectories[0][0]) == set(net.state_dict())  # no RNG or optimiser state
    # an unfinished expert (killed, or still training) is left out; the finished one is complete
    epoch_file(experts, 0, 4).unlink()
    partial = ExpertBuffer.load(experts, names)
    assert partial.num_experts == 1 and partial.epochs == 4
    for n in names:
        assert torch.equal(partial.trajectories[0][4][n], buf.trajectories[1][4][n])


def test_expert_buffer_load_errors(experts, tmp_path):
    with pytest.raises(TrajectoryFileError, match="experts.json"):
        ExpertBuffer.load(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(TrajectoryFileError, match="experts.json"):
        ExpertBuffer.load(tmp_path / "empty")
    # a manifest but no finished epoch (only the initial parameters)
    only_start = tmp_path / "only_start"
    only_start.mkdir()
    shutil.copy(experts / "experts.json", only_start / "experts.json")
    with pytest.raises(TrajectoryFileError):
        ExpertBuffer.load(only_start)
    epoch_file(only_start, 0, 0).parent.mkdir()
    shutil.copy(epoch_file(experts, 0, 0), epoch_file(only_start, 0, 0))
    with pytest.raises(TrajectoryFileError, match="finished"):
        ExpertBuffer.load(only_start)
    # a trajectory lacking a parameter the student has
    with pytest.raises(TrajectoryFileError, match="lacks"):
        ExpertBuffer.load(experts, ["features.0.weight", "no_such.weight"])
    # foreign manifest, broken manifest
    foreign = tmp_path / "foreign"
    shutil.copytree(experts, foreign)
    (foreign / "experts.json").write_text(json.dumps({"format": "something else"}))
    with pytest.raises(TrajectoryFileError, match="format"):
        ExpertBuffer.load(foreign)
    (foreign / "experts.json").write_text("{not json")
    with pytest.raises(TrajectoryFileError):
        ExpertBuffer.load(foreign)
    # a corrupt epoch file
    epoch_file(experts, 1, 2).write_bytes(b"garbage")
    with pytest.raises(TrajectoryFileError, match="epoch_002"):
        ExpertBuffer.load(experts)


def test_check_compatible(experts, tiny_model):
    buf = ExpertBuffer.load(experts)
    buf.check_compatible("tiny", tiny_model, None)
    for dataset, model, zca_eps, needle in [("mnist", tiny_model, None, "tiny"), ("tiny", "convnet", None, "model"),
                                            ("tiny", tiny_model, 0.1, "ZCA")]:
        with pytest.raises(ConfigError, match=needle):
            buf.check_compatible(dataset, model, zca_eps)


@pytest.mark.parametrize("method", ["mtt", "datm", "pad"])
def test_start_plus_expert_epochs_must_fit_the_experts(experts, tiny_dataset, method):
    distiller(method, tiny_dataset, experts, max_start_epoch=2, expert_epochs=2)  # 2 + 2 = 4 epochs: fits
    with pytest.raises(ConfigError, match="exceeds"):
        distiller(method, tiny_dataset, experts, max_start_epoch=3, expert_epochs=2)


def test_mtt_needs_experts(tiny_dataset, tiny_model, tmp_path):
    with pytest.raises(ConfigError, match="expert"):
        make_distiller("mtt", tiny_dataset, **small_args("mtt"))  # experts = ""
    (tmp_path / "empty").mkdir()
    with pytest.raises(TrajectoryFileError):
        distiller("mtt", tiny_dataset, tmp_path / "empty")


def test_mtt_refuses_experts_of_another_model(experts, tiny_dataset):
    with pytest.raises(ConfigError, match="model"):
        distiller("mtt", tiny_dataset, experts, model="convnet")


# --------------------------------------------------------------------------- 8. DATM
def test_datm_start_window_grows_linearly(experts, tiny_dataset):
    d = distiller("datm", tiny_dataset, experts, max_start_epoch=3, current_max_start_epoch=1,
                  expansion_end_iteration=10)
    d.initialise("real")
    # upper = ⌊1 + (3 − 1)·min(it/10, 1)⌋
    for it, upper in [(0, 1), (2, 1), (4, 1), (5, 2), (9, 2), (10, 3), (50, 3)]:
        d.iteration = it
        assert d.start_window() == upper, it
    for it, upper in [(0, 1), (10, 3)]:
        d.iteration = it
        assert {d.sample_start_epoch() for _ in range(100)} == set(range(upper + 1))
    d0 = distiller("datm", tiny_dataset, experts, max_start_epoch=3, current_max_start_epoch=1,
                   expansion_end_iteration=0)
    assert d0.start_window() == 3
    # during fit, every sampled start lies in the window of its iteration
    d.initialise("real")
    starts = []
    d.fit(4, [lambda it, m: starts.append((it - 1, m["start_epoch"]))])
    assert all(0 <= s <= 1 + int(2 * min(it / 10, 1)) for it, s in starts)


@pytest.mark.parametrize("epoch", [-1, 2])
def test_datm_soft_labels_start_as_the_expert_logits(experts, tiny_dataset, tiny_model, epoch):
    d = distiller("datm", tiny_dataset, experts, soft_label_expert_epoch=epoch)
    d.initialise("real")
    net = expert_net(tiny_model, tiny_dataset.spec, epoch_file(experts, 0, 4 if epoch == -1 else epoch))
    images = d.images.detach()
    with torch.no_grad():
        expected = net(images)
    assert d.label_logits.shape == (6, 3) and d.label_logits.requires_grad
    torch.testing.assert_close(d.label_logits.detach(), expected, rtol=1e-5, atol=1e-6)
    other = expert_net(tiny_model, tiny_dataset.spec, epoch_file(experts, 0, 1))
    with torch.no_grad():
        assert not torch.allclose(other(images), d.label_logits.detach())
    out_images, out_labels, lr = d.output()
    assert torch.equal(out_labels, d.label_logits.detach()) and isinstance(lr, float)
    assert torch.equal(out_images, images)
    hard = distiller("datm", tiny_dataset, experts, soft_labels=False)
    hard.initialise("real")
    assert hard.label_logits is None and hard.output()[1].tolist() == [0, 0, 1, 1, 2, 2]


def test_datm_init_samples_predicted_correctly(experts, tiny_dataset, tiny_model):
    d = distiller("datm", tiny_dataset, experts, ipc=2)
    d.initialise("samples_predicted_correctly")
    real = tiny_dataset.train
    images = d.images.detach()
    assert d.labels.tolist() == [0, 0, 1, 1, 2, 2]
    picked = []
    for img, label in zip(images, d.labels):
        matches = torch.nonzero((real.images == img).flatten(1).all(dim=1)).flatten()
        assert len(matches) == 1  # a real training image …
        assert int(real.labels[matches[0]]) == int(label)  # … of the right class
        picked.append(int(matches[0]))
    assert len(set(picked)) == len(picked)
    net = expert_net(tiny_model, tiny_dataset.spec, epoch_file(experts, 0, 4))
    with torch.no_grad():
        assert torch.equal(net(images).argmax(dim=1), d.labels)  # … that the expert classifies correctly
        correct = net(real.images).argmax(dim=1) == real.labels
    assert not correct.all()  # the expert is wrong on some images, so the choice matters
    # soft labels are the expert's logits on those images
    with torch.no_grad():
        torch.testing.assert_close(d.label_logits.detach(), net(images), rtol=1e-5, atol=1e-6)
    per_class = [int(correct[real.labels == c].sum()) for c in range(3)]
    if min(per_class) < 20:  # asking for more images than the expert gets right must fail clearly
        with pytest.raises(ConfigError, match="correctly"):
            distiller("datm", tiny_dataset, experts, ipc=20).initialise("samples_predicted_correctly")


def test_datm_loss_threshold_skips_the_update(experts, tiny_dataset):
    probe = distiller("datm", tiny_dataset, experts, seed=3, loss_threshold=0)
    probe.initialise("real")
    loss = probe.step()["loss"]
    assert loss > 0
    low = distiller("datm", tiny_dataset, experts, seed=3, loss_threshold=loss * 0.99)
    low.initialise("real")
    before = snapshot(low)
    metrics = low.step()
    assert metrics["skipped"] == 1.0 and metrics["loss"] == pytest.approx(loss)
    assert_same_state(snapshot(low), before)
    high = distiller("datm", tiny_dataset, experts, seed=3, loss_threshold=loss * 1.01)
    high.initialise("real")
    assert high.step()["skipped"] == 0
    assert not torch.equal(high.images.detach(), before["tensors"][0])
    assert not torch.equal(high.label_logits.detach(), before["tensors"][2])


def test_datm_output_is_the_image_ema(experts, tiny_dataset):
    d = distiller("datm", tiny_dataset, experts, loss_threshold=0, ema_decay=0.9)
    d.initialise("real")
    x0 = d.images.detach().clone()
    assert torch.equal(d.output()[0], x0)
    assert d.step()["skipped"] == 0
    x1 = d.images.detach().clone()
    assert not torch.allclose(x1, x0)
    torch.testing.assert_close(d.output()[0], 0.9 * x0 + 0.1 * x1)
    assert d.step()["skipped"] == 0
    x2 = d.images.detach().clone()
    torch.testing.assert_close(d.output()[0], 0.9 * (0.9 * x0 + 0.1 * x1) + 0.1 * x2)
    no_ema = distiller("datm", tiny_dataset, experts, loss_threshold=0, ema_decay=0)
    no_ema.initialise("real")
    no_ema.step()
    assert torch.equal(no_ema.output()[0], no_ema.images.detach())


@pytest.mark.parametrize("method", ["mtt", "datm"])
def test_checkpoint_resume_is_exact(experts, tiny_dataset, method):
    extra = {"loss_threshold": 0, "ema_decay": 0.5} if method == "datm" else {}
    kw = dict(dsa=DSA_ON, batch_syn=4, syn_steps=3, **extra)
    d = distiller(method, tiny_dataset, experts, seed=3, **kw)
    d.initialise("real")
    d.fit(2)
    buf = io.BytesIO()
    torch.save(d.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    resumed = distiller(method, tiny_dataset, experts, seed=99, **kw)
    resumed.initialise("noise")
    resumed.load_state_dict(state)
    d.fit(2)
    resumed.fit(2)
    for a, b in zip(d.output(), resumed.output()):
        assert torch.equal(a, b) if isinstance(a, torch.Tensor) else a == b
    assert_nested_equal([o.state_dict() for o in d.optimisers()], [o.state_dict() for o in resumed.optimisers()])


# --------------------------------------------------------------------------- 9. API
def spy_train_network(monkeypatch) -> list[tuple[float, torch.Tensor]]:
    seen = []
    real = protocol.train_network

    def spy(net, images, targets, settings, lr, generator, after_epoch=None):
        seen.append((lr, targets.detach().cpu().clone()))
        return real(net, images, targets, settings, lr, generator, after_epoch)

    monkeypatch.setattr(protocol, "train_network", spy)
    return seen


def test_distill_datm_end_to_end(experts, tiny_dataset, tiny_model, monkeypatch):
    seen = spy_train_network(monkeypatch)
    config = DistillConfig(method="datm", model=tiny_model, ipc=2, iterations=2, num_eval=1, eval_epochs=2,
                           device="cpu",
                           method_args={"experts": str(experts), "syn_steps": 2, "expert_epochs": 1,
                                        "max_start_epoch": 2, "current_max_start_epoch": 1, "lr_teacher": 0.02})
    result = distill(config, dataset=tiny_dataset)
    syn = result.synthetic_set
    assert syn.labels.shape == (6, 3) and syn.labels.dtype == torch.float32 and syn.label_kind == "soft_logits"
    assert syn.hard_labels.shape == (6,)
    assert isinstance(syn.learned_lr, float) and math.isfinite(syn.learned_lr) and syn.learned_lr > 0
    assert result.initial_set.learned_lr == pytest.approx(0.02) and result.initial_set.labels.shape == (6, 3)
    assert result.iterations_run == 2 and len(result.evaluation.accuracies) == 1
    # the evaluation trains with the learned lr (not eval_lr 0.01) on the soft labels
    assert [lr for lr, _ in seen] == [syn.learned_lr] and syn.learned_lr != config.eval_lr
    assert torch.equal(seen[0][1], syn.labels)


def test_run_distill_writes_learned_lr_and_soft_labels(mnist_root, tiny_model, tmp_path, monkeypatch):
    experts_dir = run_experts({"dataset": "mnist", "model": tiny_model, "num_experts": 1, "epochs": 3,
                               "batch_size": 50, "dsa_strategy": "none"}, tmp_path / "experts", device="cpu",
                              data_root=str(mnist_root))
    config = DistillConfig(dataset="mnist", data_root=str(mnist_root), method="datm", model=tiny_model, ipc=1,
                           iterations=2, num_eval=1, eval_epochs=1, device="cpu",
                           method_args={"experts": str(experts_dir), "syn_steps": 2, "expert_epochs": 1,
                                        "max_start_epoch": 2, "current_max_start_epoch": 1, "lr_teacher": 0.03})
    result = run_distill(config, tmp_path / "out")
    syn = load_synthetic_set(tmp_path / "out" / "synthetic.safetensors")
    assert syn.learned_lr is not None and syn.learned_lr == result.synthetic_set.learned_lr
    assert syn.labels.shape == (10, 10) and syn.labels.dtype == torch.float32 and syn.label_kind == "soft_logits"
    assert torch.equal(syn.labels, result.synthetic_set.labels)
    assert torch.equal(syn.images, result.synthetic_set.images)
    assert syn.metadata["method"] == "datm" and syn.metadata["config"]["method_args"]["lr_teacher"] == 0.03
    seen = spy_train_network(monkeypatch)
    evaluate_file(tmp_path / "out" / "synthetic.safetensors", data_root=str(mnist_root), device="cpu",
                  model=tiny_model, num_eval=1, epochs=1)
    assert [lr for lr, _ in seen] == [syn.learned_lr]
    assert torch.equal(seen[0][1], syn.labels)


def mtt_config(model: str, experts_dir: Path, zca_eps: float | None) -> DistillConfig:
    return DistillConfig(method="mtt", model=model, ipc=1, iterations=1, num_eval=0, device="cpu", zca_eps=zca_eps,
                         method_args={"experts": str(experts_dir), "syn_steps": 1, "expert_epochs": 1,
                                      "max_start_epoch": 1})


def test_mtt_zca_must_match_the_experts(experts, tiny_dataset, tiny_model, tmp_path):
    with pytest.raises(ConfigError, match="ZCA"):
        distill(mtt_config(tiny_model, experts, 0.1), dataset=tiny_dataset)
    white, _ = whiten_dataset(tiny_dataset, 0.1)
    zca_experts = train_experts(white, tmp_path / "zca_experts",
                                expert_settings(tiny_model, num_experts=1, epochs=2, zca_eps=0.1), CPU)
    with pytest.raises(ConfigError, match="ZCA"):
        distill(mtt_config(tiny_model, zca_experts, None), dataset=tiny_dataset)
    with pytest.raises(ConfigError, match="ZCA"):
        distill(mtt_config(tiny_model, zca_experts, 0.2), dataset=tiny_dataset)
    result = distill(mtt_config(tiny_model, zca_experts, 0.1), dataset=tiny_dataset)
    syn = result.synthetic_set
    assert syn.zca is not None and syn.zca.eps == 0.1
    assert syn.labels.dtype == torch.int64 and isinstance(syn.learned_lr, float)


# --------------------------------------------------------------------------- 10. CLI
def run_cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def error_line(result, *needles) -> str:
    """Exit status 2, no traceback, exactly one error line naming every needle."""
    assert result.exit_code == 2, result.output
    return assert_clean_failure(result, *needles)


def experts_args(root: Path, out: Path, model: str, *extra) -> list:
    return ["experts", "--data-root", root, "--out", out, "--num-experts", 1, "--model", model, "--batch-size", 64,
            "--device", "cpu", *extra]


def test_cli_experts_writes_the_trajectories(mnist_root, tiny_model, tmp_path):
    out = tmp_path / "experts"
    result = run_cli(*experts_args(mnist_root, out, tiny_model, "--epochs", 1))
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "expert 0 epoch 1" in result.stdout
    assert files_under(out) == ["expert_000/epoch_000.safetensors", "expert_000/epoch_001.safetensors",
                                "experts.json"]
    buf = ExpertBuffer.load(out)
    assert buf.num_experts == 1 and buf.epochs == 1
    assert buf.manifest["dataset"] == "mnist" and buf.manifest["model"] == tiny_model


def test_cli_experts_bad_value_exits_2(mnist_root, tiny_model, tmp_path):
    out = tmp_path / "experts"
    error_line(run_cli(*experts_args(mnist_root, out, tiny_model, "--epochs", 0)), "epochs")
    assert not out.exists()


def test_cli_scores_then_curriculum_experts(mnist_root, tiny_model, tmp_path):
    scores_file = tmp_path / "el2n.safetensors"
    result = run_cli("scores", "--data-root", mnist_root, "--score", "el2n", "--epochs", 1, "--num-networks", 1,
                     "--model", tiny_model, "--device", "cpu", "--out", scores_file)
    assert result.exit_code == 0, result.output + repr(result.exception)
    scores = load_scores(scores_file)
    assert scores.score == "el2n" and len(scores.values) == 200 and torch.isfinite(scores.values).all()
    # PAD's experts on that ranking: epoch 0 sees the easiest 75 % of each class (15 of 20, 10 classes)
    out = tmp_path / "pad_experts"
    result = run_cli(*experts_args(mnist_root, out, tiny_model, "--epochs", 1, "--curriculum", scores_file))
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert read_epoch(epoch_file(out, 0, 1))[1]["train_images"] == 150
    manifest = json.loads((out / "experts.json").read_text())
    assert manifest["settings"]["curriculum"]["scores_file"] == str(scores_file)


def test_cli_scores_unknown_score_exits_2(mnist_root, tiny_model, tmp_path):
    out = tmp_path / "bogus.safetensors"
    error_line(run_cli("scores", "--data-root", mnist_root, "--score", "bogus", "--epochs", 1, "--num-networks", 1,
                       "--model", tiny_model, "--device", "cpu", "--out", out), "bogus")
    assert not out.exists()


def test_explicit_eval_lr_replaces_the_learned_lr(monkeypatch):
    """EvalSettings(use_learned_lr=False) trains with settings.lr even when the set learned one."""
    import datadistill.evaluation.protocol as protocol
    from datadistill.data import LabelledImages
    from datadistill.evaluation import EvalSettings, evaluate_synthetic_set
    from datadistill.io import SyntheticSet

    seen = []
    monkeypatch.setattr(protocol, "train_network", lambda net, images, targets, settings, lr, gen, after_epoch=None: seen.append(lr) or net)
    syn = SyntheticSet(torch.randn(4, 1, 28, 28), torch.tensor([0, 0, 1, 1]), 0.05, {"num_classes": 2})
    test = LabelledImages(torch.randn(6, 1, 28, 28), torch.tensor([0, 1, 0, 1, 0, 1]))
    for use, expected in ((True, 0.05), (False, 0.02)):
        settings = EvalSettings(model="convnet_w32", num_eval=1, epochs=1, lr=0.02, dsa_strategy="none",
                                use_learned_lr=use)
        evaluate_synthetic_set(syn, test, settings, torch.device("cpu"))
        assert seen[-1] == pytest.approx(expected)
