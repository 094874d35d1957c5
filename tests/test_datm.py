"""DATM's additions to MTT: the start-epoch window that grows with the iterations, soft labels that
start as an expert's logits, initialisation from images the expert classifies correctly, the loss
threshold that skips an update, and the output as an EMA of the images."""

from __future__ import annotations

from pathlib import Path

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
