"""One step of the MTT-family distillers: unrolled and checkpointed memory give the same gradients, a
non-finite loss, gradient or update is rolled back (optimiser state included), the learned lr stays
on its floor, and a saved state resumes exactly. Experts: the ``experts`` fixture (tests/conftest.py)."""

from __future__ import annotations

import io
import logging
import math

import pytest
import torch

import datadistill.methods.trajectory as trajectory_mod
from helpers import DSA_ON
from trajectory_helpers import assert_nested_equal, assert_same_state, distiller, snapshot


def has_momentum(state: dict) -> bool:
    return any("momentum_buffer" in s for o in state["optimisers"] for s in o["state"].values())


# --------------------------------------------------------------------------- 1. memory modes
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


# --------------------------------------------------------------------------- 2. non-finite steps
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


# --------------------------------------------------------------------------- 3. learned lr floor
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


# --------------------------------------------------------------------------- 4. checkpoint and resume
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
