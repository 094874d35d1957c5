"""The trajectory-matching loss and its masks (MTT's normalised distance, PAD's depth and loss masks, the
distillers' ``matching_loss``), and the functional student unroll checked against a plain SGD loop."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from datadistill.methods.datm import PADConfig
from datadistill.methods.losses import shallow_mask, smallest_error_mask, trajectory_loss
from datadistill.methods.trajectory import student_step
from datadistill.models import build_model
from trajectory_helpers import distiller


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
