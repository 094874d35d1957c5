"""DATM's additions to MTT: the start-epoch window that grows with the iterations, soft labels that
start as the experts' logits, initialisation from images the experts classify correctly (labels: the
mean of the correct experts' logits), the loss threshold that skips an update, and the opt-in EMA of
images, labels and lr."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from datadistill.errors import ConfigError
from datadistill.models import build_model
from trajectory_helpers import assert_same_state, distiller, epoch_file, read_epoch, snapshot


def expert_net(model: str, spec, path: Path) -> torch.nn.Module:
    """An nn.Module holding the parameters of one epoch file (read directly, not through ExpertBuffer)."""
    net = build_model(model, spec.channels, spec.num_classes, spec.image_size)
    tensors, _ = read_epoch(path)
    net.load_state_dict({k: v for k, v in tensors.items() if not k.startswith("__")})
    return net


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
    # soft labels: per image, the mean of the logits of the experts (both, last epoch) that get it right
    nets = [expert_net(tiny_model, tiny_dataset.spec, epoch_file(experts, k, 4)) for k in range(2)]
    with torch.no_grad():
        logits = [n(images) for n in nets]
    expected = []
    for i, label in enumerate(d.labels.tolist()):
        right = [lg[i] for lg in logits if int(lg[i].argmax()) == label]
        assert right  # expert 0 at least
        expected.append(torch.stack(right).mean(dim=0))
    torch.testing.assert_close(d.label_logits.detach(), torch.stack(expected), rtol=1e-5, atol=1e-6)
    per_class = [int(correct[real.labels == c].sum()) for c in range(3)]
    if min(per_class) < 20:  # asking for more images than the experts get right must fail clearly
        with pytest.raises(ConfigError, match="correctly"):
            distiller("datm", tiny_dataset, experts, ipc=20).initialise("samples_predicted_correctly")


# correct-expert patterns of the toy experts, cycled over the real images: which of 3 experts get it right
PATTERNS = [(0,), (0, 1), (0, 1, 2), (1, 2), (2,), (0, 2), ()]


def toy_experts(d, real_images: torch.Tensor, labels: torch.Tensor, right_of) -> torch.Tensor:
    """Replace d's experts by 3 toy experts given as a table of logits (3, N_real, K): expert e is right
    on real image i (its class boosted by 10) when e is in ``right_of(i)``, else wrong (the next class
    boosted). Returns the table."""
    n, k = len(real_images), int(labels.max()) + 1
    table = torch.randn(3, n, k, generator=torch.Generator().manual_seed(5))
    for i in range(n):
        for e in range(3):
            table[e, i, (int(labels[i]) + (0 if e in right_of(i) else 1)) % k] += 10.0

    def logits(images: torch.Tensor, expert: int = 0) -> torch.Tensor:
        rows = [int(torch.nonzero((real_images == img.cpu()).flatten(1).all(dim=1))[0]) for img in images]
        return table[expert][rows]

    d.buffer = SimpleNamespace(num_experts=3)
    d.expert_logits = logits
    return table


def real_rows(images: torch.Tensor, real_images: torch.Tensor) -> list[int]:
    return [int(torch.nonzero((real_images == img).flatten(1).all(dim=1))[0]) for img in images]


def test_soft_labels_average_exactly_the_correct_experts_logits(experts, tiny_dataset):
    real = tiny_dataset.train
    d = distiller("datm", tiny_dataset, experts, ipc=3)
    table = toy_experts(d, real.images, real.labels, lambda i: PATTERNS[i % len(PATTERNS)])
    d.initialise("samples_predicted_correctly")
    rows = real_rows(d.images.detach(), real.images)
    assert all(0 in PATTERNS[i % len(PATTERNS)] for i in rows)  # expert 0 gets every picked image right
    assert len({PATTERNS[i % len(PATTERNS)] for i in rows}) > 1  # and the other experts vary
    for j, i in enumerate(rows):
        right = PATTERNS[i % len(PATTERNS)]
        expected = sum(table[e, i] for e in right) / len(right)
        torch.testing.assert_close(d.label_logits[j].detach(), expected, rtol=0, atol=1e-6)
    # no expert right on an image: the mean of all (the reference divides 0 by 0)
    none = torch.tensor([i for i in range(len(real)) if not PATTERNS[i % len(PATTERNS)]][:2])
    got = d.correct_experts_logits(real.images[none], real.labels[none])
    torch.testing.assert_close(got, table[:, none].mean(dim=0), rtol=0, atol=1e-6)
    # init real: expert 0's logits, as before
    d.initialise("real")
    rows = real_rows(d.images.detach(), real.images)
    torch.testing.assert_close(d.label_logits.detach(), table[0, rows], rtol=0, atol=0)


def test_samples_predicted_correctly_falls_back_to_the_next_experts(experts, tiny_dataset):
    real = tiny_dataset.train
    first0 = int(torch.nonzero(real.labels == 0)[0])  # expert 0 gets one image of class 0 right, expert 1 all

    def right_of(i: int) -> tuple[int, ...]:
        return (0, 1) if int(real.labels[i]) != 0 or i == first0 else (1,)

    d = distiller("datm", tiny_dataset, experts, ipc=3)
    toy_experts(d, real.images, real.labels, right_of)
    d.initialise("samples_predicted_correctly")
    rows = real_rows(d.images.detach(), real.images)
    assert rows[0] == first0 and len(set(rows[:3])) == 3  # expert 0's one image first, then expert 1's
    assert all(int(real.labels[i]) == c for i, c in zip(rows, [0, 0, 0, 1, 1, 1, 2, 2, 2]))
    d = distiller("datm", tiny_dataset, experts, ipc=3)
    toy_experts(d, real.images, real.labels, lambda i: (0, 1, 2) if int(real.labels[i]) != 0 or i == first0 else ())
    with pytest.raises(ConfigError, match="3 experts classify only 1 images of class 0"):
        d.initialise("samples_predicted_correctly")


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


def test_ema_is_off_by_default_and_averages_images_labels_and_lr_alike(experts, tiny_dataset):
    plain = distiller("datm", tiny_dataset, experts, loss_threshold=0)
    plain.initialise("real")
    plain.step()
    assert plain.ema is None and torch.equal(plain.output()[0], plain.images.detach())
    d = distiller("datm", tiny_dataset, experts, loss_threshold=0, ema_decay=0.9)
    d.initialise("real")
    live = [[t.detach().clone() for t in d.learned_tensors()]]  # images, lr, label logits
    for _ in range(2):
        assert d.step()["skipped"] == 0
        live.append([t.detach().clone() for t in d.learned_tensors()])
    assert not torch.allclose(live[2][0], live[0][0]) and not torch.allclose(live[2][2], live[0][2])
    assert float(live[2][1]) != float(live[0][1])
    weights = [0.81, 0.9 * 0.1, 0.1]  # EMA after two updates: 0.9·(0.9·x0 + 0.1·x1) + 0.1·x2
    images, labels, lr = d.output()
    for out, j in ((images, 0), (labels, 2)):
        torch.testing.assert_close(out, sum(w * x[j] for w, x in zip(weights, live)))
    assert lr == pytest.approx(float(sum(w * x[1] for w, x in zip(weights, live))), rel=1e-6)
    # a checkpoint of before #21 held the EMA of the images only: the labels and lr start from the live ones
    state = d.state_dict()
    state["ema"] = state["ema"][0]
    resumed = distiller("datm", tiny_dataset, experts, loss_threshold=0, ema_decay=0.9)
    resumed.initialise("real")
    resumed.load_state_dict(state)
    assert torch.equal(resumed.output()[0], images) and torch.equal(resumed.output()[1], live[2][2])
