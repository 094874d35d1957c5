"""Named evaluation protocols (evaluation/paper.py): each method's paper protocol, DC's augmentation
rule, the protocol chosen by `evaluate --protocol` and `distill --eval-protocol`, and what the outputs
record."""

import dataclasses
import json

import pytest
import torch
from click.testing import CliRunner

from datadistill.cli import main
from datadistill.config import DistillConfig
from datadistill.errors import ConfigError
from datadistill.evaluation import EvalResult, EvalSettings
from datadistill.evaluation.paper import PAPER_PROTOCOLS, eval_settings_for, paper_method
from datadistill.io import SyntheticSet, save_synthetic_set
from datadistill.methods import METHODS
from helpers import assert_clean_failure, write_fake_mnist

DSA_MNIST = "color_crop_cutout_scale_rotate"


def settings(protocol, method, dataset="mnist", model="convnet", **overrides):
    return eval_settings_for(protocol, method=method, dataset=dataset, model=model, dsa_strategy=DSA_MNIST,
                             overrides=overrides)


def test_every_method_has_a_paper_protocol():
    assert set(PAPER_PROTOCOLS) == set(METHODS.names())


@pytest.mark.parametrize("method, dataset, model, expected", [
    # method, dataset, eval model -> (K, epochs, batch, lr, learned lr, augmentation)
    ("dc", "mnist", "convnet", (20, 1000, 256, 0.01, False, "dc:crop_scale_rotate")),
    ("dc", "cifar10", "convnet", (20, 300, 256, 0.01, False, "none")),
    ("dc", "fashion_mnist", "convnet", (20, 300, 256, 0.01, False, "none")),  # get_daparam: 'MNIST' only
    ("dc", "cifar10", "convnet_bn", (20, 1000, 256, 0.01, False, "dc:crop_noise")),
    ("cafe", "cifar10", "convnet", (20, 600, 256, 0.01, False, "none")),
    ("cafe", "mnist", "convnet", (20, 1000, 256, 0.01, False, "dc:crop_scale_rotate")),
    ("dsa", "cifar10", "convnet", (20, 1000, 256, 0.01, False, DSA_MNIST)),
    ("cafe_dsa", "mnist", "convnet", (20, 1000, 256, 0.01, False, DSA_MNIST)),
    ("dm", "mnist", "convnet", (5, 1000, 256, 0.01, False, DSA_MNIST)),
    ("datadam", "mnist", "convnet", (10, 1800, 64, 0.01, False, DSA_MNIST)),
    ("mtt", "cifar10", "convnet", (5, 1000, 256, None, True, DSA_MNIST)),
    ("datm", "cifar10", "convnet", (5, 1000, 128, None, True, DSA_MNIST)),
    ("pad", "cifar100", "convnet", (5, 1000, 128, None, True, DSA_MNIST)),
    ("herding", "mnist", "convnet", (20, 1000, 256, 0.01, False, "dc:crop_scale_rotate")),
])
def test_paper_protocol_per_method(method, dataset, model, expected):
    s = settings("paper", method, dataset, model)
    assert (s.num_eval, s.epochs, s.batch_size, s.lr, s.use_learned_lr, s.dsa_strategy) == expected
    assert (s.momentum, s.weight_decay, s.recipe.schedule, s.model) == (0.9, 5e-4, "step_half", model)
    assert s.protocol == f"paper:{method}"


def test_ours_is_the_default_settings_with_the_dsa_strategy():
    assert settings("ours", None) == EvalSettings(model="convnet", dsa_strategy=DSA_MNIST)
    assert settings("ours", "dc").protocol == "ours"
    assert "protocol" not in settings("ours", None).as_dict()  # keys of results recorded before protocols existed
    assert settings("paper", "dm").as_dict()["protocol"] == "paper:dm"


def test_paper_method_names_another_methods_protocol():
    """`paper:METHOD` applies one method's protocol to any set (e.g. an imported one)."""
    assert settings("paper:datm", "imported:mtt") == settings("paper", "datm")
    assert paper_method("paper:dm", None) == "dm"


def test_overrides_replace_single_settings():
    s = settings("paper", "datadam", num_eval=2, epochs=3, dsa_strategy="none")
    assert (s.num_eval, s.epochs, s.batch_size, s.dsa_strategy, s.protocol) == (2, 3, 64, "none", "paper:datadam")


@pytest.mark.parametrize("protocol, method, needles", [
    ("paper", "imported:mtt", ["imported:mtt", "paper:METHOD", "datadam"]),
    ("paper", None, ["None", "paper:METHOD"]),
    ("paper:nosuch", "dm", ["paper:nosuch", "ours, paper"]),
    ("theirs", "dm", ["theirs"]),
])
def test_unknown_protocols_and_methods_are_refused(protocol, method, needles):
    with pytest.raises(ConfigError) as info:
        settings(protocol, method)
    for needle in needles:
        assert needle in str(info.value)


def test_distill_config_eval_protocol():
    assert "eval_protocol" not in DistillConfig().as_dict()  # ours: fingerprints of older runs unchanged
    assert DistillConfig(eval_protocol="paper").as_dict()["eval_protocol"] == "paper"
    assert DistillConfig(eval_protocol="paper", num_eval=0).num_eval == 0  # 0 still skips the evaluation
    with pytest.raises(ConfigError, match="eval_protocol = 'theirs'"):
        DistillConfig(eval_protocol="theirs")
    for field, value in (("num_eval", 5), ("eval_epochs", 10), ("eval_lr", 0.1), ("eval_batch", 64)):
        with pytest.raises(ConfigError, match=f"{field} = .* cannot be combined with eval_protocol = paper"):
            DistillConfig(eval_protocol="paper", **{field: value})


def test_flags_are_refused_with_the_paper_protocol_even_at_their_defaults(tmp_path):
    """--num-eval 3 is the default value, but given as a flag it would be silently replaced by the
    paper's count: refused. A file's own defaults (a run's config.yaml) are accepted."""
    from datadistill.config import build_config

    path = tmp_path / "c.yaml"
    path.write_text("method: dm\neval_protocol: paper\nnum_eval: 3\neval_epochs: 300\n")
    assert build_config(path).eval_protocol == "paper"
    with pytest.raises(ConfigError, match="num_eval = 3 cannot be combined"):
        build_config(path, {"num_eval": 3})
    assert build_config(path, {"num_eval": 0}).num_eval == 0
    assert build_config(path, {"eval_protocol": "ours", "num_eval": 5}).num_eval == 5


# --------------------------------------------------------------------------------------------- CLI
def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _set(path, method):
    meta = {"dataset": "mnist", "channels": 1, "image_size": [28, 28], "num_classes": 10, "mean": [0.1307],
            "std": [0.3081], "method": method, "ipc": 1}
    save_synthetic_set(SyntheticSet(torch.randn(10, 1, 28, 28), torch.arange(10), metadata=meta), path)


@pytest.fixture
def fake_eval(monkeypatch):
    captured = []

    def fake(runs):  # the evaluations of every architecture (evaluation/run.py), trained at once
        out = []
        for r in runs:
            settings = r.settings
            captured.append(settings)
            out.append(EvalResult(settings.model, [50.0], [100.0], 0.0, epochs=settings.epochs,
                                  lr=settings.resolved_lr, protocol=settings.protocol, batch_size=settings.batch_size,
                                  augmentation=settings.dsa_strategy))
        return out

    monkeypatch.setattr("datadistill.evaluation.suite.run_evaluations", fake)
    return captured


def test_evaluate_protocol_paper_uses_the_sets_method(tmp_path, fake_eval):
    write_fake_mnist(tmp_path / "data", n_train=20, n_test=10)
    _set(tmp_path / "s.safetensors", "dc")
    result = run("evaluate", tmp_path / "s.safetensors", "--data-root", tmp_path / "data", "--protocol", "paper",
                 "--models", "convnet,convnet_bn", "--out", tmp_path / "ev")
    assert result.exit_code == 0, result.output + repr(result.exception)
    by_model = {s.model: s for s in fake_eval}
    assert by_model["convnet"].dsa_strategy == "dc:crop_scale_rotate" and by_model["convnet"].num_eval == 20
    assert by_model["convnet_bn"].dsa_strategy == "dc:crop_noise"  # get_daparam's ConvNetBN rule
    lines = result.stdout.splitlines()
    assert lines[0] == ("protocol paper:dc (convnet): 1 networks × 1000 epochs, batch 256, lr 0.01 (÷10 at half), "
                        "SGD momentum 0.9, weight decay 5e-4, augmentation dc:crop_scale_rotate")
    assert lines[1].startswith("protocol paper:dc (convnet_bn):") and lines[2].split()[0] == "model"
    ev = json.loads((tmp_path / "ev" / "evaluation.json").read_text())
    assert ev["protocol"] == "paper:dc" and ev["protocol_overrides"] == []
    assert "VICO-UoE/DatasetCondensation" in ev["protocol_source"]
    assert [(r["protocol"], r["batch_size"], r["augmentation"]) for r in ev["rows"]] == [
        ("paper:dc", 256, "dc:crop_scale_rotate"), ("paper:dc", 256, "dc:crop_noise")]


def test_evaluate_flags_override_the_paper_protocol(tmp_path, fake_eval):
    write_fake_mnist(tmp_path / "data", n_train=20, n_test=10)
    _set(tmp_path / "s.safetensors", "imported:vico")
    result = run("evaluate", tmp_path / "s.safetensors", "--data-root", tmp_path / "data", "--protocol",
                 "paper:datadam", "--num-eval", "2", "--json")
    assert result.exit_code == 0, result.output + repr(result.exception)
    (s,) = fake_eval
    assert (s.num_eval, s.epochs, s.batch_size, s.protocol) == (2, 1800, 64, "paper:datadam")
    assert json.loads(result.stdout)["protocol_overrides"] == ["num_eval"]


def test_evaluate_protocol_paper_refuses_a_set_without_one(tmp_path):
    write_fake_mnist(tmp_path / "data", n_train=20, n_test=10)
    _set(tmp_path / "s.safetensors", "imported:vico")
    result = run("evaluate", tmp_path / "s.safetensors", "--data-root", tmp_path / "data", "--protocol", "paper")
    assert_clean_failure(result, "imported:vico", "paper:METHOD")


def test_evaluate_paper_protocol_trains_with_dcs_augmentation(tmp_path):
    """End to end, no fake: DC's protocol on MNIST trains with DC's augmentation (1 network, 1 epoch)."""
    write_fake_mnist(tmp_path / "data", n_train=20, n_test=10)
    _set(tmp_path / "s.safetensors", "dc")
    result = run("evaluate", tmp_path / "s.safetensors", "--data-root", tmp_path / "data", "--protocol", "paper",
                 "--num-eval", "1", "--eval-epochs", "1", "--models", "convnet_w32", "--json")
    assert result.exit_code == 0, result.output + repr(result.exception)
    (row,) = json.loads(result.stdout)["rows"]
    assert (row["protocol"], row["augmentation"], row["epochs"], row["lr"]) == ("paper:dc", "dc:crop_scale_rotate", 1,
                                                                                0.01)


def test_distill_with_the_paper_protocol_records_it(tmp_path, monkeypatch):
    """distill --eval-protocol paper evaluates with the method's protocol (DM's, shrunk to 1 network
    × 1 epoch for the test) and metrics.json, config.yaml and the summary line say so."""
    monkeypatch.setitem(PAPER_PROTOCOLS, "dm", dataclasses.replace(PAPER_PROTOCOLS["dm"], num_eval=1, epochs=1,
                                                                   batch_size=4))
    write_fake_mnist(tmp_path / "data", n_train=20, n_test=10)
    out = tmp_path / "run"
    result = run("distill", "--data-root", tmp_path / "data", "--out", out, "--quiet", "--method", "dm", "--ipc", 1,
                 "--iterations", 1, "--batch-real", 2, "--model", "convnet_w32", "--eval-protocol", "paper")
    assert result.exit_code == 0, result.output + repr(result.exception)
    m = json.loads((out / "metrics.json").read_text())
    assert (m["eval_protocol"], m["num_eval"], m["eval_epochs"], m["eval_batch"], m["eval_augmentation"]) == (
        "paper:dm", 1, 1, 4, DSA_MNIST)
    assert "1 models, 1 epochs, protocol paper:dm" in result.stdout
    assert "eval_protocol: paper" in (out / "config.yaml").read_text()


def test_paper_configs_evaluate_with_the_paper_protocol():
    """Every configs/paper file leaves its evaluation to its method's paper protocol, and no DATM/PAD
    file turns on the image EMA, which the official scripts never apply."""
    import yaml
    from pathlib import Path

    files = sorted((Path(__file__).resolve().parent.parent / "configs" / "paper").glob("*.yaml"))
    assert len(files) > 100
    for path in files:
        cfg = yaml.safe_load(path.read_text())
        assert cfg["eval_protocol"] == "paper" and "num_eval" not in cfg and "eval_epochs" not in cfg, path
        if cfg["method"] in ("datm", "pad"):
            assert cfg["method_args"]["ema_decay"] == 0, path
