"""The API and CLI paths of the trajectory-matching family: DATM end to end (learned lr and soft labels
carried into the evaluation and the saved file), ZCA that must match the experts', the ``experts`` and
``scores`` commands (PAD's curriculum experts from a score file), and an explicit evaluation lr."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import datadistill.evaluation.protocol as protocol
from datadistill.api import distill, evaluate_file, run_distill, run_experts
from datadistill.cli import main
from datadistill.config import DistillConfig
from datadistill.errors import ConfigError
from datadistill.io import load_synthetic_set
from datadistill.preprocess.dataset import whiten_dataset
from datadistill.selection import load_scores
from datadistill.trajectory import ExpertBuffer, train_experts
from helpers import assert_clean_failure
from trajectory_helpers import CPU, epoch_file, expert_settings, files_under, read_epoch


# --------------------------------------------------------------------------- API
def spy_train_network(monkeypatch) -> list[tuple[float, torch.Tensor]]:
    seen = []
    real = protocol.train_network

    def spy(net, images, targets, settings, lr, generator, after_epoch=None):
        seen.append((lr, targets.detach().cpu().clone()))
        return real(net, images, targets, settings, lr, generator, after_epoch)

    monkeypatch.setattr(protocol, "train_network", spy)
    return seen


def test_distill_datm_end_to_end(experts, tiny_dataset, tiny_model, monkeypatch):
    seen = spy_train_network(monkeypatch)
    config = DistillConfig(method="datm", model=tiny_model, ipc=2, iterations=2, num_eval=1, eval_epochs=2,
                           device="cpu",
                           method_args={"experts": str(experts), "syn_steps": 2, "expert_epochs": 1,
                                        "max_start_epoch": 2, "current_max_start_epoch": 1, "lr_teacher": 0.02})
    result = distill(config, dataset=tiny_dataset)
    syn = result.synthetic_set
    assert syn.labels.shape == (6, 3) and syn.labels.dtype == torch.float32 and syn.label_kind == "soft_logits"
    assert syn.hard_labels.shape == (6,)
    assert isinstance(syn.learned_lr, float) and math.isfinite(syn.learned_lr) and syn.learned_lr > 0
    assert result.initial_set.learned_lr == pytest.approx(0.02) and result.initial_set.labels.shape == (6, 3)
    assert result.iterations_run == 2 and len(result.evaluation.accuracies) == 1
    # the evaluation trains with the learned lr (not eval_lr 0.01) on the soft labels
    assert [lr for lr, _ in seen] == [syn.learned_lr] and syn.learned_lr != config.eval_lr
    assert torch.equal(seen[0][1], syn.labels)


def test_run_distill_writes_learned_lr_and_soft_labels(mnist_root, tiny_model, tmp_path, monkeypatch):
    experts_dir = run_experts({"dataset": "mnist", "model": tiny_model, "num_experts": 1, "epochs": 3,
                               "batch_size": 50, "dsa_strategy": "none"}, tmp_path / "experts", device="cpu",
                              data_root=str(mnist_root))
    config = DistillConfig(dataset="mnist", data_root=str(mnist_root), method="datm", model=tiny_model, ipc=1,
                           iterations=2, num_eval=1, eval_epochs=1, device="cpu",
                           method_args={"experts": str(experts_dir), "syn_steps": 2, "expert_epochs": 1,
                                        "max_start_epoch": 2, "current_max_start_epoch": 1, "lr_teacher": 0.03})
    result = run_distill(config, tmp_path / "out")
    syn = load_synthetic_set(tmp_path / "out" / "synthetic.safetensors")
    assert syn.learned_lr is not None and syn.learned_lr == result.synthetic_set.learned_lr
    assert syn.labels.shape == (10, 10) and syn.labels.dtype == torch.float32 and syn.label_kind == "soft_logits"
    assert torch.equal(syn.labels, result.synthetic_set.labels)
    assert torch.equal(syn.images, result.synthetic_set.images)
    assert syn.metadata["method"] == "datm" and syn.metadata["config"]["method_args"]["lr_teacher"] == 0.03
    seen = spy_train_network(monkeypatch)
    evaluate_file(tmp_path / "out" / "synthetic.safetensors", data_root=str(mnist_root), device="cpu",
                  model=tiny_model, num_eval=1, epochs=1)
    assert [lr for lr, _ in seen] == [syn.learned_lr]
    assert torch.equal(seen[0][1], syn.labels)


def mtt_config(model: str, experts_dir: Path, zca_eps: float | None) -> DistillConfig:
    return DistillConfig(method="mtt", model=model, ipc=1, iterations=1, num_eval=0, device="cpu", zca_eps=zca_eps,
                         method_args={"experts": str(experts_dir), "syn_steps": 1, "expert_epochs": 1,
                                      "max_start_epoch": 1})


def test_mtt_zca_must_match_the_experts(experts, tiny_dataset, tiny_model, tmp_path):
    with pytest.raises(ConfigError, match="ZCA"):
        distill(mtt_config(tiny_model, experts, 0.1), dataset=tiny_dataset)
    white, zca = whiten_dataset(tiny_dataset, 0.1)
    zca_experts = train_experts(white, tmp_path / "zca_experts",
                                expert_settings(tiny_model, num_experts=1, epochs=2, zca_eps=0.1), CPU)
    with pytest.raises(ConfigError, match="ZCA"):
        distill(mtt_config(tiny_model, zca_experts, None), dataset=tiny_dataset)
    with pytest.raises(ConfigError, match="ZCA"):
        distill(mtt_config(tiny_model, zca_experts, 0.2), dataset=tiny_dataset)
    manifest = json.loads((zca_experts / "experts.json").read_text())
    assert manifest["preprocessing"]["zca_fitted_on"] == "pixels"
    result = distill(mtt_config(tiny_model, zca_experts, 0.1), dataset=tiny_dataset)
    syn = result.synthetic_set
    assert syn.zca is not None and syn.zca.eps == 0.1
    spec = tiny_dataset.spec  # the set's ZCA is the experts': fitted on the pixels
    assert syn.zca.metadata() == {"eps": 0.1, "normalisation": {"mean": list(spec.mean), "std": list(spec.std)}}
    assert torch.equal(syn.zca.transform, zca.transform)
    # experts of before #21 (ZCA fitted on the normalised images): refused, with what to do
    del manifest["preprocessing"]["zca_fitted_on"]
    (zca_experts / "experts.json").write_text(json.dumps(manifest))
    with pytest.raises(ConfigError, match="fitted on normalised images.*retrain"):
        distill(mtt_config(tiny_model, zca_experts, 0.1), dataset=tiny_dataset)
    assert syn.labels.dtype == torch.int64 and isinstance(syn.learned_lr, float)


# --------------------------------------------------------------------------- CLI
def run_cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def error_line(result, *needles) -> str:
    """Exit status 2, no traceback, exactly one error line naming every needle."""
    assert result.exit_code == 2, result.output
    return assert_clean_failure(result, *needles)


def experts_args(root: Path, out: Path, model: str, *extra) -> list:
    return ["experts", "--data-root", root, "--out", out, "--num-experts", 1, "--model", model, "--batch-size", 64,
            "--device", "cpu", *extra]


def test_cli_experts_writes_the_trajectories(mnist_root, tiny_model, tmp_path):
    out = tmp_path / "experts"
    result = run_cli("-v", *experts_args(mnist_root, out, tiny_model, "--epochs", 1))
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "expert 0 epoch 1" in result.stderr  # -v: a line per epoch
    assert files_under(out) == ["expert_000/epoch_000.safetensors", "expert_000/epoch_001.safetensors",
                                "experts.json"]
    buf = ExpertBuffer.load(out)
    assert buf.num_experts == 1 and buf.epochs == 1
    assert buf.manifest["dataset"] == "mnist" and buf.manifest["model"] == tiny_model


def test_cli_experts_bad_value_exits_2(mnist_root, tiny_model, tmp_path):
    out = tmp_path / "experts"
    error_line(run_cli(*experts_args(mnist_root, out, tiny_model, "--epochs", 0)), "epochs")
    assert not out.exists()


def test_cli_scores_then_curriculum_experts(mnist_root, tiny_model, tmp_path):
    scores_file = tmp_path / "el2n.safetensors"
    result = run_cli("scores", "--data-root", mnist_root, "--score", "el2n", "--epochs", 1, "--num-networks", 1,
                     "--model", tiny_model, "--device", "cpu", "--out", scores_file)
    assert result.exit_code == 0, result.output + repr(result.exception)
    scores = load_scores(scores_file)
    assert scores.score == "el2n" and len(scores.values) == 200 and torch.isfinite(scores.values).all()
    # PAD's experts on that ranking: epoch 0 sees the easiest 75 % of each class (15 of 20, 10 classes)
    out = tmp_path / "pad_experts"
    result = run_cli(*experts_args(mnist_root, out, tiny_model, "--epochs", 1, "--curriculum", scores_file))
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert read_epoch(epoch_file(out, 0, 1))[1]["train_images"] == 150
    manifest = json.loads((out / "experts.json").read_text())
    assert manifest["settings"]["curriculum"]["scores_file"] == str(scores_file)


def test_cli_scores_unknown_score_exits_2(mnist_root, tiny_model, tmp_path):
    out = tmp_path / "bogus.safetensors"
    error_line(run_cli("scores", "--data-root", mnist_root, "--score", "bogus", "--epochs", 1, "--num-networks", 1,
                       "--model", tiny_model, "--device", "cpu", "--out", out), "bogus")
    assert not out.exists()


def test_explicit_eval_lr_replaces_the_learned_lr(monkeypatch):
    """EvalSettings(use_learned_lr=False) trains with settings.lr even when the set learned one."""
    import datadistill.evaluation.protocol as protocol
    from datadistill.data import LabelledImages
    from datadistill.evaluation import EvalSettings, evaluate_synthetic_set
    from datadistill.io import SyntheticSet

    seen = []
    monkeypatch.setattr(protocol, "train_network", lambda net, images, targets, settings, lr, gen, after_epoch=None: seen.append(lr) or net)
    syn = SyntheticSet(torch.randn(4, 1, 28, 28), torch.tensor([0, 0, 1, 1]), 0.05, {"num_classes": 2})
    test = LabelledImages(torch.randn(6, 1, 28, 28), torch.tensor([0, 1, 0, 1, 0, 1]))
    for use, expected in ((True, 0.05), (False, 0.02)):
        settings = EvalSettings(model="convnet_w32", num_eval=1, epochs=1, lr=0.02, dsa_strategy="none",
                                use_learned_lr=use)
        evaluate_synthetic_set(syn, test, settings, torch.device("cpu"))
        assert seen[-1] == pytest.approx(expected)
