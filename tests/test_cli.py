import json
import os

import pytest
import torch
import yaml
from click.testing import CliRunner
from PIL import Image

from datadistill.methods.datadam import DataDAMConfig
from datadistill import __version__
from datadistill.cli import main
from datadistill.data.torchvision_sets import FASHION_MNIST_SPEC
from datadistill.evaluation import EvalResult
from datadistill.io import SyntheticSet, load_synthetic_set, save_synthetic_set
from helpers import assert_clean_failure, write_fake_mnist

# Tiny but real settings: ConvNet-3 (width 128), 10 classes, 1 image per class.
FAST = {"--iterations": "2", "--num-eval": "1", "--eval-epochs": "1", "--ipc": "1", "--batch-real": "4"}


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def distill_args(root, out, **overrides):
    flags = {**FAST, **{k: str(v) for k, v in overrides.items()}}
    args = ["distill", "--data-root", str(root), "--out", str(out), "--quiet"]
    for k, v in flags.items():
        args += [k, v]
    return args


@pytest.fixture(scope="module")
def distilled(fake_mnist_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "out"
    result = run(*distill_args(fake_mnist_root, out))
    return result, out


# --------------------------------------------------------------------------- distill: success
def test_distill_succeeds(distilled):
    result, out = distilled
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "test accuracy" in result.stdout
    assert sorted(os.listdir(out)) == sorted(
        ["synthetic.safetensors", "init.png", "synthetic.png", "metrics.json", "config.yaml", "distill.log"])


def test_distill_metrics(distilled):
    _, out = distilled
    m = json.loads((out / "metrics.json").read_text())
    for key in ("accuracy_mean", "accuracy_std", "accuracies", "distill_seconds", "eval_seconds", "iterations",
                "method", "dataset", "ipc"):
        assert key in m, key
    assert m["method"] == "datadam" and m["dataset"] == "mnist" and m["ipc"] == 1 and m["iterations"] == 2
    assert len(m["accuracies"]) == 1 and 0 <= m["accuracy_mean"] <= 100
    assert m["accuracy_mean"] == pytest.approx(m["accuracies"][0]) and m["accuracy_std"] == 0
    assert m["distill_seconds"] > 0 and m["eval_seconds"] > 0
    assert [it for it, _ in m["loss_history"]] == [1, 2]
    assert m["final_loss"] == m["loss_history"][-1][1]
    assert m["package_version"] == __version__


def test_distill_synthetic_file(distilled):
    _, out = distilled
    syn = load_synthetic_set(out / "synthetic.safetensors")
    assert syn.images.shape == (10, 1, 28, 28)
    assert syn.labels.tolist() == list(range(10))
    assert torch.isfinite(syn.images).all()
    meta = syn.metadata
    assert meta["dataset"] == "mnist" and meta["method"] == "datadam" and meta["ipc"] == 1
    assert meta["iterations"] == 2 and meta["channels"] == 1 and meta["image_size"] == [28, 28]
    assert meta["mean"] == [0.1307] and meta["std"] == [0.3081]
    assert meta["config"]["method_args"]["attention_power"] == DataDAMConfig().attention_power


def test_distill_grids_config_and_log(distilled):
    _, out = distilled
    for name in ("init.png", "synthetic.png"):
        img = Image.open(out / name)
        assert img.format == "PNG"
        assert img.size == (56 + 4, 10 * 58 + 2)  # one row per class, one column (ipc 1), upscale 2
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert cfg["ipc"] == 1 and cfg["iterations"] == 2 and cfg["method"] == "datadam"
    assert cfg["batch_real"] == 4
    assert cfg["method_args"]["batch_real"] == 4
    log = (out / "distill.log").read_text()
    assert log.strip()
    assert "iteration 1 loss" in log and "iteration 2 loss" in log
    assert "accuracy" in log


def test_distill_default_out_folder_and_no_eval(fake_mnist_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run(*distill_args(fake_mnist_root, "unused")[:3], "--quiet", "--method", "dm", "--iterations", "1",
                 "--num-eval", "0", "--ipc", "1", "--batch-real", "2", "--data-root", fake_mnist_root)
    assert result.exit_code == 0, result.output + repr(result.exception)
    out = tmp_path / "runs" / "mnist_dm_ipc1"
    assert (out / "synthetic.safetensors").is_file()
    m = json.loads((out / "metrics.json").read_text())
    assert m["method"] == "dm" and "accuracy_mean" not in m
    assert "test accuracy" not in result.stdout


def test_distill_config_file_and_method_args(fake_mnist_root, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("method: dm\nipc: 1\niterations: 1\nnum_eval: 0\nbatch_real: 2\nmethod_args:\n  chunk: 3\n")
    out = tmp_path / "out"
    result = run("distill", "--config", cfg, "--data-root", fake_mnist_root, "--out", out, "--quiet",
                 "--method-arg", "batched=false", "--seed", "3")
    assert result.exit_code == 0, result.output + repr(result.exception)
    written = yaml.safe_load((out / "config.yaml").read_text())
    assert written["method"] == "dm" and written["seed"] == 3
    assert written["method_args"]["chunk"] == 3 and written["method_args"]["batched"] is False


# --------------------------------------------------------------------------- evaluate
def test_evaluate_json(distilled, fake_mnist_root):
    _, out = distilled
    result = run("evaluate", out / "synthetic.safetensors", "--data-root", fake_mnist_root, "--num-eval", "1",
                 "--eval-epochs", "1", "--json")
    assert result.exit_code == 0, result.output + repr(result.exception)
    d = json.loads(result.stdout)
    assert [r["model"] for r in d["rows"]] == ["convnet"]
    r = d["rows"][0]
    assert len(r["accuracies"]) == 1 and 0 <= r["accuracy_mean"] <= 100 and r["accuracy_std"] == 0
    assert r["accuracy_mean"] == pytest.approx(r["accuracies"][0])
    assert "eval_seconds" in r and "train_accuracies" in r
    assert r["forward_flops"] > 0 and r["train_flops"] == pytest.approx(r["forward_flops"] * 3 * d["images"], rel=0.1)
    assert d["cost"] == [] and d["dataset"] == "mnist"


def test_evaluate_text(distilled, fake_mnist_root):
    _, out = distilled
    result = run("evaluate", out / "synthetic.safetensors", "--data-root", fake_mnist_root, "--num-eval", "1",
                 "--eval-epochs", "1", "--dsa-strategy", "none")
    assert result.exit_code == 0, result.output + repr(result.exception)
    caption, header, row = result.stdout.splitlines()[:3]
    assert caption == ("protocol ours: 1 networks × 1 epochs, batch 256, lr 0.01 (÷10 at half), SGD momentum 0.9, "
                       "weight decay 5e-4, augmentation none")
    assert header.split()[:3] == ["model", "test", "accuracy"] and row.split()[0] == "convnet"


def _fake_evaluation(monkeypatch):
    captured = {}

    def fake(runs):  # the evaluations of every architecture (evaluation/run.py), trained at once
        captured["settings"] = runs[0].settings
        captured["seed"] = runs[0].seed
        return [EvalResult(r.settings.model, [50.0], [100.0], 0.0, epochs=r.settings.epochs) for r in runs]

    monkeypatch.setattr("datadistill.evaluation.suite.run_evaluations", fake)
    return captured


def _fashion_set(path):
    meta = {"dataset": "fashion_mnist", "channels": 1, "image_size": [28, 28], "num_classes": 10,
            "mean": [0.2861], "std": [0.353], "method": "dm", "ipc": 1}
    save_synthetic_set(SyntheticSet(torch.randn(10, 1, 28, 28), torch.arange(10), metadata=meta), path)


def test_evaluate_defaults_to_the_datasets_dsa_strategy(tmp_path, monkeypatch):
    """`evaluate --dsa-strategy` defaults to the dataset's strategy (Fashion-MNIST: with flip)."""
    write_fake_mnist(tmp_path / "data", n_train=20, n_test=10, folder="FashionMNIST")
    _fashion_set(tmp_path / "f.safetensors")
    captured = _fake_evaluation(monkeypatch)
    result = run("evaluate", tmp_path / "f.safetensors", "--data-root", tmp_path / "data", "--json")
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert captured["settings"].dsa_strategy == FASHION_MNIST_SPEC.dsa_strategy


def test_evaluate_passes_options_through(tmp_path, monkeypatch):
    write_fake_mnist(tmp_path / "data", n_train=20, n_test=10, folder="FashionMNIST")
    _fashion_set(tmp_path / "f.safetensors")
    captured = _fake_evaluation(monkeypatch)
    result = run("evaluate", tmp_path / "f.safetensors", "--data-root", tmp_path / "data", "--dsa-strategy", "none",
                 "--num-eval", "4", "--eval-epochs", "7", "--eval-lr", "0.5", "--eval-batch", "8", "--seed", "9",
                 "--model", "convnet_bn")
    assert result.exit_code == 0, result.output + repr(result.exception)
    s = captured["settings"]
    assert (s.dsa_strategy, s.num_eval, s.epochs, s.lr, s.batch_size, s.model) == ("none", 4, 7, 0.5, 8, "convnet_bn")
    assert captured["seed"] == 9
    assert "50.00" in result.stdout


# --------------------------------------------------------------------------- error paths
@pytest.mark.parametrize("overrides, needles", [
    ({"--dataset": "nosuchset"}, ["nosuchset", "mnist"]),
    ({"--method": "nosuchmethod"}, ["nosuchmethod", "datadam"]),
    ({"--model": "nosuchmodel"}, ["nosuchmodel", "convnet"]),
    ({"--eval-model": "nosuchmodel"}, ["nosuchmodel"]),
    ({"--ipc": "0"}, ["ipc", "0"]),
    ({"--ipc": "10000"}, ["ipc", "10000"]),
    ({"--iterations": "-5"}, ["iterations", "-5"]),
    ({"--iterations": "abc"}, ["iterations", "abc"]),
    ({"--batch-real": "0"}, ["batch_real", "0"]),
    ({"--lr-img": "-1"}, ["lr_img", "-1"]),
    ({"--init": "zeros"}, ["zeros"]),
    ({"--dsa-strategy": "blur"}, ["blur"]),
    ({"--device": "tpu"}, ["tpu"]),
    ({"--method-arg": "nosucharg=1"}, ["nosucharg", "attention_power"]),
    ({"--method-arg": "attention_power=strong"}, ["attention_power", "strong"]),
    ({"--method-arg": "novalue"}, ["novalue"]),
    ({"--config": "missing.yaml"}, ["missing.yaml"]),
])
def test_distill_errors(mnist_root, tmp_path, monkeypatch, overrides, needles):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    before = sorted(os.listdir(tmp_path))
    result = run(*distill_args(mnist_root, out, **overrides))
    assert_clean_failure(result, *needles)
    assert not out.exists()
    assert sorted(os.listdir(tmp_path)) == before  # no runs/ folder, no stray files


def test_distill_bad_yaml_key(mnist_root, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("ipcs: 3\n")
    result = run(*distill_args(mnist_root, tmp_path / "out"), "--config", cfg)
    assert_clean_failure(result, "ipcs")
    assert not (tmp_path / "out").exists()


def test_distill_missing_dataset(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run(*distill_args(empty, tmp_path / "out"))
    line = assert_clean_failure(result, "datadistill data prepare mnist", str(empty))
    assert "not found" in line
    assert not (tmp_path / "out").exists()


def test_distill_failure_keeps_earlier_results(mnist_root, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "metrics.json").write_text("{\"old\": true}\n")
    result = run(*distill_args(mnist_root, out, **{"--ipc": "10000"}))
    assert_clean_failure(result, "10000")
    assert os.listdir(out) == ["metrics.json"]
    assert json.loads((out / "metrics.json").read_text()) == {"old": True}


def test_evaluate_corrupt_file(mnist_root, tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(bytes(range(256)) * 4)
    result = run("evaluate", bad, "--data-root", mnist_root, "--num-eval", "1", "--eval-epochs", "1")
    assert_clean_failure(result, "bad.safetensors")


def test_evaluate_missing_file(mnist_root, tmp_path):
    result = run("evaluate", tmp_path / "nope.safetensors", "--data-root", mnist_root)
    assert_clean_failure(result, "nope.safetensors", "does not exist")


def test_evaluate_missing_dataset(tmp_path):
    _fashion_set(tmp_path / "f.safetensors")
    result = run("evaluate", tmp_path / "f.safetensors", "--data-root", tmp_path / "empty")
    assert_clean_failure(result, "datadistill data prepare fashion_mnist")


def test_evaluate_unknown_model(distilled, fake_mnist_root):
    _, out = distilled
    result = run("evaluate", out / "synthetic.safetensors", "--data-root", fake_mnist_root, "--model", "nosuchmodel")
    assert_clean_failure(result, "nosuchmodel")


# --------------------------------------------------------------------------- list, data prepare, version
def test_list():
    result = run("list")
    assert result.exit_code == 0
    text = result.stdout
    assert "datasets:" in text and "mnist" in text and "fashion_mnist" in text
    assert "convnet" in text
    for method in ("dm", "datadam"):
        assert f"  {method}: " in text
    assert f"attention_power={DataDAMConfig().attention_power}" in text


def test_data_prepare_unknown(tmp_path):
    result = run("data", "prepare", "nosuch", "--data-root", tmp_path)
    assert_clean_failure(result, "nosuch")
    assert os.listdir(tmp_path) == []


def test_data_prepare_fashion_mnist_missing_source(tmp_path):
    result = run("data", "prepare", "fashion_mnist", "--data-root", tmp_path / "root", "--source", tmp_path / "nosrc")
    assert_clean_failure(result, "apt-get")


def test_data_prepare_mnist_already_present(mnist_root):
    result = run("data", "prepare", "mnist", "--data-root", mnist_root)
    assert result.exit_code == 0, result.output
    assert "mnist ready in" in result.stdout and str(mnist_root / "MNIST" / "raw") in result.stdout


def test_version_and_help():
    result = run("--version")
    assert result.exit_code == 0 and __version__ in result.stdout
    result = run("--help")
    assert result.exit_code == 0
    for cmd in ("distill", "evaluate", "data", "list"):
        assert cmd in result.stdout


def test_distill_max_seconds_stops_early(fake_mnist_root, tmp_path):
    out = tmp_path / "out"
    result = run(*distill_args(fake_mnist_root, out, **{"--method": "dm", "--iterations": "1000", "--num-eval": "0",
                                                  "--batch-real": "2", "--max-seconds": "0.001"}))
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "1 iterations" in result.stdout
    m = json.loads((out / "metrics.json").read_text())
    assert m["iterations"] == 1 and m["iterations_requested"] == 1000 and m["max_seconds"] == 0.001
    assert load_synthetic_set(out / "synthetic.safetensors").metadata["iterations"] == 1


def test_distill_unset_lr_uses_method_default(fake_mnist_root, tmp_path):
    """No --lr-img / --batch-real: the run config records them unset, the method its defaults (DM: 1, 256, as
    main_DM.py; the fake MNIST's 20 images per class cap the real batch)."""
    out = tmp_path / "out"
    args = ["distill", "--data-root", str(fake_mnist_root), "--out", str(out), "--quiet", "--method", "dm",
            "--num-eval", "0", "--iterations", "1", "--ipc", "1"]
    result = run(*args)
    assert result.exit_code == 0, result.output + repr(result.exception)
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert cfg["lr_img"] is None and cfg["batch_real"] is None
    assert cfg["method_args"]["lr_img"] == 1.0 and cfg["method_args"]["batch_real"] == 256


# --------------------------------------------------------------------------------- continual
def test_continual_runs_resumes_and_refuses_other_settings(fake_mnist_root, tmp_path):
    out = tmp_path / "cl"
    args = ["continual", "--data-root", fake_mnist_root, "--steps", 5, "--memory-method", "random", "--memory-ipc", 1,
            "--orders", 1, "--model", "lenet", "--num-eval", 1, "--eval-epochs", 1, "--device", "cpu", "--out", out]
    first = run("-v", *args)  # -v: a line per step on stderr
    assert first.exit_code == 0, first.output + repr(first.exception)
    assert "random order 0 step 5/5: 10 classes seen, memory 10 images" in first.stderr
    assert "Last-step verdict: not available" in first.output  # the verdict is printed (no DM or DataDAM memory)
    report = json.loads((out / "continual.json").read_text())
    assert report["complete"] and len(report["methods"]["random"]["orders"][0]["steps"]) == 5
    again = run(*args)
    assert again.exit_code == 0 and "resuming" in again.stderr and "1 of 1" in again.stderr  # shown without -v
    assert json.loads((out / "continual.json").read_text())["methods"] == report["methods"]
    other = run(*args[:-2], "--eval-epochs", 2, "--out", out)
    assert_clean_failure(other, "other settings", "epochs = 1 there, 2 here")
