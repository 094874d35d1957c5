"""DC / DSA: the gradient distance, the loop schedule, per-class gradients and short runs."""

import copy
import io
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from datadistill.api import distill
from datadistill.config import build_config
from datadistill.errors import ConfigError
from datadistill.methods import METHODS
from datadistill.methods.bilevel import freeze_batchnorm, has_batchnorm, train_on_synthetic
from datadistill.methods.dc import DCConfig, class_gradients, loop_schedule
from datadistill.methods.losses import gradient_distance
from datadistill.augment import DSA
from datadistill.models import MODELS, ConvNet, build_model
from helpers import TINY_MODEL, make_distiller

EPS = 1e-6
DSA_ON = "color_crop_cutout_scale_rotate"
TINY_BN = "test_tiny_convnet_bn"
FAST_DC = {"outer_loop": 2, "inner_loop": 1}


@pytest.fixture
def data(tiny_dataset, tiny_model):
    return tiny_dataset


@pytest.fixture
def tiny_bn_model(monkeypatch) -> str:
    def builder(channels, num_classes, image_size, **kwargs):
        return ConvNet(channels, num_classes, image_size, **{"width": 4, "norm": "batchnorm", **kwargs})

    monkeypatch.setitem(MODELS._items, TINY_BN, builder)
    return TINY_BN


def _cos_term(a, b):
    """1 − a·b / (‖a‖‖b‖ + eps) for plain Python vectors."""
    dot = sum(x * y for x, y in zip(a, b))
    na = math.sqrt(sum(x * x for x in a))
    nb = math.sqrt(sum(y * y for y in b))
    return 1 - dot / (na * nb + EPS)


# --------------------------------------------------------------------------- gradient_distance
def test_layerwise_zero_for_identical_gradients():
    torch.manual_seed(0)
    grads = [torch.randn(3, 4, 2, 3, 3), torch.randn(3, 4), torch.randn(3, 5, 7), torch.randn(3, 5)]
    d = gradient_distance(grads, [g.clone() for g in grads], "layerwise")
    assert d.dim() == 0
    assert 0 <= d.item() <= 1e-5
    for name in ("mse", "cos"):
        assert gradient_distance(grads, [g.clone() for g in grads], name).item() == pytest.approx(0.0, abs=1e-5)


def test_layerwise_hand_computation_one_class():
    # conv gradient (G=1, out=2, in=1, kh=1, kw=2): rows (1, 0) | (1, 1) versus (0, 1) | (2, 2)
    conv_real = torch.tensor([[[[[1.0, 0.0]]], [[[1.0, 1.0]]]]])
    conv_syn = torch.tensor([[[[[0.0, 1.0]]], [[[2.0, 2.0]]]]])
    # linear gradient (G=1, out=1, in=2): (3, 4) versus (4, 3), cos = 24/25
    lin_real = torch.tensor([[[3.0, 4.0]]])
    lin_syn = torch.tensor([[[4.0, 3.0]]])
    assert conv_real.shape == (1, 2, 1, 1, 2)
    expected = (1 - 0 / (1 * 1 + EPS)) + (1 - 4 / (math.sqrt(2) * math.sqrt(8) + EPS)) + (1 - 24 / (25 + EPS))
    got = gradient_distance([conv_real, lin_real], [conv_syn, lin_syn], "layerwise")
    assert got.item() == pytest.approx(expected, rel=1e-6)
    assert got.item() == pytest.approx(1.04, abs=1e-5)  # sanity of the hand numbers


def test_layerwise_hand_computation_sums_over_classes_and_rows():
    real = torch.tensor([[[1.0, 2.0, 2.0], [0.0, 3.0, 4.0]],     # class 0: rows of a (2, 3) linear gradient
                         [[1.0, 0.0, 0.0], [1.0, 1.0, 0.0]]])    # class 1
    syn = torch.tensor([[[-1.0, -2.0, -2.0], [0.0, 4.0, 3.0]],   # opposite row → 1 + 9/(9+eps); cos 24/25
                        [[0.0, 5.0, 0.0], [2.0, 2.0, 0.0]]])     # orthogonal → 1; parallel → ≈ 0
    expected = sum(_cos_term(r, s) for r, s in zip(real.flatten(0, 1).tolist(), syn.flatten(0, 1).tolist()))
    assert expected == pytest.approx(2 + 1 / 25 + 1, abs=1e-5)
    assert gradient_distance([real], [syn]).item() == pytest.approx(expected, rel=1e-6)  # layerwise is the default


def test_layerwise_flattens_conv_rows_per_output_channel():
    """A conv gradient (out, in, kh, kw) is compared row by row over in·kh·kw, not as one vector."""
    torch.manual_seed(1)
    real = torch.randn(2, 3, 2, 3, 3)
    syn = torch.randn(2, 3, 2, 3, 3)
    rows_r, rows_s = real.reshape(6, 18).tolist(), syn.reshape(6, 18).tolist()
    expected = sum(_cos_term(r, s) for r, s in zip(rows_r, rows_s))
    assert gradient_distance([real], [syn], "layerwise").item() == pytest.approx(expected, rel=1e-5)
    # a per-row rescaling changes no cosine (but a whole-vector cosine would change)
    scale = torch.tensor([1.0, 10.0, 0.1]).view(1, 3, 1, 1, 1)
    assert gradient_distance([real], [syn * scale], "layerwise").item() == pytest.approx(expected, rel=1e-4)
    assert gradient_distance([real], [syn * scale], "cos").item() != pytest.approx(
        gradient_distance([real], [syn], "cos").item(), rel=1e-3)


def test_layerwise_zero_gradient_is_guarded_by_eps():
    real = torch.ones(2, 3, 4)
    syn = torch.zeros(2, 3, 4)
    d = gradient_distance([real], [syn], "layerwise")
    assert torch.isfinite(d)
    assert d.item() == pytest.approx(6.0)  # 6 rows, each 1 − 0


def test_layerwise_ignores_one_dimensional_gradients_but_mse_does_not():
    torch.manual_seed(2)
    weight_r, weight_s = torch.randn(2, 4, 3), torch.randn(2, 4, 3)
    bias_r, bias_s = torch.randn(2, 4), torch.randn(2, 4)
    base = gradient_distance([weight_r, bias_r], [weight_s, bias_s], "layerwise")
    changed = gradient_distance([weight_r, bias_r], [weight_s, bias_s + 5.0], "layerwise")
    only_weight = gradient_distance([weight_r], [weight_s], "layerwise")
    assert changed.item() == base.item() == only_weight.item()
    assert gradient_distance([bias_r], [bias_s], "layerwise").item() == 0.0
    mse_base = gradient_distance([weight_r, bias_r], [weight_s, bias_s], "mse")
    mse_changed = gradient_distance([weight_r, bias_r], [weight_s, bias_s + 5.0], "mse")
    assert mse_changed.item() > mse_base.item()


def test_mse_hand_computation():
    real = [torch.tensor([[1.0, 2.0], [0.0, 0.0]]), torch.tensor([[[3.0]], [[1.0]]])]   # G = 2
    syn = [torch.tensor([[0.0, 0.0], [0.0, 1.0]]), torch.tensor([[[1.0]], [[1.0]]])]
    # class 0: 1 + 4 + (3 − 1)² = 9; class 1: 1 + 0 = 1
    assert gradient_distance(real, syn, "mse").item() == pytest.approx(10.0)


def test_cos_hand_computation_concatenates_parameters_per_class():
    real = [torch.tensor([[1.0, 0.0], [0.0, 3.0]]), torch.tensor([[[0.0]], [[4.0]]])]
    syn = [torch.tensor([[1.0, 1.0], [0.0, 3.0]]), torch.tensor([[[0.0]], [[4.0]]])]
    # class 0: (1, 0, 0) vs (1, 1, 0) → 1 − 1/(√2 + eps); class 1: identical (0, 3, 4) → 1 − 25/(25 + eps)
    expected = (1 - 1 / (math.sqrt(2) + EPS)) + (1 - 25 / (25 + EPS))
    assert gradient_distance(real, syn, "cos").item() == pytest.approx(expected, rel=1e-6)
    # the 1-D gradients count for cos: changing only them changes the distance
    syn2 = [syn[0], torch.tensor([[[0.0]], [[-4.0]]])]
    assert gradient_distance(real, syn2, "cos").item() > expected + 0.5


def test_gradient_distance_rejects_bad_arguments():
    a = [torch.zeros(1, 2, 3)]
    with pytest.raises(ValueError, match="l2"):
        gradient_distance(a, a, "l2")
    with pytest.raises(ValueError):
        gradient_distance([torch.zeros(1, 2, 3)], [torch.zeros(1, 3, 2)])
    with pytest.raises(ValueError):
        gradient_distance([torch.zeros(1, 2, 3)], [torch.zeros(2, 2, 3)])
    with pytest.raises(ValueError):
        gradient_distance([torch.zeros(1, 2, 3), torch.zeros(1, 2)], [torch.zeros(1, 2, 3)])


# --------------------------------------------------------------------------- loop_schedule
@pytest.mark.parametrize("ipc, expected", [(1, (1, 1)), (10, (10, 50)), (20, (20, 25)), (30, (30, 20)),
                                           (40, (40, 15)), (50, (50, 10))])
def test_loop_schedule_reference_values(ipc, expected):
    assert loop_schedule(ipc) == expected


@pytest.mark.parametrize("ipc, expected", [
    (2, (2, 50)), (5, (5, 50)),        # 2 ≤ ipc ≤ 10: inner 50
    (12, (12, 45)),                    # 50 + (25 − 50)·2/10
    (15, (15, 38)),                    # 37.5 rounds to 38
    (16, (16, 35)),                    # 50 − 25·0.6
    (22, (22, 24)),                    # 25 − 5·0.2
    (32, (32, 19)), (36, (36, 17)),    # 20 − 5·0.2, 20 − 5·0.6
    (42, (42, 14)), (48, (48, 11)),    # 15 − 5·0.2, 15 − 5·0.8
    (51, (50, 10)), (100, (50, 10)),   # above 50: outer capped at 50, inner 10
])
def test_loop_schedule_between_and_beyond_reference_points(ipc, expected):
    assert loop_schedule(ipc) == expected


def test_loop_schedule_inner_never_increases():
    inner = [loop_schedule(i)[1] for i in range(2, 61)]
    assert all(a >= b for a, b in zip(inner, inner[1:]))
    assert [loop_schedule(i)[0] for i in (2, 49, 50, 51)] == [2, 49, 50, 50]


@pytest.mark.parametrize("ipc", [0, -3])
def test_loop_schedule_rejects_ipc_below_one(ipc):
    with pytest.raises(ConfigError, match="ipc"):
        loop_schedule(ipc)


def test_dc_loops_from_config_or_schedule(data):
    assert make_distiller("dc", data, ipc=2).loops == (2, 50)
    assert make_distiller("dc", data, ipc=1).loops == (1, 1)
    assert make_distiller("dc", data, ipc=2, outer_loop=3).loops == (3, 50)
    assert make_distiller("dc", data, ipc=20, inner_loop=4).loops == (20, 4)


@pytest.mark.parametrize("bad, match", [({"distance": "l1"}, "distance"), ({"outer_loop": -1}, "outer_loop"),
                                        ({"inner_loop": -1}, "inner_loop"), ({"chunk": -1}, "chunk"),
                                        ({"lr_net": 0}, "lr_net"), ({"batch_train": 0}, "batch_train")])
def test_dc_config_validation(bad, match):
    with pytest.raises(ConfigError, match=match):
        DCConfig(**bad)


def test_dc_config_defaults_are_the_papers():
    cfg = DCConfig()
    assert (cfg.lr_img, cfg.momentum_img, cfg.batch_real, cfg.lr_net) == (0.1, 0.5, 256, 0.01)
    assert cfg.distance == "layerwise"


# --------------------------------------------------------------------------- class_gradients
def _tiny_net(seed=0, **kw):
    torch.manual_seed(seed)
    return build_model("convnet", 1, 3, (8, 8), width=4, **kw)


def _manual_class_gradients(net, images, labels, create_graph=False):
    out = []
    for c in range(images.shape[0]):
        loss = F.cross_entropy(net(images[c]), labels[c])
        out.append(torch.autograd.grad(loss, list(net.parameters()), create_graph=create_graph))
    return [torch.stack(ts) for ts in zip(*out)]


@pytest.fixture
def grad_inputs():
    net = _tiny_net()
    gen = torch.Generator().manual_seed(3)
    images = torch.randn(3, 2, 1, 8, 8, generator=gen)
    labels = torch.tensor([[0, 0], [1, 2], [2, 1]])  # not necessarily the group's class
    return net, images, labels


def test_class_gradients_batched_loop_and_manual_agree(grad_inputs):
    net, images, labels = grad_inputs
    manual = _manual_class_gradients(net, images, labels)
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
    gradient_distance(g_real, _manual_class_gradients(net, syn, labels, create_graph=True), distance).backward()
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


# --------------------------------------------------------------------------- the DC step
def test_dc_step_is_one_sgd_update_on_the_gradient_distance(data):
    """outer_loop 1: the step equals a hand-built update: fresh network, real batch, layerwise
    distance, images ← images − lr·∇ (first SGD step with momentum); loss = distance / classes."""
    d = make_distiller("dc", data, ipc=2, outer_loop=1, inner_loop=1, seed=5)
    d.initialise("noise")
    torch.manual_seed(7)
    gen_state, rng_state = d.generator.get_state(), torch.get_rng_state()
    images0 = d.images.detach().clone()
    metrics = d.step()

    d.generator.set_state(gen_state)
    torch.set_rng_state(rng_state)
    net, _ = d.fresh_network()
    real = d.sample_real(4)
    assert real.shape == (3, 4, 1, 28, 28)
    g_real = _manual_class_gradients(net, real, torch.arange(3).view(3, 1).expand(3, 4))
    syn = images0.clone().requires_grad_(True)
    g_syn = _manual_class_gradients(net, syn.view(3, 2, 1, 28, 28), d.labels.view(3, 2), create_graph=True)
    dist = gradient_distance(g_real, g_syn, "layerwise")
    dist.backward()
    assert metrics["loss"] == pytest.approx(dist.item() / 3, rel=1e-4)
    assert torch.allclose(d.images.detach(), images0 - 0.1 * syn.grad, rtol=1e-4, atol=1e-6)


def test_dc_trains_the_network_between_updates_but_not_after_the_last(data, monkeypatch):
    d = make_distiller("dc", data, ipc=2, outer_loop=3, inner_loop=2)
    d.initialise("real")
    calls, losses = [], []
    monkeypatch.setattr(d, "train_network", lambda net, opt, epochs: calls.append(epochs))
    real_matching = d.matching_loss

    def recording(net):
        loss = real_matching(net)
        losses.append(loss.item())
        return loss

    monkeypatch.setattr(d, "matching_loss", recording)
    torch.manual_seed(0)
    metrics = d.step()
    assert calls == [2, 2]
    assert len(losses) == 3
    assert metrics["loss"] == pytest.approx(sum(losses) / (3 * 3), rel=1e-6)


@pytest.mark.parametrize("method", ["dc", "dsa"])
def test_dc_layouts_give_the_same_step(data, method):
    """batched or looped, real side chunked or looped: same loss and images."""
    runs = []
    for kw in ({"batched": True}, {"batched": False}, {"batched": True, "chunk": 2}):
        d = make_distiller(method, data, ipc=2, dsa=DSA_ON, seed=2, **FAST_DC, **kw)
        d.initialise("real")
        torch.manual_seed(3)
        loss = d.step()["loss"]
        runs.append((loss, d.images.detach().clone()))
    (l0, i0), *rest = runs
    for loss, images in rest:
        assert loss == pytest.approx(l0, rel=1e-4)
        assert torch.allclose(images, i0, rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("distance", ["mse", "cos"])
def test_dc_other_distances_run_and_differ(data, distance):
    out = {}
    for dist in ("layerwise", distance):
        d = make_distiller("dc", data, ipc=1, seed=1, distance=dist)
        d.initialise("real")
        torch.manual_seed(0)
        out[dist] = (d.step()["loss"], d.images.detach().clone())
    assert math.isfinite(out[distance][0])
    assert not torch.equal(out[distance][1], out["layerwise"][1])


# --------------------------------------------------------------------------- runs through the API
def _cfg(**kw):
    base = {"method": "dc", "ipc": 2, "iterations": 2, "batch_real": 4, "model": TINY_MODEL, "num_eval": 0,
            "device": "cpu", "seed": 1, "method_args": dict(FAST_DC)}
    return build_config(None, {**base, **kw})


@pytest.mark.parametrize("ipc", [1, 2])
def test_dc_short_run_through_api(data, ipc):
    res = distill(_cfg(ipc=ipc, method_args=FAST_DC if ipc > 1 else {}), dataset=data)
    assert res.iterations_run == 2
    assert [it for it, _ in res.loss_history] == [1, 2]
    assert all(math.isfinite(loss) and loss >= 0 for _, loss in res.loss_history)
    syn, init = res.synthetic_set, res.initial_set
    assert syn.images.shape == (3 * ipc, 1, 28, 28)
    assert not torch.equal(syn.images, init.images)
    assert torch.isfinite(syn.images).all()
    assert syn.labels.tolist() == [c for c in range(3) for _ in range(ipc)]
    m = res.metrics()
    assert m["iterations"] == 2 and m["iterations_requested"] == 2
    assert syn.metadata["config"]["method_args"]["lr_img"] == 0.1  # DC's default, not DM's 1.0


def test_dc_ignores_dsa_strategy_and_dsa_uses_it(data):
    dc_on = distill(_cfg(dsa_strategy=DSA_ON), dataset=data).synthetic_set.images
    dc_off = distill(_cfg(dsa_strategy="none"), dataset=data).synthetic_set.images
    dsa_on = distill(_cfg(method="dsa", dsa_strategy=DSA_ON), dataset=data).synthetic_set.images
    dsa_off = distill(_cfg(method="dsa", dsa_strategy="none"), dataset=data).synthetic_set.images
    assert torch.equal(dc_on, dc_off)          # DC never augments
    assert not torch.equal(dsa_on, dc_on)      # DSA does, given the same seed
    assert torch.equal(dsa_off, dc_on)         # and the augmentation is the only difference
    assert METHODS.get("dsa").uses_dsa and not METHODS.get("dc").uses_dsa


def test_dsa_distiller_keeps_strategy_and_dc_drops_it(data):
    assert make_distiller("dsa", data, dsa=DSA_ON).dsa.enabled
    assert not make_distiller("dc", data, dsa=DSA_ON).dsa.enabled


def test_dc_runs_on_batchnorm_model(data, tiny_bn_model, monkeypatch):
    import datadistill.methods.dc as dc_mod

    frozen = []
    real_freeze = dc_mod.freeze_batchnorm

    def spy(net, real):
        frozen.append(real.shape)
        real_freeze(net, real)
        bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
        assert bns and not any(m.training for m in bns)

    monkeypatch.setattr(dc_mod, "freeze_batchnorm", spy)
    d = make_distiller("dc", data, ipc=2, model=tiny_bn_model, **FAST_DC)
    d.initialise("real")
    before = d.images.detach().clone()
    torch.manual_seed(0)
    metrics = d.step()
    assert math.isfinite(metrics["loss"]) and metrics["loss"] >= 0
    assert not torch.equal(before, d.images.detach())
    assert frozen == [(3 * 16, 1, 28, 28)] * 2  # 16 real images per class, once per update


def _roundtrip(state):
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


@pytest.mark.parametrize("method, model", [("dc", TINY_BN), ("dsa", TINY_MODEL)])
def test_dc_resume_is_bit_identical(data, tiny_bn_model, method, model):
    kw = dict(ipc=2, model=model, dsa=DSA_ON, momentum_img=0.9, **FAST_DC)
    d = make_distiller(method, data, seed=3, **kw)
    d.initialise("real")
    torch.manual_seed(1)
    d.fit(1)
    state = _roundtrip(d.state_dict())
    torch.manual_seed(42)
    d.fit(2)
    expected = d.images.detach().clone()

    resumed = make_distiller(method, data, seed=77, **kw)
    resumed.load_state_dict(state)
    torch.manual_seed(42)
    resumed.fit(2)
    assert resumed.iteration == 3
    assert torch.equal(resumed.images.detach(), expected)
