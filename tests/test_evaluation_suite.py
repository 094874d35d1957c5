"""Cross-architecture evaluation (``evaluation/suite.py``), the whole-data baseline (``baseline.py``) and
the training cost in FLOPs (``cost.py``), through the library; the commands around them are in
test_evaluation_suite_cli.py."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
from torch import nn

from datadistill.errors import ConfigError, UnknownNameError
from datadistill.evaluation import EvalResult, EvalSettings, accuracy, evaluate_synthetic_set
import datadistill.training.recipe as recipe_mod
from datadistill.evaluation.baseline import BaselineSettings, train_whole_data
from datadistill.evaluation.cost import forward_flops, training_flops_per_image
from datadistill.evaluation.suite import CrossArchResult, evaluate_architectures
from datadistill.io import SyntheticSet
from datadistill.models import build_model, default_eval_lr
from helpers import TINY_MODEL

CPU = torch.device("cpu")


# =========================================================================== cost.py
def test_forward_flops_of_a_linear_layer():
    net = nn.Sequential(nn.Flatten(), nn.Linear(4 * 4, 3))
    assert forward_flops(net, (1, 4, 4)) == 2 * 16 * 3  # 96: one multiply-add = 2 FLOPs, per image


def test_forward_flops_of_a_conv_layer():
    cin, cout, k, h = 2, 4, 3, 6
    net = nn.Sequential(nn.Conv2d(cin, cout, k), nn.ReLU(), nn.Flatten())
    hout = h - k + 1
    assert forward_flops(net, (cin, h, h)) == 2 * cin * cout * k * k * hout * hout  # 2304
    strided = nn.Sequential(nn.Conv2d(cin, cout, k, stride=2, padding=1))
    hout = (7 + 2 - k) // 2 + 1  # 4
    assert forward_flops(strided, (cin, 7, 7)) == 2 * cin * cout * k * k * hout * hout


def test_training_flops_of_a_linear_layer():
    """Forward plus the weight gradient; no input gradient (the images do not require grad)."""
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    assert training_flops_per_image(net, (1, 4, 4)) == 2 * 16 * 3 + 2 * 16 * 3  # 192


def test_training_flops_of_two_linear_layers():
    """Layer 2 needs the weight gradient and the input gradient, layer 1 only the weight gradient."""
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3))
    fwd = 2 * 16 * 8 + 2 * 8 * 3
    assert forward_flops(net, (1, 4, 4)) == fwd
    assert training_flops_per_image(net, (1, 4, 4)) == fwd + (2 * 8 * 3 + 2 * 8 * 3) + 2 * 16 * 8


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_counting_leaves_the_network_untouched(mode):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 3))
    net.train(mode == "train")
    before = copy.deepcopy(net.state_dict())
    assert forward_flops(net, (1, 6, 6)) > 0
    assert training_flops_per_image(net, (1, 6, 6)) > forward_flops(net, (1, 6, 6))
    after = net.state_dict()
    assert before.keys() == after.keys()
    for key in before:  # parameters and BatchNorm running statistics
        assert torch.equal(before[key], after[key]), key
    assert all(p.grad is None for p in net.parameters())
    assert all(m.training == (mode == "train") for m in net.modules())


# =========================================================================== suite.py: CrossArchResult
def _result(model, accs, train_seconds, epochs=5, curves=()):
    return EvalResult(model, list(accs), [100.0] * len(accs), seconds=train_seconds + 1.0, curves=list(curves),
                      lr=0.01, vectorised=True, train_seconds=train_seconds, epochs=epochs)


def _baseline(model, accuracy=95.0, seconds=30.0, flops=6000, curve=None, dataset="mnist"):
    return {"dataset": dataset, "model": model, "epochs": 3, "accuracy": accuracy, "train_seconds": seconds,
            "train_flops": flops, "curve": curve or {}}


def test_cost_rows_from_hand_made_results():
    res = CrossArchResult(
        [_result("convnet", [40.0, 60.0], train_seconds=4.0), _result("mlp", [10.0, 20.0, 30.0], train_seconds=9.0)],
        forward_flops={"convnet": 7, "mlp": 3}, train_flops={"convnet": 200, "mlp": 50},
        baselines={"convnet": _baseline("convnet"), "lenet": _baseline("lenet")}, metadata={"dataset": "mnist"})
    rows = res.rows()
    assert [r["model"] for r in rows] == ["convnet", "mlp"]
    assert rows[0]["seconds_per_network"] == 2.0 and rows[1]["seconds_per_network"] == 3.0
    assert rows[0]["forward_flops"] == 7 and rows[1]["train_flops"] == 50
    cost = res.cost()
    assert len(cost) == 1  # mlp has no baseline; lenet's baseline has no result
    c = cost[0]
    assert c["model"] == "convnet"
    assert c["synthetic_accuracy"] == 50.0 and c["synthetic_accuracy_std"] == 10.0
    assert c["baseline_accuracy"] == 95.0 and c["accuracy_gap"] == 45.0
    assert c["synthetic_seconds"] == 2.0 and c["baseline_seconds"] == 30.0
    assert c["time_speedup"] == 15.0  # 30 s ÷ (4 s / 2 networks)
    assert c["synthetic_flops"] == 200 and c["baseline_flops"] == 6000
    assert c["flops_ratio"] == 30.0  # 6000 ÷ 200
    assert c["baseline_epochs"] == 3 and c["synthetic_epochs"] == 5


def test_cost_without_time_or_flops_gives_none():
    res = CrossArchResult([_result("convnet", [50.0], train_seconds=0.0)], train_flops={"convnet": 0},
                          baselines={"convnet": _baseline("convnet")})
    (c,) = res.cost()
    assert c["time_speedup"] is None and c["flops_ratio"] is None


def test_as_dict_holds_rows_baseline_and_cost():
    one = CrossArchResult([_result("convnet", [50.0], 1.0)], train_flops={"convnet": 100},
                          baselines={"convnet": _baseline("convnet")}, metadata={"dataset": "mnist", "ipc": 1})
    d = one.as_dict()
    assert d["dataset"] == "mnist" and d["ipc"] == 1
    assert d["rows"] == one.rows() and d["cost"] == one.cost() and len(d["cost"]) == 1
    assert d["baseline"] == _baseline("convnet") and d["baselines"] == {"convnet": _baseline("convnet")}
    two = CrossArchResult([_result("convnet", [50.0], 1.0)],
                          baselines={"convnet": _baseline("convnet"), "mlp": _baseline("mlp")})
    assert two.as_dict()["baseline"] is None and set(two.as_dict()["baselines"]) == {"convnet", "mlp"}
    none = CrossArchResult([_result("convnet", [50.0], 1.0)]).as_dict()
    assert none["baseline"] is None and none["cost"] == [] and none["baselines"] == {}


def _curve(epochs, acc):
    return {"epochs": list(epochs), "train_accuracy": [acc] * len(epochs), "test_accuracy": [acc] * len(epochs),
            "seconds": [0.5 * e for e in epochs]}


def test_curves_pick_the_first_model_with_curves_and_its_baseline():
    base_curve = _curve([1, 2, 3], 90.0)
    res = CrossArchResult(
        [_result("convnet", [50.0], 1.0), _result("mlp", [40.0, 45.0], 1.0, curves=[_curve([2, 4], 40.0),
                                                                                        _curve([2, 4], 45.0)]),
         _result("lenet", [30.0], 1.0, curves=[_curve([1], 30.0)])],
        baselines={"mlp": _baseline("mlp", curve=base_curve), "lenet": _baseline("lenet", curve=_curve([9], 1.0))})
    c = res.curves()
    assert c["synthetic"]["model"] == "mlp" and c["synthetic"]["epochs"] == [2, 4]
    assert [r["test_accuracy"] for r in c["synthetic"]["runs"]] == [[40.0, 40.0], [45.0, 45.0]]
    assert list(c["models"]) == ["mlp", "lenet"]
    assert c["models"]["lenet"]["epochs"] == [1]
    assert c["whole_data"] == {"model": "mlp", "epochs": [1, 2, 3], "runs": [
        {"train_accuracy": [90.0] * 3, "test_accuracy": [90.0] * 3, "seconds": [0.5, 1.0, 1.5]}]}
    no_base = CrossArchResult([_result("mlp", [40.0], 1.0, curves=[_curve([1], 40.0)])],
                              baselines={"mlp": _baseline("mlp")})  # baseline without curve
    assert no_base.curves()["whole_data"] is None
    assert CrossArchResult([_result("mlp", [40.0], 1.0)]).curves() is None


# =========================================================================== suite.py: evaluate_architectures
def _syn(dataset="tiny"):
    gen = torch.Generator().manual_seed(0)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    return SyntheticSet(torch.randn(6, 1, 28, 28, generator=gen), labels,
                        metadata={"num_classes": 3, "dataset": dataset, "method": "dm", "ipc": 2})


def _settings(**kw):
    return EvalSettings(**{"model": "mlp", "num_eval": 2, "epochs": 2, "batch_size": 4, "dsa_strategy": "none", **kw})


def test_evaluate_architectures(tiny_dataset, tiny_model):
    syn, test = _syn(), tiny_dataset.test
    seen, nets = [], []
    base = {"dataset": "tiny", "model": TINY_MODEL, "accuracy": 90.0, "train_seconds": 5.0, "train_flops": 10**9,
            "epochs": 1}
    res = evaluate_architectures(syn, test, [TINY_MODEL, "convnet_w32", f" {TINY_MODEL} "], _settings(), CPU, seed=3,
                                 baselines=[base], progress=lambda m, k, a: seen.append((m, k, a)),
                                 on_model=lambda m, k, net: nets.append((m, k, accuracy(net, test, CPU))))
    assert [r.model for r in res.results] == [TINY_MODEL, "convnet_w32"]  # order kept, duplicate dropped
    assert [r["model"] for r in res.rows()] == [TINY_MODEL, "convnet_w32"]
    assert all(len(r.accuracies) == 2 and r.epochs == 2 for r in res.results)
    expected = [(r.model, k, a) for r in res.results for k, a in enumerate(r.accuracies)]
    assert seen == expected and nets == expected  # on_model gets the trained network
    # same protocol and seeds as evaluating one architecture on its own
    alone = evaluate_synthetic_set(syn, test, _settings(model=TINY_MODEL), CPU, seed=3)
    assert res.results[0].accuracies == alone.accuracies
    for name in (TINY_MODEL, "convnet_w32"):
        probe = build_model(name, 1, 3, (28, 28))
        assert res.forward_flops[name] == forward_flops(probe, (1, 28, 28)) > 0
        assert res.train_flops[name] == training_flops_per_image(probe, (1, 28, 28)) * 6 * 2
    assert res.forward_flops["convnet_w32"] > res.forward_flops[TINY_MODEL]  # width 32 vs 8
    (c,) = res.cost()
    assert c["model"] == TINY_MODEL and c["flops_ratio"] == 10**9 / res.train_flops[TINY_MODEL]
    assert c["accuracy_gap"] == pytest.approx(90.0 - res.results[0].mean)
    assert res.as_dict()["baseline"] == base
    assert res.metadata["dataset"] == "tiny" and res.metadata["images"] == 6 and res.metadata["num_eval"] == 2


@pytest.mark.parametrize("models", [[], ["", "  "]])
def test_evaluate_architectures_without_models(tiny_dataset, models):
    with pytest.raises(ConfigError, match="models is empty"):
        evaluate_architectures(_syn(), tiny_dataset.test, models, _settings(), CPU)


def test_evaluate_architectures_unknown_model(tiny_dataset):
    with pytest.raises(UnknownNameError, match="nosuchnet"):
        evaluate_architectures(_syn(), tiny_dataset.test, ["mlp", "nosuchnet"], _settings(), CPU)


def test_evaluate_architectures_baseline_of_another_dataset(tiny_dataset):
    other = {"dataset": "mnist", "model": "mlp", "accuracy": 90.0, "train_seconds": 1.0, "train_flops": 1}
    with pytest.raises(ConfigError, match="'mnist'.*'tiny'"):
        evaluate_architectures(_syn(), tiny_dataset.test, ["mlp"], _settings(), CPU, baselines=[other])


# =========================================================================== baseline.py
def test_train_whole_data(tiny_dataset, tiny_model, monkeypatch):
    lrs = []
    real_lr_at = recipe_mod.lr_at
    monkeypatch.setattr(recipe_mod, "lr_at", lambda e, n, lr, schedule: lrs.append(lr) or real_lr_at(e, n, lr, schedule))
    progress = []
    settings = BaselineSettings(model=TINY_MODEL, epochs=2, batch_size=16, seed=1)
    r = train_whole_data(tiny_dataset, settings, CPU, progress=lambda *a: progress.append(a))
    assert r.dataset == "tiny" and r.model == TINY_MODEL and r.epochs == 2 and r.train_images == 60
    assert r.curve["epochs"] == [1, 2]
    assert len(r.curve["test_accuracy"]) == len(r.curve["train_accuracy"]) == len(r.curve["seconds"]) == 2
    assert r.accuracy == r.curve["test_accuracy"][-1]
    assert r.train_accuracy == r.curve["train_accuracy"][-1]
    assert r.curve["seconds"][-1] == r.train_seconds and r.curve["seconds"][0] <= r.train_seconds
    assert all(abs(a * 30 / 100 - round(a * 30 / 100)) < 1e-9 for a in r.curve["test_accuracy"])  # 30 test images
    assert all(abs(a * 60 / 100 - round(a * 60 / 100)) < 1e-9 for a in r.curve["train_accuracy"])  # 60 train images
    assert progress == list(zip(r.curve["epochs"], r.curve["test_accuracy"], r.curve["train_accuracy"]))
    probe = build_model(TINY_MODEL, 1, 3, (28, 28))
    assert r.forward_flops == forward_flops(probe, (1, 28, 28))
    assert r.train_flops == training_flops_per_image(probe, (1, 28, 28)) * 60 * 2
    assert lrs == [0.01, 0.01] and r.settings["lr"] == default_eval_lr(TINY_MODEL) == 0.01
    assert r.as_dict()["settings"]["batch_size"] == 16 and r.as_dict()["curve"] == r.curve
    # Without the curve: the same training (same seed), tested once at the end.
    progress.clear()
    quiet = train_whole_data(tiny_dataset, dataclasses.replace(settings, curve=False), CPU,
                             progress=lambda *a: progress.append(a))
    assert quiet.curve == {} and quiet.accuracy == r.accuracy and quiet.train_accuracy == r.train_accuracy
    assert [(e, t) for e, t, _ in progress] == [(1, None), (2, r.accuracy)]


def test_train_whole_data_explicit_lr(tiny_dataset, tiny_model, monkeypatch):
    lrs = []
    monkeypatch.setattr(recipe_mod, "lr_at", lambda e, n, lr, schedule: lrs.append(lr) or lr)
    r = train_whole_data(tiny_dataset, BaselineSettings(model=TINY_MODEL, epochs=1, lr=0.05, batch_size=32), CPU)
    assert lrs == [0.05] and r.settings["lr"] == 0.05


@pytest.mark.parametrize("kw, match", [({"epochs": 0}, "epochs"), ({"lr": 0.0}, "lr"), ({"lr": -1.0}, "lr"),
                                       ({"batch_size": 0}, "batch_size")])
def test_baseline_settings_validation(kw, match):
    with pytest.raises(ConfigError, match=match):
        BaselineSettings(**kw)


def test_train_whole_data_unknown_model(tiny_dataset):
    with pytest.raises(UnknownNameError, match="nosuchnet"):
        train_whole_data(tiny_dataset, BaselineSettings(model="nosuchnet", epochs=1), CPU)
