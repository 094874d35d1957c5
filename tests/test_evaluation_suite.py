"""Cross-architecture evaluation, whole-data baseline, training cost (FLOPs), and the CLI around them
(evaluate --models/--baseline/--save-models/--out/--curve-every, baseline, test-model, import, report)."""

from __future__ import annotations

import copy
import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from datadistill.cli import main
from datadistill.data import LabelledImages
from datadistill.errors import ConfigError, UnknownNameError
from datadistill.evaluation import EvalResult, EvalSettings, accuracy, evaluate_synthetic_set
from datadistill.evaluation import baseline as baseline_mod
from datadistill.evaluation.baseline import BaselineSettings, train_whole_data
from datadistill.evaluation.cost import forward_flops, training_flops_per_image
from datadistill.evaluation.suite import CrossArchResult, evaluate_architectures
from datadistill.io import SyntheticSet, load_synthetic_set
from datadistill.models import build_model, default_eval_lr
from helpers import TINY_MODEL, assert_clean_failure, write_fake_mnist

CPU = torch.device("cpu")


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def ok(result):
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result


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
    real_lr_at = baseline_mod._lr_at
    monkeypatch.setattr(baseline_mod, "_lr_at", lambda e, n, lr: lrs.append(lr) or real_lr_at(e, n, lr))
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
    monkeypatch.setattr(baseline_mod, "_lr_at", lambda e, n, lr: lrs.append(lr) or lr)
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


# =========================================================================== CLI on a fake MNIST
@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    arrays = write_fake_mnist(root)
    return root, arrays


@pytest.fixture(scope="module")
def pipeline(fake, tmp_path_factory):
    """distill (dm, ipc 1, 1 iteration, no evaluation) → baseline → evaluate --out RUN --baseline --save-models."""
    root, _ = fake
    work = tmp_path_factory.mktemp("pipeline")
    run_dir, base_dir, models_dir = work / "run", work / "base", work / "models"
    ok(run("distill", "--data-root", root, "--out", run_dir, "--quiet", "--method", "dm", "--ipc", "1",
           "--iterations", "1", "--num-eval", "0", "--batch-real", "2", "--model", "convnet_w32"))
    baseline = ok(run("baseline", "--data-root", root, "--epochs", "1", "--model", "convnet_w32", "--out", base_dir))
    evaluate = ok(run("evaluate", run_dir / "synthetic.safetensors", "--data-root", root, "--models", "convnet_w32,mlp",
                      "--num-eval", "2", "--eval-epochs", "2", "--baseline", base_dir, "--out", run_dir,
                      "--curve-every", "1", "--save-models", models_dir))
    return {"root": root, "run": run_dir, "base": base_dir, "models": models_dir, "baseline_out": baseline.stdout,
            "evaluate_out": evaluate.stdout}


def test_cli_baseline_json(pipeline, fake):
    b = json.loads((pipeline["base"] / "baseline.json").read_text())
    assert set(b) == {"dataset", "model", "epochs", "accuracy", "train_accuracy", "train_seconds", "forward_flops",
                      "train_flops", "train_images", "settings", "curve", "package_version"}
    assert b["dataset"] == "mnist" and b["model"] == "convnet_w32" and b["epochs"] == 1 and b["train_images"] == 200
    assert b["curve"]["epochs"] == [1] and b["accuracy"] == b["curve"]["test_accuracy"][0]
    assert b["settings"]["lr"] == 0.01 and b["settings"]["dsa_strategy"] == "none"
    probe = build_model("convnet_w32", 1, 10, (28, 28))
    assert b["forward_flops"] == forward_flops(probe, (1, 28, 28))
    assert b["train_flops"] == training_flops_per_image(probe, (1, 28, 28)) * 200 * 1
    assert "epoch 1: train accuracy" in pipeline["baseline_out"]
    assert f"test accuracy {b['accuracy']:.2f} %" in pipeline["baseline_out"]


def test_cli_evaluation_json(pipeline):
    ev = json.loads((pipeline["run"] / "evaluation.json").read_text())
    base = json.loads((pipeline["base"] / "baseline.json").read_text())
    assert ev["dataset"] == "mnist" and ev["images"] == 10 and ev["num_eval"] == 2
    assert ev["file"] == str(pipeline["run"] / "synthetic.safetensors")
    rows = ev["rows"]
    assert [r["model"] for r in rows] == ["convnet_w32", "mlp"]
    for r in rows:
        assert len(r["accuracies"]) == 2 and r["epochs"] == 2 and r["vectorised"] is False  # the CPU default: the sequential loop
        assert r["accuracy_mean"] == pytest.approx(sum(r["accuracies"]) / 2)
        assert all(a in {float(i) for i in range(101)} for a in r["accuracies"])  # 100 test images
        probe = build_model(r["model"], 1, 10, (28, 28))
        assert r["forward_flops"] == forward_flops(probe, (1, 28, 28))
        assert r["train_flops"] == training_flops_per_image(probe, (1, 28, 28)) * 10 * 2
        assert r["seconds_per_network"] == pytest.approx(r["train_seconds"] / 2)
    assert rows[0]["forward_flops"] == base["forward_flops"]  # same architecture as the baseline
    assert ev["baseline"] == base and ev["baselines"] == {"convnet_w32": base}
    (c,) = ev["cost"]
    r = rows[0]
    assert c["model"] == "convnet_w32"
    assert c["accuracy_gap"] == pytest.approx(base["accuracy"] - r["accuracy_mean"])
    assert c["time_speedup"] == pytest.approx(base["train_seconds"] / (r["train_seconds"] / 2))
    assert c["flops_ratio"] == pytest.approx(base["train_flops"] / r["train_flops"])
    assert c["flops_ratio"] == pytest.approx(200 * 1 / (10 * 2))  # same per-image cost: images × epochs
    out = pipeline["evaluate_out"]
    assert out.splitlines()[1].split()[0] == "convnet_w32" and out.splitlines()[2].split()[0] == "mlp"
    assert "convnet_w32 against the whole data" in out and "mlp against" not in out
    assert f"wrote {pipeline['run'] / 'evaluation.json'}" in out


def test_cli_curves(pipeline):
    run_dir = pipeline["run"]
    ev = json.loads((run_dir / "evaluation.json").read_text())
    base = json.loads((pipeline["base"] / "baseline.json").read_text())
    c = json.loads((run_dir / "curves.json").read_text())
    assert c["synthetic"]["model"] == "convnet_w32" and c["synthetic"]["epochs"] == [1, 2]
    assert list(c["models"]) == ["convnet_w32", "mlp"]
    for row in ev["rows"]:
        runs = c["models"][row["model"]]["runs"]
        assert len(runs) == 2 and all(run_["epochs"] == [1, 2] for run_ in runs)
        assert [run_["test_accuracy"][-1] for run_ in runs] == row["accuracies"]  # ends at the final accuracy
        assert [run_["train_accuracy"][-1] for run_ in runs] == row["train_accuracies"]
    assert c["whole_data"]["model"] == "convnet_w32" and c["whole_data"]["epochs"] == [1]
    assert c["whole_data"]["runs"][0]["test_accuracy"] == [base["accuracy"]]
    assert (run_dir / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_saved_models_and_test_model(pipeline, fake):
    _, arrays = fake
    folder = pipeline["models"]
    assert sorted(os.listdir(folder)) == ["convnet_w32_0.safetensors", "convnet_w32_1.safetensors",
                                          "mlp_0.safetensors", "mlp_1.safetensors"]
    rows = {r["model"]: r for r in json.loads((pipeline["run"] / "evaluation.json").read_text())["rows"]}
    counts = np.bincount(arrays["t10k-labels-idx1-ubyte"], minlength=10)
    for model, k in (("convnet_w32", 0), ("mlp", 1)):
        result = ok(run("test-model", folder / f"{model}_{k}.safetensors", "--data-root", pipeline["root"], "--json"))
        d = json.loads(result.stdout)
        assert d["model"] == model and d["dataset"] == "mnist" and d["test_images"] == 100
        assert d["accuracy"] == rows[model]["accuracies"][k]  # same network, same test set
        per_class = [d["per_class_accuracy"][str(i)] for i in range(10)]
        assert sum(a * n for a, n in zip(per_class, counts)) / counts.sum() == pytest.approx(d["accuracy"])
    text = ok(run("test-model", folder / "mlp_0.safetensors", "--data-root", pipeline["root"])).stdout
    assert f"accuracy {rows['mlp']['accuracies'][0]:.2f} %" in text


def test_cli_no_vectorise_gives_the_same_accuracies(pipeline):
    result = ok(run("evaluate", pipeline["run"] / "synthetic.safetensors", "--data-root", pipeline["root"],
                    "--models", "convnet_w32,mlp", "--num-eval", "2", "--eval-epochs", "2", "--no-vectorise", "--json"))
    d = json.loads(result.stdout)
    ev = json.loads((pipeline["run"] / "evaluation.json").read_text())
    assert [r["vectorised"] for r in d["rows"]] == [False, False]
    for seq, vec in zip(d["rows"], ev["rows"]):
        assert seq["model"] == vec["model"]
        assert seq["accuracies"] == pytest.approx(vec["accuracies"], abs=1e-9)
        assert seq["train_accuracies"] == pytest.approx(vec["train_accuracies"], abs=1e-9)
    assert d["cost"] == [] and d["baseline"] is None


def test_cli_report(pipeline):
    result = ok(run("report", pipeline["run"]))
    path = pipeline["run"] / "report.html"
    assert f"wrote {path}" in result.stdout
    html = path.read_text()
    ev = json.loads((pipeline["run"] / "evaluation.json").read_text())
    assert 'class="evaluation"' in html and 'class="cost"' in html and 'class="baseline"' in html
    for r in ev["rows"]:
        assert f"<td>{r['model']}</td>" in html
        assert f"{r['accuracy_mean']:.2f} ± {r['accuracy_std']:.2f}" in html
    assert f"{ev['cost'][0]['accuracy_gap']:.2f}" in html
    assert "synthetic (synthetic.safetensors)" in html
    assert "No curves.json" not in html and "No evaluation.json" not in html


# --------------------------------------------------------------------------- import
class _Hostile:
    """Unpickling this runs os.mkdir(marker)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (str(self.marker),)


def test_cli_import_vico_and_evaluate(fake, tmp_path):
    root, _ = fake
    images = torch.randn(10, 1, 28, 28, generator=torch.Generator().manual_seed(5))
    src = tmp_path / "res_DM_MNIST_ConvNet_1ipc.pt"
    torch.save({"data": [[images, torch.arange(10)]], "accs_all_exps": {}}, src)
    out = tmp_path / "vico.safetensors"
    result = ok(run("import", src, "--dataset", "mnist", "--data-root", root, "--out", out))
    assert "imported 10 images (hard labels)" in result.stdout
    syn = load_synthetic_set(out)
    assert torch.equal(syn.images, images) and syn.labels.tolist() == list(range(10))
    assert syn.metadata["dataset"] == "mnist" and syn.metadata["method"] == "imported:vico" and syn.learned_lr is None
    d = json.loads(ok(run("evaluate", out, "--data-root", root, "--models", "mlp", "--num-eval", "1",
                          "--eval-epochs", "1", "--json")).stdout)
    assert [r["model"] for r in d["rows"]] == ["mlp"] and d["method"] == "imported:vico" and d["images"] == 10
    assert d["rows"][0]["lr"] == 0.01


def test_cli_import_mtt_folder_and_evaluate(fake, tmp_path):
    root, _ = fake
    folder = tmp_path / "mtt_run"
    folder.mkdir()
    images = torch.randn(20, 1, 28, 28, generator=torch.Generator().manual_seed(6))
    torch.save(images, folder / "images_best.pt")
    torch.save(torch.arange(10).repeat(2), folder / "labels_best.pt")
    torch.save(torch.tensor(0.02), folder / "lr_best.pt")
    out = tmp_path / "mtt.safetensors"
    result = ok(run("import", folder, "--dataset", "mnist", "--data-root", root, "--out", out))
    assert "learned lr 0.02" in result.stdout
    syn = load_synthetic_set(out)
    assert torch.equal(syn.images, images) and syn.learned_lr == pytest.approx(0.02)
    assert syn.metadata["ipc"] == 2
    d = json.loads(ok(run("evaluate", out, "--data-root", root, "--models", "mlp", "--num-eval", "1",
                          "--eval-epochs", "1", "--json")).stdout)
    assert d["rows"][0]["lr"] == pytest.approx(0.02)  # trained with the learned lr
    assert d["rows"][0]["train_flops"] == training_flops_per_image(build_model("mlp", 1, 10, (28, 28)),
                                                                   (1, 28, 28)) * 20


def test_cli_import_refuses_pickled_objects(fake, tmp_path):
    root, _ = fake
    marker = tmp_path / "pwned"
    src = tmp_path / "res_evil.pt"
    torch.save({"data": [[_Hostile(marker), torch.arange(10)]], "accs_all_exps": {}}, src)
    out = tmp_path / "evil.safetensors"
    result = run("import", src, "--dataset", "mnist", "--data-root", root, "--out", out)
    assert result.exit_code == 2
    assert_clean_failure(result, "res_evil.pt", "weights_only")
    assert not marker.exists() and not out.exists()


# --------------------------------------------------------------------------- error paths
def _write_baseline(path: Path, dataset: str):
    path.write_text(json.dumps({"dataset": dataset, "model": "convnet_w32", "accuracy": 90.0, "train_seconds": 1.0,
                                "train_flops": 10}))
    return path


@pytest.mark.parametrize("case", ["empty_models", "unknown_model", "missing_baseline", "other_dataset",
                                  "not_a_baseline", "curve_without_out"])
def test_cli_evaluate_errors(case, pipeline, tmp_path):
    out, saved = tmp_path / "out", tmp_path / "saved"
    args = ["evaluate", pipeline["run"] / "synthetic.safetensors", "--data-root", pipeline["root"], "--num-eval", "1",
            "--eval-epochs", "1", "--save-models", saved]
    extra, needles = {
        "empty_models": (["--models", "", "--out", out], ["--models"]),
        "unknown_model": (["--models", "mlp,nosuchnet", "--out", out], ["nosuchnet"]),
        "missing_baseline": (["--models", "mlp", "--baseline", tmp_path / "missing.json", "--out", out],
                             ["missing.json", "does not exist"]),
        "other_dataset": (["--models", "convnet_w32", "--out", out, "--baseline",
                           _write_baseline(tmp_path / "fm.json", "fashion_mnist")], ["fashion_mnist", "'mnist'"]),
        "not_a_baseline": (["--models", "mlp", "--out", out, "--baseline", tmp_path / "junk.json"],
                           ["junk.json", "not a datadistill baseline"]),
        "curve_without_out": (["--models", "mlp", "--curve-every", "1"], ["--curve-every", "--out"]),
    }[case]
    (tmp_path / "junk.json").write_text('{"accuracy": 1}')
    result = run(*args, *extra)
    assert result.exit_code == 2
    assert_clean_failure(result, *needles)
    assert not out.exists() and not saved.exists()


def test_cli_test_model_missing_file(fake, tmp_path):
    result = run("test-model", tmp_path / "missing.safetensors", "--data-root", fake[0])
    assert result.exit_code == 2
    assert_clean_failure(result, "missing.safetensors")


@pytest.mark.parametrize("flags, needles", [(["--epochs", "0"], ["epochs", "0"]),
                                            (["--model", "nosuchnet"], ["nosuchnet", "convnet"]),
                                            (["--dataset", "nosuchset"], ["nosuchset"])])
def test_cli_baseline_errors(fake, tmp_path, flags, needles):
    out = tmp_path / "base"
    result = run("baseline", "--data-root", fake[0], "--out", out, *flags)
    assert result.exit_code == 2
    assert_clean_failure(result, *needles)
    assert not out.exists()
