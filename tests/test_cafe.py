"""CAFE: the stopping rule, the loss, the configuration and short runs."""

import math

import pytest
import torch
import torch.nn.functional as F

from datadistill.api import distill
from datadistill.config import build_config
from datadistill.data import DatasetSpec
from datadistill.errors import ConfigError
from datadistill.methods.cafe import CAFEConfig, SpreadStop, cafe_loss, parse_weights
from datadistill.models import MODELS, ConvNet
from helpers import TINY_MODEL, make_distiller, make_tiny_dataset

DSA_ON = "color_crop_cutout_scale_rotate"
FAST = {"window": 2, "max_outer": 3, "max_inner": 2, "watch_batch": 4}


@pytest.fixture
def data(tiny_dataset, tiny_model):
    return tiny_dataset


# --------------------------------------------------------------------------- SpreadStop
def test_spread_stop_below_fires_when_window_full_and_settled():
    stop = SpreadStop(10, 0.04, "below")
    values = [0.50, 0.52, 0.51, 0.53, 0.50, 0.52, 0.51, 0.53, 0.52, 0.51]  # spread 0.03 < 0.04
    fired = [stop.update(v) for v in values]
    assert fired == [False] * 9 + [True]


def test_spread_stop_below_large_jump_blocks_until_it_leaves_the_window():
    stop = SpreadStop(10, 0.04, "below")
    values = [0.5, 0.5, 0.9] + [0.5] * 11
    fired = [stop.update(v) for v in values]
    # the window is full from the 10th value; 0.9 (the 3rd) stays in it up to the 12th, leaves at the 13th
    assert fired == [False] * 12 + [True, True]


def test_spread_stop_window_slides():
    stop = SpreadStop(3, 0.04, "below")
    out = [stop.update(v) for v in (0.1, 0.5, 0.5, 0.5, 0.9, 0.9, 0.9)]
    # windows once full: (0.1,.5,.5) no, (.5,.5,.5) yes, (.5,.5,.9) no, (.5,.9,.9) no, (.9,.9,.9) yes
    assert out == [False, False, False, True, False, False, True]
    assert list(stop.values) == [0.9, 0.9, 0.9]


def test_spread_stop_above_is_symmetric():
    stop = SpreadStop(3, 0.03, "above")
    out = [stop.update(v) for v in (0.5, 0.6, 0.5, 0.5, 0.5, 0.51, 0.55)]
    # windows once full: (.5,.6,.5) spread .1 > .03 yes; (.6,.5,.5) yes; (.5,.5,.5) no; (.5,.5,.51) no;
    # (.5,.51,.55) spread .05 yes
    assert out == [False, False, True, True, False, False, True]


def test_spread_stop_threshold_is_strict_both_ways():
    below, above = SpreadStop(2, 0.25, "below"), SpreadStop(2, 0.25, "above")
    for v in (0.5, 0.25):  # spread exactly 0.25 (exact in binary)
        b, a = below.update(v), above.update(v)
    assert b is False and a is False


def test_spread_stop_window_one():
    below, above = SpreadStop(1, 0.01, "below"), SpreadStop(1, 0.0, "above")
    assert below.update(0.3) is True   # a single value has spread 0
    assert above.update(0.3) is False  # 0 is never above 0


@pytest.mark.parametrize("window, threshold, when", [(0, 0.1, "below"), (-1, 0.1, "above"),
                                                     (3, -0.01, "below"), (3, 0.1, "sideways")])
def test_spread_stop_rejects_bad_arguments(window, threshold, when):
    with pytest.raises(ConfigError):
        SpreadStop(window, threshold, when)


# --------------------------------------------------------------------------- parse_weights
def test_parse_weights():
    assert parse_weights("1,1,0.1,0.1") == (1.0, 1.0, 0.1, 0.1)
    assert parse_weights(" 2 , 0 ") == (2.0, 0.0)
    assert parse_weights("3") == (3.0,)
    assert all(isinstance(w, float) for w in parse_weights("1,2"))


@pytest.mark.parametrize("text", ["", "a,b", "1,,2", "1,-0.5", "1;2"])
def test_parse_weights_rejects(text):
    with pytest.raises(ConfigError, match="layer_weights"):
        parse_weights(text)


# --------------------------------------------------------------------------- cafe_loss
# Two classes, two real and one synthetic image per class; layer 0 = the 2-D embedding, layer 1 = 1-D.
REAL_EMB = torch.tensor([[[1.0, 0.0], [3.0, 0.0]],    # class 0: mean (2, 0)
                         [[0.0, 2.0], [0.0, 0.0]]])   # class 1: mean (0, 1)
SYN_EMB = torch.tensor([[[1.0, 0.0]],                 # centre (1, 0)
                        [[0.0, 1.0]]])                # centre (0, 1)
REAL_L1 = torch.tensor([[[1.0], [3.0]], [[0.0], [4.0]]])   # means 2, 2
SYN_L1 = torch.tensor([[[0.0]], [[2.0]]])                  # means 0, 2
REAL_L2 = torch.tensor([[[0.0, 0.0], [2.0, 2.0]], [[1.0, 1.0], [1.0, 1.0]]])  # means (1,1), (1,1)
SYN_L2 = torch.tensor([[[1.0, 3.0]], [[1.0, 1.0]]])                           # (1,3), (1,1)


def _discrimination():
    # centres are the unit vectors, so each real sample's logits are its own embedding:
    # (1,0)→y0, (3,0)→y0, (0,2)→y1, (0,0)→y1
    return (math.log(1 + math.exp(-1)) + math.log(1 + math.exp(-3)) + math.log(1 + math.exp(-2))
            + math.log(2))


def test_cafe_loss_hand_computation():
    # alignment: 0.5·[(2−1)² + 0 + 0 + 0] + 2·[(2−0)² + (2−2)²] = 0.5 + 8; centre term (embedding) = 1
    expected = 0.5 * 1 + 2.0 * 4 + 1 + 0.1 * _discrimination()
    got = cafe_loss([REAL_EMB, REAL_L1], [SYN_EMB, SYN_L1], (0.5, 2.0), 0.1)
    assert got.item() == pytest.approx(expected, rel=1e-6)
    # without discrimination
    assert cafe_loss([REAL_EMB, REAL_L1], [SYN_EMB, SYN_L1], (0.5, 2.0), 0.0).item() == pytest.approx(9.5)


def test_cafe_loss_discrimination_matches_cross_entropy():
    torch.manual_seed(0)
    real, syn = torch.randn(3, 4, 5), torch.randn(3, 2, 5)
    with_ce = cafe_loss([real], [syn], (0.0,), 1.0)
    without = cafe_loss([real], [syn], (0.0,), 0.0)
    logits = real.reshape(12, 5) @ syn.mean(1).t()
    ce = F.cross_entropy(logits, torch.tensor([0] * 4 + [1] * 4 + [2] * 4), reduction="sum")
    assert (with_ce - without).item() == pytest.approx(ce.item(), rel=1e-5)
    assert without.item() == pytest.approx(((real.mean(1) - syn.mean(1)) ** 2).sum().item(), rel=1e-5)


def test_cafe_loss_reuses_last_weight_for_deeper_layers():
    # layer 2's matching term: class 0 (1,1) vs (1,3) → 4; class 1 → 0
    feats_r, feats_s = [REAL_EMB, REAL_L1, REAL_L2], [SYN_EMB, SYN_L1, SYN_L2]
    expected = 0.5 * 1 + 2.0 * 4 + 2.0 * 4 + 1 + 0.1 * _discrimination()
    assert cafe_loss(feats_r, feats_s, (0.5, 2.0), 0.1).item() == pytest.approx(expected, rel=1e-6)
    assert cafe_loss(feats_r, feats_s, (0.5, 2.0, 2.0), 0.1).item() == pytest.approx(expected, rel=1e-6)
    assert cafe_loss(feats_r, feats_s, (0.5, 2.0, 1.0), 0.1).item() == pytest.approx(expected - 4, rel=1e-6)


def test_cafe_loss_zero_alignment_for_equal_means_and_gradient_to_synthetic():
    syn = SYN_EMB.clone().requires_grad_(True)
    loss = cafe_loss([REAL_EMB], [syn], (1.0,), 0.1)
    loss.backward()
    assert syn.grad is not None and torch.isfinite(syn.grad).all() and syn.grad.abs().sum() > 0
    same = cafe_loss([REAL_EMB], [REAL_EMB.mean(1, keepdim=True)], (1.0,), 0.0)
    assert same.item() == pytest.approx(0.0, abs=1e-7)


# --------------------------------------------------------------------------- CAFEConfig
def test_cafe_config_defaults():
    cfg = CAFEConfig()
    assert parse_weights(cfg.layer_weights) == (1.0, 1.0, 0.1, 0.1)
    assert (cfg.lr_img, cfg.momentum_img, cfg.batch_real) == (0.1, 0.5, 256)
    assert cfg.milestones() == [1200, 1600, 1800]
    assert CAFEConfig(lr_milestones="").milestones() == []
    assert CAFEConfig(lr_milestones="30, 10,20").milestones() == [10, 20, 30]


@pytest.mark.parametrize("bad", [
    {"window": 0}, {"layer_weights": "1,-1"}, {"layer_weights": "x"}, {"outer_threshold": -0.1},
    {"inner_threshold": -1.0}, {"watch_batch": 0}, {"max_outer": 0}, {"max_inner": 0},
    {"discrimination_weight": -0.01}, {"lr_milestones": "10,soon"}, {"lr_milestones": "1.5"},
    {"lr_net": 0.0}, {"batch_train": 0}, {"lr_img": 0.0},
])
def test_cafe_config_rejects(bad):
    with pytest.raises(ConfigError):
        CAFEConfig(**bad)


def test_cafe_config_from_strings():
    cfg = CAFEConfig.from_dict({"window": "3", "outer_threshold": "0.5", "layer_weights": "2,1"})
    assert cfg.window == 3 and cfg.outer_threshold == 0.5
    with pytest.raises(ConfigError, match="window"):
        CAFEConfig.from_dict({"window": "2.5"})


# --------------------------------------------------------------------------- the CAFE step
@pytest.mark.parametrize("method", ["cafe", "cafe_dsa"])
def test_cafe_short_fit_within_caps(data, method):
    d = make_distiller(method, data, ipc=2, dsa=DSA_ON, **FAST)
    d.initialise("noise")
    before = d.images.detach().clone()
    seen = []
    torch.manual_seed(0)
    d.fit(2, [lambda it, m: seen.append(dict(m))])
    assert len(seen) == 2
    for m in seen:
        assert math.isfinite(m["loss"]) and m["loss"] >= 0
        # window 2: the outer rule cannot fire at the first check; each inner loop runs exactly
        # max_inner = 2 epochs (its window fills at the second epoch, the cap ends it there anyway)
        assert m["outer_steps"] in (2.0, 3.0)
        assert m["inner_epochs"] == 2 * (m["outer_steps"] - 1)
    assert not torch.equal(before, d.images.detach())
    assert torch.isfinite(d.images).all()


def _instrument(d, monkeypatch):
    calls = {"train": [], "loss": []}
    monkeypatch.setattr(d, "train_network", lambda net, opt, epochs: calls["train"].append(epochs))
    real_matching = d.matching_loss

    def recording(net):
        loss = real_matching(net)
        calls["loss"].append(loss.item())
        return loss

    monkeypatch.setattr(d, "matching_loss", recording)
    return calls


@pytest.mark.parametrize("cfg, outer, inner", [
    ({"outer_threshold": 2.0, "inner_threshold": 5.0, "window": 2, "max_outer": 5, "max_inner": 3}, 2, 3),
    ({"outer_threshold": 0.0, "window": 2, "max_outer": 3, "max_inner": 2}, 3, 4),  # never settles: cap 3
    ({"outer_threshold": 0.5, "window": 1, "max_outer": 4, "max_inner": 2}, 1, 0),  # window 1: stops at once
    ({"outer_threshold": 0.0, "inner_threshold": 5.0, "window": 1, "max_outer": 2, "max_inner": 3}, 2, 3),
])
def test_cafe_loop_counts(data, monkeypatch, cfg, outer, inner):
    d = make_distiller("cafe", data, ipc=1, watch_batch=4, **cfg)
    d.initialise("real")
    calls = _instrument(d, monkeypatch)
    torch.manual_seed(0)
    m = d.step()
    assert m["outer_steps"] == outer and len(calls["loss"]) == outer
    assert m["inner_epochs"] == inner and calls["train"] == [1] * inner  # one epoch at a time
    assert m["loss"] == pytest.approx(sum(calls["loss"]) / outer, rel=1e-6)


def test_cafe_inner_loop_stops_when_the_spread_rises(data, monkeypatch):
    """The inner rule stops at the first full window whose spread exceeds the threshold."""
    d = make_distiller("cafe", data, ipc=1, window=2, max_outer=2, max_inner=10, outer_threshold=0.0,
                       inner_threshold=0.3)
    d.initialise("real")
    calls = _instrument(d, monkeypatch)
    # accuracy checks: outer #1, then inner epochs, then outer #2 (the last: the cap)
    accuracies = iter([0.5, 0.5, 0.6, 0.95, 0.1, 0.2])
    monkeypatch.setattr(d, "watch_accuracy", lambda net: next(accuracies))
    m = d.step()
    # inner windows: (0.5, 0.6) spread 0.1 no; (0.6, 0.95) 0.35 > 0.3 → stop after 3 epochs
    assert m["inner_epochs"] == 3 and calls["train"] == [1, 1, 1]
    assert m["outer_steps"] == 2


def test_cafe_layer_features_order_and_shapes(data):
    d = make_distiller("cafe", data, ipc=2)
    torch.manual_seed(0)
    net, _ = d.fresh_network()
    images = torch.randn(3, 2, 1, 28, 28)
    feats = d.layer_features(net, images)
    assert len(feats) == 4  # embedding + three blocks
    with torch.no_grad():
        full = net.features(images.flatten(0, 1))
    assert torch.allclose(feats[0], net.embed(images.flatten(0, 1)).view(3, 2, -1))
    for f, act in zip(feats[1:], reversed(full.activations)):  # last block first
        assert f.shape == (3, 2, act[0].numel())
        assert torch.allclose(f, act.reshape(3, 2, -1))


def test_cafe_watch_accuracy_is_a_fraction(data):
    d = make_distiller("cafe", data, ipc=1, watch_batch=5)
    d.initialise("real")
    torch.manual_seed(0)
    net, _ = d.fresh_network()
    acc = d.watch_accuracy(net)
    assert 0.0 <= acc <= 1.0
    assert (acc * 15) == pytest.approx(round(acc * 15))  # 5 images × 3 classes


def test_cafe_lr_milestones_halve_the_lr(data):
    d = make_distiller("cafe", data, ipc=1, lr_img=0.2, lr_milestones="1,3", outer_threshold=2.0, window=1)
    d.initialise("real")
    assert d.current_lr() == pytest.approx(0.2)
    lrs = []
    torch.manual_seed(0)
    for _ in range(4):
        d.fit(1)
        lrs.append(d.optimiser.param_groups[0]["lr"])
    # the lr of the step starting at iteration 0, 1, 2, 3: halved once from 1, twice from 3
    assert lrs == pytest.approx([0.2, 0.1, 0.1, 0.05])
    assert d.current_lr() == pytest.approx(0.05)


def test_cafe_step_size_follows_the_lr(data):
    """Halving the lr halves the first update (momentum buffer starts at the gradient)."""
    deltas = []
    for milestones in ("", "0"):
        d = make_distiller("cafe", data, ipc=1, lr_img=0.2, lr_milestones=milestones, outer_threshold=2.0,
                           window=1, seed=4)
        d.initialise("real")
        before = d.images.detach().clone()
        torch.manual_seed(0)
        d.fit(1)
        deltas.append(d.images.detach() - before)
    assert deltas[0].abs().sum() > 0
    assert torch.allclose(deltas[1], deltas[0] * 0.5, rtol=1e-3, atol=1e-5)  # float32 (x − δ) − x rounding


def test_cafe_ignores_dsa_and_cafe_dsa_uses_it(data):
    assert not make_distiller("cafe", data, dsa=DSA_ON).dsa.enabled
    assert make_distiller("cafe_dsa", data, dsa=DSA_ON).dsa.enabled
    out = {}
    for method in ("cafe", "cafe_dsa"):
        d = make_distiller(method, data, ipc=1, dsa=DSA_ON, seed=2, outer_threshold=2.0, window=1)
        d.initialise("real")
        torch.manual_seed(0)
        d.fit(1)
        out[method] = d.images.detach().clone()
    assert not torch.equal(out["cafe"], out["cafe_dsa"])


# --------------------------------------------------------------------------- other shapes and models
ODD_SPEC = DatasetSpec(name="odd", channels=3, image_size=(12, 12), class_names=("a", "b", "c", "d"),
                       mean=(0.5, 0.5, 0.5), std=(0.2, 0.2, 0.2), dsa_strategy=DSA_ON)


@pytest.mark.parametrize("method", ["cafe", "cafe_dsa"])
def test_cafe_on_three_channels_small_images_four_classes(tiny_model, method):
    data = make_tiny_dataset(per_class=6, test_size=8, spec=ODD_SPEC)
    cfg = build_config(None, {"method": method, "ipc": 2, "iterations": 2, "batch_real": 3, "model": TINY_MODEL,
                              "num_eval": 0, "device": "cpu", "seed": 0, "method_args": FAST})
    res = distill(cfg, dataset=data)
    syn = res.synthetic_set
    assert syn.images.shape == (8, 3, 12, 12)
    assert syn.labels.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert res.iterations_run == 2
    assert all(math.isfinite(loss) for _, loss in res.loss_history)
    assert not torch.equal(syn.images, res.initial_set.images)
    assert syn.metadata["num_classes"] == 4 and syn.metadata["image_size"] == [12, 12]


def test_dc_on_three_channels_small_images_four_classes(tiny_model):
    data = make_tiny_dataset(per_class=6, test_size=8, spec=ODD_SPEC)
    cfg = build_config(None, {"method": "dsa", "ipc": 2, "iterations": 1, "batch_real": 3, "model": TINY_MODEL,
                              "num_eval": 0, "device": "cpu", "seed": 0,
                              "method_args": {"outer_loop": 2, "inner_loop": 1}})
    res = distill(cfg, dataset=data)
    assert res.synthetic_set.images.shape == (8, 3, 12, 12)
    assert math.isfinite(res.loss_history[-1][1])


def test_cafe_runs_on_batchnorm_model(data, monkeypatch):
    def builder(channels, num_classes, image_size, **kwargs):
        return ConvNet(channels, num_classes, image_size, **{"width": 4, "norm": "batchnorm", **kwargs})

    monkeypatch.setitem(MODELS._items, "test_tiny_cafe_bn", builder)
    d = make_distiller("cafe", data, ipc=2, model="test_tiny_cafe_bn", **FAST)
    d.initialise("real")
    before = d.images.detach().clone()
    torch.manual_seed(0)
    d.fit(1)
    assert not torch.equal(before, d.images.detach())
    assert torch.isfinite(d.images).all()
