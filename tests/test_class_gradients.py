"""The pieces a gradient-matching step is made of: per-class gradients (batched, chunked or looped, each
class on its own images, differentiable to the images), BatchNorm frozen on a real batch, and the
network's training on the synthetic set between updates."""

import copy

import pytest
import torch
from torch import nn

from datadistill.augment import DSA
from datadistill.methods.bilevel import freeze_batchnorm, has_batchnorm, train_on_synthetic
from datadistill.methods.dc import class_gradients
from datadistill.methods.losses import gradient_distance
from datadistill.models import build_model
from helpers import manual_class_gradients


# --------------------------------------------------------------------------- class_gradients
def _tiny_net(seed=0, **kw):
    torch.manual_seed(seed)
    return build_model("convnet", 1, 3, (8, 8), width=4, **kw)


@pytest.fixture
def grad_inputs():
    net = _tiny_net()
    gen = torch.Generator().manual_seed(3)
    images = torch.randn(3, 2, 1, 8, 8, generator=gen)
    labels = torch.tensor([[0, 0], [1, 2], [2, 1]])  # not necessarily the group's class
    return net, images, labels


def test_class_gradients_batched_loop_and_manual_agree(grad_inputs):
    net, images, labels = grad_inputs
    manual = manual_class_gradients(net, images, labels)
    shapes = [(3, *p.shape) for p in net.parameters()]
    for kwargs in ({"batched": True}, {"batched": True, "chunk": 1}, {"batched": True, "chunk": 2},
                   {"batched": False}):
        got = class_gradients(net, images, labels, **kwargs)
        assert [tuple(g.shape) for g in got] == shapes, kwargs
        for g, m in zip(got, manual):
            assert not g.requires_grad
            assert torch.allclose(g, m, rtol=1e-4, atol=1e-6), kwargs


def test_class_gradients_per_class_independent(grad_inputs):
    """Class c's gradient depends only on its own images: computing it alone gives the same tensor."""
    net, images, labels = grad_inputs
    full = class_gradients(net, images, labels)
    alone = class_gradients(net, images[1:2], labels[1:2])
    for f, a in zip(full, alone):
        assert torch.allclose(f[1:2], a, rtol=1e-4, atol=1e-6)
    assert not torch.allclose(full[0][0], full[0][1])


def test_class_gradients_leave_network_untouched(grad_inputs):
    net, images, labels = grad_inputs
    before = copy.deepcopy(net.state_dict())
    class_gradients(net, images, labels, batched=True)
    class_gradients(net, images, labels, batched=False)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert all(p.grad is None for p in net.parameters())


@pytest.mark.parametrize("distance", ["layerwise", "mse"])
def test_class_gradients_differentiable_to_images(grad_inputs, distance):
    net, images, labels = grad_inputs
    real = torch.randn(3, 4, 1, 8, 8, generator=torch.Generator().manual_seed(9))
    real_labels = torch.arange(3).view(3, 1).expand(3, 4)
    g_real = class_gradients(net, real, real_labels)

    image_grads = []
    for batched in (True, False):
        syn = images.clone().requires_grad_(True)
        g_syn = class_gradients(net, syn, labels, batched=batched)
        assert all(g.requires_grad for g in g_syn)
        gradient_distance(g_real, g_syn, distance).backward()
        image_grads.append(syn.grad)
    # manual double backpropagation
    syn = images.clone().requires_grad_(True)
    gradient_distance(g_real, manual_class_gradients(net, syn, labels, create_graph=True), distance).backward()
    image_grads.append(syn.grad)

    batched, looped, manual = image_grads
    assert batched is not None and torch.isfinite(batched).all()
    assert batched.abs().sum() > 0
    for c in range(3):
        assert batched[c].abs().sum() > 0
    assert torch.allclose(batched, looped, rtol=1e-3, atol=1e-6)
    assert torch.allclose(looped, manual, rtol=1e-4, atol=1e-7)


# --------------------------------------------------------------------------- BatchNorm and network training
def test_freeze_batchnorm_sets_batch_statistics_and_eval_mode():
    net = _tiny_net(norm="batchnorm")
    assert has_batchnorm(net)
    x = torch.randn(12, 1, 8, 8, generator=torch.Generator().manual_seed(4)) * 2 + 0.5
    # what each BatchNorm sees in a train-mode pass over x (computed on an independent copy)
    probe = copy.deepcopy(net).train()
    seen = []
    hooks = [m.register_forward_pre_hook(lambda m, inp: seen.append(inp[0].detach().clone()))
             for m in probe.modules() if isinstance(m, nn.BatchNorm2d)]
    probe(x)
    for h in hooks:
        h.remove()

    freeze_batchnorm(net, x)
    bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bns) == len(seen) == 3
    for bn, inp in zip(bns, seen):
        assert not bn.training
        assert torch.allclose(bn.running_mean, inp.mean(dim=(0, 2, 3)), rtol=1e-4, atol=1e-5)
        assert torch.allclose(bn.running_var, inp.var(dim=(0, 2, 3), unbiased=True), rtol=1e-4, atol=1e-5)
    assert net.training and all(b.training for b in net.blocks)  # only the BatchNorm layers are in eval

    # the statistics stay fixed while the network is used (e.g. during matching)
    means = [bn.running_mean.clone() for bn in bns]
    net(torch.randn(5, 1, 8, 8) + 3.0)
    assert all(torch.equal(m, bn.running_mean) for m, bn in zip(means, bns))

    # a second call resets the statistics from the new batch (not a running average of both)
    y = torch.randn(12, 1, 8, 8, generator=torch.Generator().manual_seed(5)) - 1.0
    freeze_batchnorm(net, y)
    conv0 = net.blocks[0][0]
    with torch.no_grad():
        first = conv0(y)
    assert torch.allclose(bns[0].running_mean, first.mean(dim=(0, 2, 3)), rtol=1e-4, atol=1e-5)


def test_freeze_batchnorm_is_a_no_op_without_batchnorm():
    net = _tiny_net()
    net.eval()
    before = copy.deepcopy(net.state_dict())
    freeze_batchnorm(net, torch.randn(4, 1, 8, 8))
    assert not has_batchnorm(net)
    assert not net.training  # mode untouched
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


class _CountingSGD(torch.optim.SGD):
    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.steps = 0

    def step(self, closure=None):
        self.steps += 1
        return super().step(closure)


@pytest.mark.parametrize("epochs, batch_size, steps", [(0, 4, 0), (1, 4, 2), (2, 2, 6), (1, 100, 1)])
def test_train_on_synthetic_steps_and_detaches(epochs, batch_size, steps):
    net = _tiny_net()
    before = [p.detach().clone() for p in net.parameters()]
    images = torch.randn(6, 1, 8, 8, requires_grad=True)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    opt = _CountingSGD(net.parameters(), lr=0.1)
    images_before = images.detach().clone()
    train_on_synthetic(net, opt, images, labels, epochs, batch_size, DSA("none"), torch.Generator().manual_seed(0))
    assert opt.steps == steps
    changed = any(not torch.equal(b, p) for b, p in zip(before, net.parameters()))
    assert changed == (steps > 0)
    assert images.grad is None and torch.equal(images.detach(), images_before)
