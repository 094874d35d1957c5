import json
import os

import pytest
import torch

import datadistill
from datadistill.api import DistillResult, distill, eval_settings, evaluate_file, run_distill
from datadistill.config import build_config
from datadistill.errors import ConfigError, DatasetNotFoundError, SyntheticSetFileError
from datadistill.evaluation import EvalSettings
from datadistill.io import load_synthetic_set
from helpers import TINY_MODEL


def cfg(**kw):
    base = {"method": "dm", "ipc": 2, "iterations": 2, "batch_real": 4, "model": TINY_MODEL, "num_eval": 0,
            "eval_epochs": 1, "eval_batch": 8, "device": "cpu", "seed": 1}
    return build_config(None, {**base, **kw})


def test_public_api_exports():
    for name in ("distill", "run_distill", "evaluate_file", "DistillConfig", "build_model", "METHODS",
                 "load_synthetic_set", "save_synthetic_set", "load_dataset", "SyntheticSet"):
        assert hasattr(datadistill, name), name


@pytest.mark.parametrize("method", ["dm", "datadam"])
def test_distill_on_in_memory_dataset(tiny_dataset, tiny_model, method):
    seen = []
    res = distill(cfg(method=method), callbacks=[lambda it, m: seen.append(it)], dataset=tiny_dataset)
    assert isinstance(res, DistillResult)
    assert seen == [1, 2]
    assert [it for it, _ in res.loss_history] == [1, 2]
    assert res.evaluation is None and res.init_evaluation is None
    syn, init = res.synthetic_set, res.initial_set
    assert syn.images.shape == init.images.shape == (6, 1, 28, 28)
    assert not syn.images.requires_grad
    assert not torch.equal(syn.images, init.images)
    assert syn.labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert syn.metadata["dataset"] == "tiny" and syn.metadata["iterations"] == 2
    assert init.metadata["iterations"] == 0
    assert syn.metadata["num_classes"] == 3 and syn.metadata["class_names"] == ["zero", "one", "two"]
    assert syn.metadata["method"] == method
    m = res.metrics()
    assert m["final_loss"] == res.loss_history[-1][1]
    assert "accuracy_mean" not in m


def test_distill_is_repeatable(tiny_dataset, tiny_model):
    a = distill(cfg(seed=5), dataset=tiny_dataset)
    torch.manual_seed(77)
    b = distill(cfg(seed=5), dataset=tiny_dataset)
    c = distill(cfg(seed=6), dataset=tiny_dataset)
    assert torch.equal(a.synthetic_set.images, b.synthetic_set.images)
    assert a.loss_history == b.loss_history
    assert not torch.equal(a.synthetic_set.images, c.synthetic_set.images)


def test_distill_with_evaluation(tiny_dataset, tiny_model):
    res = distill(cfg(num_eval=2, eval_init=True), dataset=tiny_dataset)
    assert len(res.evaluation.accuracies) == 2
    assert len(res.init_evaluation.accuracies) == 2
    assert res.eval_seconds > 0
    m = res.metrics()
    assert m["accuracies"] == res.evaluation.accuracies
    assert m["init_accuracies"] == res.init_evaluation.accuracies
    assert {"init_accuracy_mean", "init_accuracy_std", "train_accuracies"} <= set(m)
    assert distill(cfg(num_eval=2), dataset=tiny_dataset, evaluate=False).evaluation is None


def test_distill_rejects_bad_settings_before_work(tiny_dataset, tiny_model):
    from datadistill.errors import UnknownNameError

    with pytest.raises(UnknownNameError, match="nosuch"):
        distill(cfg(method="nosuch"), dataset=tiny_dataset)
    with pytest.raises(UnknownNameError, match="nosuch"):
        distill(cfg(eval_model="nosuch"), dataset=tiny_dataset)
    with pytest.raises(ConfigError, match="ipc"):
        distill(cfg(ipc=21), dataset=tiny_dataset)
    with pytest.raises(ConfigError, match="blur"):
        distill(cfg(dsa_strategy="blur"), dataset=tiny_dataset)
    with pytest.raises(ConfigError, match="nosucharg"):
        distill(cfg(method_args={"nosucharg": 1}), dataset=tiny_dataset)


def test_eval_settings_from_config(tiny_dataset):
    s = eval_settings(cfg(num_eval=0, eval_model="convnet_bn", eval_epochs=5, eval_lr=0.2), tiny_dataset.spec)
    assert isinstance(s, EvalSettings)
    assert s.num_eval == 1 and s.model == "convnet_bn" and s.epochs == 5 and s.lr == 0.2
    assert s.dsa_strategy == tiny_dataset.spec.dsa_strategy
    assert eval_settings(cfg(dsa_strategy="none"), tiny_dataset.spec).dsa_strategy == "none"


def test_run_distill_writes_folder(mnist_root, tiny_model, tmp_path):
    out = tmp_path / "run"
    res = run_distill(cfg(data_root=str(mnist_root), ipc=1, num_eval=1), out)
    assert sorted(os.listdir(out)) == sorted(
        ["synthetic.safetensors", "init.png", "synthetic.png", "metrics.json", "config.yaml", "distill.log"])
    syn = load_synthetic_set(out / "synthetic.safetensors")
    assert torch.equal(syn.images, res.synthetic_set.images)
    m = json.loads((out / "metrics.json").read_text())
    assert m["accuracies"] == res.evaluation.accuracies
    assert (out / "distill.log").read_text().strip()


def test_run_distill_rejects_file_as_out(mnist_root, tiny_model, tmp_path):
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(ConfigError, match="not a folder"):
        run_distill(cfg(data_root=str(mnist_root)), target)
    assert target.read_text() == "x"


def test_run_distill_failure_writes_nothing(tiny_model, tmp_path):
    with pytest.raises(DatasetNotFoundError):
        run_distill(cfg(data_root=str(tmp_path / "empty")), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_evaluate_file(mnist_root, tiny_model, tmp_path):
    run_distill(cfg(data_root=str(mnist_root), ipc=1), tmp_path / "run")
    path = tmp_path / "run" / "synthetic.safetensors"
    kw = dict(data_root=str(mnist_root), device="cpu", model=TINY_MODEL, num_eval=2, epochs=1, batch_size=8)
    a = evaluate_file(path, **kw)
    b = evaluate_file(path, **kw)
    assert len(a.accuracies) == 2 and a.accuracies == b.accuracies
    assert a.model == TINY_MODEL
    s = EvalSettings(model=TINY_MODEL, num_eval=1, epochs=1, dsa_strategy="none")
    assert len(evaluate_file(path, s, data_root=str(mnist_root), device="cpu").accuracies) == 1
    with pytest.raises(SyntheticSetFileError):
        evaluate_file(tmp_path / "missing.safetensors", data_root=str(mnist_root))


def test_best_iterate_selection_uses_validation_split_not_test(monkeypatch, tiny_model):
    """With select_every, candidates are scored on a validation split carved from the training set;
    the returned set is the best-scoring candidate and the test set is never used to select."""
    import datadistill.api.pipeline as api_mod
    from datadistill import DistillConfig, distill
    from helpers import make_tiny_dataset

    data = make_tiny_dataset(per_class=20, test_size=30)
    seen_sizes = []
    scores = iter([50.0, 80.0, 60.0])
    real_eval = api_mod.evaluate_synthetic_set

    def fake_eval(syn, test, settings, device, seed=0, progress=None):
        seen_sizes.append(len(test))
        if len(test) == 6:  # the validation split
            result = real_eval(syn, test, settings, device, seed=seed)
            result.accuracies = [next(scores)]
            return result
        return real_eval(syn, test, settings, device, seed=seed)

    monkeypatch.setattr(api_mod, "evaluate_synthetic_set", fake_eval)
    cfg = DistillConfig(method="dm", model=tiny_model, ipc=2, iterations=6, batch_real=4, select_every=2,
                        val_size=6, select_num_eval=1, select_epochs=1, num_eval=0)
    result = distill(cfg, dataset=data)
    assert [it for it, _ in result.selection] == [2, 4, 6]
    assert result.synthetic_set.metadata["iterations"] == 4  # the 80 % candidate
    assert all(size == 6 for size in seen_sizes)  # only the validation split was scored, never the 30 test images
    assert result.metrics()["selected_iteration"] == 4


# --------------------------------------------------------------------------- iterations run and max_seconds
def test_max_seconds_stops_after_the_first_step(tiny_dataset, tiny_model):
    seen = []
    res = distill(cfg(iterations=1000, max_seconds=0.001), callbacks=[lambda it, m: seen.append(it)],
                  dataset=tiny_dataset)
    assert res.iterations_run == 1 and seen == [1]
    assert [it for it, _ in res.loss_history] == [1]
    assert res.synthetic_set.metadata["iterations"] == 1
    assert not torch.equal(res.synthetic_set.images, res.initial_set.images)
    m = res.metrics()
    assert m["iterations"] == 1 and m["iterations_requested"] == 1000 and m["max_seconds"] == 0.001


def test_iterations_run_without_time_limit(tiny_dataset, tiny_model):
    res = distill(cfg(iterations=3, max_seconds=3600), dataset=tiny_dataset)
    assert res.iterations_run == 3
    m = res.metrics()
    assert m["iterations"] == m["iterations_requested"] == 3 and m["max_seconds"] == 3600


def test_max_seconds_in_metrics_json(mnist_root, tiny_model, tmp_path):
    out = tmp_path / "run"
    run_distill(cfg(data_root=str(mnist_root), ipc=1, iterations=500, max_seconds=0.001), out)
    m = json.loads((out / "metrics.json").read_text())
    assert m["iterations"] == 1 and m["iterations_requested"] == 500 and len(m["loss_history"]) == 1


def test_time_limit_with_selection_scores_the_last_iterate(tiny_model):
    """When time runs out between two selection points, the last iterate is still a candidate."""
    from helpers import make_tiny_dataset

    res = distill(cfg(iterations=1000, max_seconds=0.001, select_every=50, val_size=6, select_epochs=1),
                  dataset=make_tiny_dataset())
    assert res.iterations_run == 1
    assert [it for it, _ in res.selection] == [1]
    assert res.synthetic_set.metadata["iterations"] == 1


def test_fit_max_seconds_directly(tiny_dataset, tiny_model):
    from helpers import make_distiller

    d = make_distiller("dm", tiny_dataset)
    d.initialise("real")
    d.fit(50, max_seconds=1e-9)
    assert d.iteration == 1
    d.fit(2, max_seconds=None)
    assert d.iteration == 3


def test_method_defaults_reach_the_distiller(tiny_dataset, tiny_model):
    """lr_img unset: DM steps with lr 1, DC with 0.1 (the methods' defaults), visible in the metadata."""
    dm = distill(cfg(method="dm", iterations=1), dataset=tiny_dataset)
    dc = distill(cfg(method="dc", iterations=1, ipc=1), dataset=tiny_dataset)
    assert dm.synthetic_set.metadata["config"]["method_args"]["lr_img"] == 1.0
    assert dc.synthetic_set.metadata["config"]["method_args"]["lr_img"] == 0.1
    assert dm.synthetic_set.metadata["config"]["lr_img"] is None
    assert dc.synthetic_set.metadata["config"]["method_args"]["batch_real"] == 4  # explicitly set
