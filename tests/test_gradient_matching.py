"""The DC / DSA distillers: the loop schedule and the config, the DC step (checked against a hand-built
update), layouts and distances, and short runs through the API (DSA's augmentation, a BatchNorm model,
a bit-identical resume). The distance and the per-class gradients are in test_gradient_distance.py and
test_class_gradients.py."""

import io
import math

import pytest
import torch
from torch import nn

from datadistill.api import distill
from datadistill.config import build_config
from datadistill.errors import ConfigError
from datadistill.methods import METHODS
from datadistill.methods.dc import DCConfig, loop_schedule
from datadistill.methods.losses import gradient_distance
from datadistill.models import MODELS, ConvNet
from helpers import DSA_ON, TINY_MODEL, make_distiller, manual_class_gradients

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
    g_real = manual_class_gradients(net, real, torch.arange(3).view(3, 1).expand(3, 4))
    syn = images0.clone().requires_grad_(True)
    g_syn = manual_class_gradients(net, syn.view(3, 2, 1, 28, 28), d.labels.view(3, 2), create_graph=True)
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
