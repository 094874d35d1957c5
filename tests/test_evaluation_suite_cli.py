"""The commands around cross-architecture evaluation, on a fake MNIST: ``evaluate --models/--baseline/
--save-models/--out/--curve-every``, ``baseline``, ``test-model``, ``report`` and ``import`` (VICO and
MTT files, pickled objects refused), and their clean failures. One module-scoped pipeline (distill →
baseline → evaluate) feeds most tests."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from datadistill.evaluation.cost import forward_flops, training_flops_per_image
from datadistill.io import load_synthetic_set
from datadistill.models import build_model
from helpers import assert_clean_failure, cli_ok, run_cli, write_fake_mnist


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
    cli_ok(run_cli("distill", "--data-root", root, "--out", run_dir, "--quiet", "--method", "dm", "--ipc", "1",
                   "--iterations", "1", "--num-eval", "0", "--batch-real", "2", "--model", "convnet_w32"))
    baseline = cli_ok(run_cli("-v", "baseline", "--data-root", root, "--epochs", "1", "--model", "convnet_w32",
                              "--out", base_dir))
    evaluate = cli_ok(run_cli("evaluate", run_dir / "synthetic.safetensors", "--data-root", root,
                              "--models", "convnet_w32,mlp", "--num-eval", "2", "--eval-epochs", "2",
                              "--baseline", base_dir, "--out", run_dir, "--curve-every", "1", "--save-models", models_dir))
    return {"root": root, "run": run_dir, "base": base_dir, "models": models_dir, "baseline_out": baseline.output,
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
    assert out.splitlines()[0].startswith("protocol ours: 2 networks × 2 epochs, batch 256, lr 0.01")  # both models
    assert out.splitlines()[2].split()[0] == "convnet_w32" and out.splitlines()[3].split()[0] == "mlp"
    assert ev["protocol"] == "ours" and ev["protocol_overrides"] and ev["protocol_source"] is None
    assert all(r["protocol"] == "ours" and r["batch_size"] == 256 for r in rows)
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
        result = cli_ok(run_cli("test-model", folder / f"{model}_{k}.safetensors", "--data-root", pipeline["root"],
                                "--json"))
        d = json.loads(result.stdout)
        assert d["model"] == model and d["dataset"] == "mnist" and d["test_images"] == 100
        assert d["accuracy"] == rows[model]["accuracies"][k]  # same network, same test set
        per_class = [d["per_class_accuracy"][str(i)] for i in range(10)]
        assert sum(a * n for a, n in zip(per_class, counts)) / counts.sum() == pytest.approx(d["accuracy"])
    text = cli_ok(run_cli("test-model", folder / "mlp_0.safetensors", "--data-root", pipeline["root"])).stdout
    assert f"accuracy {rows['mlp']['accuracies'][0]:.2f} %" in text


def test_cli_no_vectorise_gives_the_same_accuracies(pipeline):
    result = cli_ok(run_cli("evaluate", pipeline["run"] / "synthetic.safetensors", "--data-root", pipeline["root"],
                            "--models", "convnet_w32,mlp", "--num-eval", "2", "--eval-epochs", "2", "--no-vectorise",
                            "--json"))
    d = json.loads(result.stdout)
    ev = json.loads((pipeline["run"] / "evaluation.json").read_text())
    assert [r["vectorised"] for r in d["rows"]] == [False, False]
    for seq, vec in zip(d["rows"], ev["rows"]):
        assert seq["model"] == vec["model"]
        assert seq["accuracies"] == pytest.approx(vec["accuracies"], abs=1e-9)
        assert seq["train_accuracies"] == pytest.approx(vec["train_accuracies"], abs=1e-9)
    assert d["cost"] == [] and d["baseline"] is None


def test_cli_report(pipeline):
    result = cli_ok(run_cli("report", pipeline["run"]))
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
    result = cli_ok(run_cli("import", src, "--dataset", "mnist", "--data-root", root, "--out", out))
    assert "imported 10 images (hard labels)" in result.stdout
    syn = load_synthetic_set(out)
    assert torch.equal(syn.images, images) and syn.labels.tolist() == list(range(10))
    assert syn.metadata["dataset"] == "mnist" and syn.metadata["method"] == "imported:vico" and syn.learned_lr is None
    d = json.loads(cli_ok(run_cli("evaluate", out, "--data-root", root, "--models", "mlp", "--num-eval", "1",
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
    result = cli_ok(run_cli("import", folder, "--dataset", "mnist", "--data-root", root, "--out", out))
    assert "learned lr 0.02" in result.stdout
    syn = load_synthetic_set(out)
    assert torch.equal(syn.images, images) and syn.learned_lr == pytest.approx(0.02)
    assert syn.metadata["ipc"] == 2
    d = json.loads(cli_ok(run_cli("evaluate", out, "--data-root", root, "--models", "mlp", "--num-eval", "1",
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
    result = run_cli("import", src, "--dataset", "mnist", "--data-root", root, "--out", out)
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
    result = run_cli(*args, *extra)
    assert result.exit_code == 2
    assert_clean_failure(result, *needles)
    assert not out.exists() and not saved.exists()


def test_cli_test_model_missing_file(fake, tmp_path):
    result = run_cli("test-model", tmp_path / "missing.safetensors", "--data-root", fake[0])
    assert result.exit_code == 2
    assert_clean_failure(result, "missing.safetensors")


@pytest.mark.parametrize("flags, needles", [(["--epochs", "0"], ["epochs", "0"]),
                                            (["--model", "nosuchnet"], ["nosuchnet", "convnet"]),
                                            (["--dataset", "nosuchset"], ["nosuchset"])])
def test_cli_baseline_errors(fake, tmp_path, flags, needles):
    out = tmp_path / "base"
    result = run_cli("baseline", "--data-root", fake[0], "--out", out, *flags)
    assert result.exit_code == 2
    assert_clean_failure(result, *needles)
    assert not out.exists()
