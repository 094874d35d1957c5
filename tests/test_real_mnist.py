"""Short runs on the real MNIST prepared by scripts/setup.sh (marked slow). They use the width-32
ConvNet-3 (`convnet_w32`): most of a run is the test pass over the 10,000 real test images (and
k-center's embedding of the 60,000 training images), 8x cheaper than with the width-128 ConvNet on
this project's CPU (docs/benchmarks.md §13).

They fail, rather than skip, when MNIST is missing: run `datadistill data prepare mnist` first.
"""

import json

import pytest
from click.testing import CliRunner

from datadistill.cli import main
from datadistill.io import load_synthetic_set


@pytest.mark.slow
@pytest.mark.parametrize("method", ["datadam", "dm"])
def test_short_real_mnist_run_learns_and_beats_chance(tmp_path, method):
    out = tmp_path / "run"
    result = CliRunner().invoke(main, [
        "distill", "--dataset", "mnist", "--method", method, "--model", "convnet_w32", "--ipc", "10", "--iterations", "15",
        "--num-eval", "1", "--eval-epochs", "20", "--seed", "1", "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    # 100 real MNIST images after 20 epochs already reach well above 10 % chance.
    assert metrics["accuracy_mean"] > 70.0
    losses = [loss for _, loss in metrics["loss_history"]]
    assert len(losses) == 15 and all(l > 0 for l in losses)
    syn = load_synthetic_set(out / "synthetic.safetensors")
    assert syn.images.shape == (100, 1, 28, 28)
    assert syn.metadata["method"] == method and syn.metadata["iterations"] == 15
    # The set moved away from its initialisation and is still a normalised image set.
    assert abs(float(syn.images.mean())) < 2.0

    evaluated = CliRunner().invoke(main, ["evaluate", str(out / "synthetic.safetensors"), "--model", "convnet_w32",
                                          "--num-eval", "1",
                                          "--eval-epochs", "20", "--seed", "1", "--json"])
    assert evaluated.exit_code == 0, evaluated.output
    again = json.loads(evaluated.output)
    (row,) = again["rows"]  # one row per architecture: the distillation's convnet_w32 here
    assert row["model"] == "convnet_w32"
    assert row["accuracies"] == pytest.approx(metrics["accuracies"])  # same seed, same protocol


@pytest.mark.slow
def test_short_real_mnist_dc_and_coreset_runs(tmp_path):
    # DC: 2 outer iterations at IPC 1 on real MNIST through the CLI (batch_real small to stay quick).
    out = tmp_path / "dc"
    result = CliRunner().invoke(main, [
        "distill", "--dataset", "mnist", "--method", "dc", "--model", "convnet_w32", "--ipc", "1", "--iterations", "2", "--batch-real", "32",
        "--num-eval", "1", "--eval-epochs", "100", "--seed", "1", "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["iterations"] == 2 and len(metrics["loss_history"]) == 2
    # 10 real-initialised images after 100 epochs: far above 10 % chance (misaligned labels would sit near it).
    assert metrics["accuracy_mean"] > 30.0
    syn = load_synthetic_set(out / "synthetic.safetensors")
    assert syn.metadata["method"] == "dc" and syn.metadata["config"]["method_args"]["lr_img"] == 0.1

    # k-center coreset from a random feature network: 0 iterations, real images, and a sane accuracy.
    out = tmp_path / "kc"
    result = CliRunner().invoke(main, [
        "distill", "--dataset", "mnist", "--method", "k_center", "--model", "convnet_w32", "--ipc", "1", "--method-arg", "feature_epochs=0",
        "--num-eval", "1", "--eval-epochs", "100", "--seed", "1", "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["iterations"] == 0 and metrics["init"] == "k_center"
    assert metrics["accuracy_mean"] > 20.0
