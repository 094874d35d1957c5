"""Evaluation that resumes (issue 19, item 4): each finished network is recorded in
``OUT/evaluation_parts/`` as it finishes; a rerun after an interruption trains only the missing
networks and reports the numbers of an uninterrupted run (wall-clock seconds aside)."""

from __future__ import annotations

import json

import pytest
import torch

from datadistill.api import run_distill, run_evaluate
from datadistill.config import build_config
from datadistill.evaluation import EvalParts, EvalSettings, evaluate_synthetic_set
from datadistill.evaluation import protocol
from datadistill.evaluation.parts import PARTS_FOLDER, set_digest
from datadistill.io import SyntheticSet, save_synthetic_set
from helpers import TINY_MODEL, without_keys

CPU = torch.device("cpu")
SECONDS = {"eval_seconds", "train_seconds", "seconds_per_network", "distill_seconds", "seconds"}


class Interrupted(Exception):
    """Stands for a kill: raised from the progress callback after a network finished."""


def tiny_set(tiny_dataset) -> SyntheticSet:
    images = tiny_dataset.train.images[:6].clone()
    labels = tiny_dataset.train.labels[:6].clone()
    return SyntheticSet(images, labels, metadata={"dataset": "tiny", "num_classes": 3})


def settings(**kw) -> EvalSettings:
    return EvalSettings(**{"model": TINY_MODEL, "num_eval": 3, "epochs": 2, "batch_size": 4,
                           "dsa_strategy": "color_crop_cutout_scale_rotate", "curve_every": 1, **kw})


def count_calls(monkeypatch, module, name) -> list:
    calls = []
    real = getattr(module, name)

    def counted(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, counted)
    return calls


def interrupt_after(n: int):
    """A progress callback that 'kills' the evaluation once ``n`` networks finished."""
    def progress(k, accuracy):
        if k + 1 == n:
            raise Interrupted
    return progress


def same_numbers(a, b) -> None:
    assert a.accuracies == b.accuracies and a.train_accuracies == b.train_accuracies
    assert a.per_class_accuracies == b.per_class_accuracies
    assert a.lr == b.lr and a.vectorised == b.vectorised and a.epochs == b.epochs
    strip = [[{k: v for k, v in c.items() if k != "seconds"} for c in r.curves] for r in (a, b)]
    assert strip[0] == strip[1]


def without_seconds(value):
    return without_keys(value, SECONDS)


def test_interrupted_after_one_of_three_networks_trains_only_the_other_two(tiny_dataset, tiny_model, tmp_path,
                                                                           monkeypatch):
    syn, s = tiny_set(tiny_dataset), settings()
    whole = evaluate_synthetic_set(syn, tiny_dataset.test, s, CPU, seed=4)
    parts = EvalParts(tmp_path / PARTS_FOLDER)
    with pytest.raises(Interrupted):
        evaluate_synthetic_set(syn, tiny_dataset.test, s, CPU, seed=4, parts=parts, progress=interrupt_after(1))
    recorded = json.loads((tmp_path / PARTS_FOLDER / f"{TINY_MODEL}.json").read_text())
    assert list(recorded["units"]) == ["0"] and recorded["settings"]["set_sha256"] == set_digest(syn)
    calls = count_calls(monkeypatch, protocol, "train_network")
    seen = []
    resumed = evaluate_synthetic_set(syn, tiny_dataset.test, s, CPU, seed=4, parts=parts,
                                     progress=lambda k, a: seen.append((k, a)))
    assert len(calls) == 2  # networks 2 and 3 only
    assert seen == list(enumerate(whole.accuracies))  # reported for every network, reused or not
    same_numbers(resumed, whole)
    # everything recorded now: a third run trains nothing and still gives the same numbers
    again = evaluate_synthetic_set(syn, tiny_dataset.test, s, CPU, seed=4, parts=parts)
    assert len(calls) == 2
    same_numbers(again, whole)


@pytest.mark.parametrize("change", [{"seed": 5}, {"epochs": 1}, {"images": True}])
def test_parts_of_another_set_or_settings_are_not_reused(tiny_dataset, tiny_model, tmp_path, monkeypatch, change):
    syn, s = tiny_set(tiny_dataset), settings(curve_every=0)
    parts = EvalParts(tmp_path)
    evaluate_synthetic_set(syn, tiny_dataset.test, s, CPU, seed=4, parts=parts)
    seed = change.get("seed", 4)
    if "epochs" in change:
        s = settings(curve_every=0, epochs=change["epochs"])
    if "images" in change:
        syn = SyntheticSet(syn.images + 1e-3, syn.labels, metadata=syn.metadata)
    calls = count_calls(monkeypatch, protocol, "train_network")
    other = evaluate_synthetic_set(syn, tiny_dataset.test, s, CPU, seed=seed, parts=parts)
    assert len(calls) == 3
    same_numbers(other, evaluate_synthetic_set(syn, tiny_dataset.test, s, CPU, seed=seed))


def test_a_damaged_parts_file_costs_only_its_networks(tiny_dataset, tiny_model, tmp_path, monkeypatch):
    syn, s = tiny_set(tiny_dataset), settings(curve_every=0, num_eval=2)
    (tmp_path / f"{TINY_MODEL}.json").write_text("{not json")
    calls = count_calls(monkeypatch, protocol, "train_network")
    result = evaluate_synthetic_set(syn, tiny_dataset.test, s, CPU, seed=0, parts=EvalParts(tmp_path))
    assert len(calls) == 2
    same_numbers(result, evaluate_synthetic_set(syn, tiny_dataset.test, s, CPU, seed=0))


def test_vectorised_batch_is_the_unit_of_resumption(tiny_dataset, tiny_model, tmp_path, monkeypatch):
    syn, s = tiny_set(tiny_dataset), settings(vectorise=True, num_eval=3)
    whole = evaluate_synthetic_set(syn, tiny_dataset.test, s, CPU, seed=2)
    assert whole.vectorised
    parts = EvalParts(tmp_path)
    batches = count_calls(monkeypatch, protocol, "fit_networks_vectorised")
    with pytest.raises(Interrupted):
        evaluate_synthetic_set(syn, tiny_dataset.test, s, CPU, seed=2, parts=parts, progress=interrupt_after(1))
    assert len(batches) == 1
    resumed = evaluate_synthetic_set(syn, tiny_dataset.test, s, CPU, seed=2, parts=parts)
    assert len(batches) == 2  # one network recorded of three: the batch is trained again
    same_numbers(resumed, whole)
    again = evaluate_synthetic_set(syn, tiny_dataset.test, s, CPU, seed=2, parts=parts)
    assert len(batches) == 2  # the whole batch recorded: nothing trained
    same_numbers(again, whole)


def write_set(path) -> None:
    """A random 10-image set of the fake MNIST (``mnist_root``)."""
    meta = {"dataset": "mnist", "channels": 1, "image_size": [28, 28], "mean": [0.1307], "std": [0.3081],
            "class_names": [str(i) for i in range(10)], "num_classes": 10, "method": "random", "ipc": 1}
    images = torch.randn(10, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    save_synthetic_set(SyntheticSet(images, torch.arange(10), metadata=meta), path)


def test_evaluate_out_resumes_and_writes_the_same_file(tiny_model, mnist_root, tmp_path, monkeypatch):
    path = tmp_path / "syn.safetensors"
    write_set(path)
    kw = dict(data_root=str(mnist_root), device="cpu", num_eval=3, epochs=1, batch_size=8, curve_every=1)
    models = (TINY_MODEL, "mlp")
    run_evaluate(path, models, out=tmp_path / "whole", **kw)
    whole = json.loads((tmp_path / "whole" / "evaluation.json").read_text())
    assert not (tmp_path / "whole" / PARTS_FOLDER).exists()  # removed once evaluation.json is written

    out = tmp_path / "out"
    stop = {"n": 0}

    def progress(model, k, accuracy):  # killed after the first network of the second architecture
        if model == "mlp":
            raise Interrupted

    with pytest.raises(Interrupted):
        run_evaluate(path, models, out=out, progress=progress, **kw)
    assert not (out / "evaluation.json").exists()
    assert sorted(p.name for p in (out / PARTS_FOLDER).iterdir()) == sorted([f"{TINY_MODEL}.json", "mlp.json"])
    calls = count_calls(monkeypatch, protocol, "train_network")
    run_evaluate(path, models, out=out, progress=lambda *a: stop.update(n=stop["n"] + 1), **kw)
    assert len(calls) == 2 and stop["n"] == 6  # the mlp's networks 2 and 3; six networks reported
    resumed = json.loads((out / "evaluation.json").read_text())
    assert without_seconds(resumed) == without_seconds(whole)
    assert json.loads((out / "curves.json").read_text())["models"].keys() == {TINY_MODEL, "mlp"}
    assert not (out / PARTS_FOLDER).exists()


def test_evaluate_with_saved_models_reuses_only_networks_whose_file_exists(tiny_model, mnist_root, tmp_path,
                                                                           monkeypatch):
    path = tmp_path / "syn.safetensors"
    write_set(path)
    kw = dict(data_root=str(mnist_root), device="cpu", num_eval=2, epochs=1, batch_size=8,
              out=tmp_path / "out", save_models=tmp_path / "models")
    with pytest.raises(Interrupted):
        run_evaluate(path, (TINY_MODEL,), progress=lambda m, k, a: (_ for _ in ()).throw(Interrupted), **kw)
    assert (tmp_path / "models" / f"{TINY_MODEL}_0.safetensors").is_file()
    (tmp_path / "models" / f"{TINY_MODEL}_0.safetensors").unlink()
    calls = count_calls(monkeypatch, protocol, "train_network")
    run_evaluate(path, (TINY_MODEL,), **kw)
    assert len(calls) == 2  # network 1 recorded, but its saved file is gone: trained again
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == [f"{TINY_MODEL}_0.safetensors",
                                                                       f"{TINY_MODEL}_1.safetensors"]


def distill_config(root, **kw):
    base = {"method": "dm", "ipc": 1, "iterations": 2, "batch_real": 4, "model": TINY_MODEL, "num_eval": 3,
            "eval_epochs": 1, "eval_batch": 8, "device": "cpu", "seed": 1, "data_root": str(root), "eval_init": True}
    return build_config(None, {**base, **kw})


def test_distill_evaluation_resumes_in_its_out_folder(tiny_model, mnist_root, tmp_path, monkeypatch):
    whole = run_distill(distill_config(mnist_root), tmp_path / "whole")
    out = tmp_path / "out"
    real_finish = EvalParts.finish
    finished = []

    def finish_then_die(record, k, result):
        real_finish(record, k, result)
        finished.append(k)
        if len(finished) == 2:  # the second network of the final set's evaluation
            raise Interrupted

    monkeypatch.setattr(EvalParts, "finish", staticmethod(finish_then_die))
    with pytest.raises(Interrupted):
        run_distill(distill_config(mnist_root), out)
    monkeypatch.setattr(EvalParts, "finish", staticmethod(real_finish))
    assert not (out / "metrics.json").exists()
    assert [p.name for p in (out / PARTS_FOLDER).iterdir()] == [f"{TINY_MODEL}.json"]
    calls = count_calls(monkeypatch, protocol, "train_network")
    resumed = run_distill(distill_config(mnist_root), out)
    assert len(calls) == 1 + 3  # the final set's third network, and the initial set's three
    assert resumed.evaluation.accuracies == whole.evaluation.accuracies
    assert resumed.init_evaluation.accuracies == whole.init_evaluation.accuracies
    a, b = (json.loads((d / "metrics.json").read_text()) for d in (tmp_path / "whole", out))
    assert without_seconds(a) == without_seconds(b)
    assert not (out / PARTS_FOLDER).exists()
