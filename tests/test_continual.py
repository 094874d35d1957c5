"""Class-incremental continual learning (``datadistill.experiments.continual``): class orders, per-step
condensation from that step's classes only, global labels, the seen-class test subset, memory growth,
repeatability, the summary and last-step verdict, the output files and the validation errors.

Runs on a 4-class in-memory dataset (10 train images per class) with the width-8 test ConvNet,
2 steps of 2 classes, memory IPC 1–2, 1–2 epochs and 1–2 condensation iterations."""

from __future__ import annotations

import csv
import io
import json
import statistics
from pathlib import Path

import numpy as np
import pytest
import torch

import datadistill.api as api
from datadistill.experiments.continual import protocol as continual_protocol
from datadistill.experiments.continual import run as continual_run
from datadistill.experiments.continual import (ContinualSettings, StepRecord, beats, class_orders, class_subset,
                                               last_step_verdict, load_continual_settings, memory_config,
                                               run_continual, seen_test_subset, step_classes, step_seed, summarize,
                                               to_global)
from datadistill.data import DatasetSpec, StreamedImages, load_dataset
from datadistill.errors import ConfigError, UnknownNameError
from helpers import make_tiny_dataset
from layout_fixtures import write_mhist

REPO = Path(__file__).resolve().parents[1]
PNG = b"\x89PNG\r\n\x1a\n"
SPEC4 = DatasetSpec(name="tiny4", channels=1, image_size=(28, 28), class_names=("a", "b", "c", "d"),
                    mean=(0.5,), std=(0.25,), dsa_strategy="color_crop_cutout_scale_rotate")
PER_CLASS = 10


@pytest.fixture
def data4():
    return make_tiny_dataset(per_class=PER_CLASS, test_size=40, spec=SPEC4)


@pytest.fixture
def spies(monkeypatch):
    """Records every call of ``api.distill`` (config, dataset, result) and of the evaluation
    (memory set, test set) made by the continual run, passing them through."""
    calls = {"distill": [], "evaluate": []}
    real_distill, real_evaluate = api.distill, continual_protocol.evaluate_synthetic_set

    def distill(config, *args, **kwargs):
        result = real_distill(config, *args, **kwargs)
        calls["distill"].append({"config": config, "dataset": kwargs.get("dataset"), "result": result,
                                 "evaluate": kwargs.get("evaluate")})
        return result

    def evaluate(syn, test, settings, device, seed=0, **kwargs):
        calls["evaluate"].append({"syn": syn, "test": test, "settings": settings, "seed": seed})
        return real_evaluate(syn, test, settings, device, seed=seed, **kwargs)

    monkeypatch.setattr(api, "distill", distill)
    monkeypatch.setattr(continual_protocol, "evaluate_synthetic_set", evaluate)
    return calls


TINY = {"steps": 2, "memory_methods": ["random", "dm"], "memory_ipc": 2, "orders": 2,
        "method_settings": {"dm": {"iterations": 2, "batch_real": 4}}, "num_eval": 1, "epochs": 1, "device": "cpu",
        "dsa_strategy": "none"}


def tiny_run(data, tiny_model, progress=None, **kw):
    settings = ContinualSettings.build(None, {**TINY, "model": tiny_model, **kw})
    return run_continual(settings, data=data, progress=progress)


def class_ids(names) -> list[int]:
    return [SPEC4.class_names.index(n) for n in names]


# ------------------------------------------------------------------------------ orders and steps


def test_class_orders_are_reproducible_permutations_that_differ_across_seeds():
    orders = class_orders(10, 5)
    assert orders == class_orders(10, 5)
    assert len(orders) == 5
    for k, order in enumerate(orders):
        assert sorted(order) == list(range(10))
        assert order == np.random.RandomState(k).permutation(10).tolist()  # the DM repository's draw
    assert len({tuple(o) for o in orders}) == 5
    assert class_orders(10, 2) == orders[:2]  # order k depends on k only


def test_step_classes_cut_the_order_into_equal_consecutive_groups():
    order = class_orders(10, 2)[1]
    groups = step_classes(order, 5)
    assert [len(g) for g in groups] == [2] * 5
    assert [c for g in groups for c in g] == order
    assert step_classes(order, 1) == [order]
    with pytest.raises(ConfigError, match=r"steps = 3 .*10 classes.*1, 2, 5, 10"):
        step_classes(order, 3)


def test_step_seeds_are_distinct_per_order_and_step():
    seeds = {step_seed(7, k, t, 5) for k in range(5) for t in range(5)}
    assert len(seeds) == 25 and min(seeds) == 7


def test_class_subset_holds_only_those_classes_relabelled(data4):
    classes = [3, 1]
    sub = class_subset(data4, classes)
    assert sub.spec.class_names == ("d", "b") and sub.spec.mean == SPEC4.mean and sub.spec.name == SPEC4.name
    for split, full in ((sub.train, data4.train), (sub.test, data4.test)):
        mask = (full.labels == 3) | (full.labels == 1)
        assert torch.equal(split.images, full.images[mask])
        assert torch.equal(to_global(split.labels, classes), full.labels[mask])
        assert set(split.labels.tolist()) == {0, 1}
    test = seen_test_subset(data4.test, [2, 0, 3])
    assert set(test.labels.tolist()) == {0, 2, 3}
    assert len(test) == int(torch.isin(data4.test.labels, torch.tensor([0, 2, 3])).sum())


def test_class_subset_of_a_streamed_dataset_matches_the_in_memory_one(tmp_path):
    root = tmp_path / "mhist"
    write_mhist(root, size=16)
    memory = load_dataset("mhist", root, stream="off", num_workers=0)
    streamed = load_dataset("mhist", root, stream="on", num_workers=0)
    a, b = class_subset(memory, [1]), class_subset(streamed, [1])
    assert isinstance(b.train, StreamedImages) and b.spec.class_names == (memory.spec.class_names[1],)
    assert torch.equal(a.train.labels, b.train.labels) and set(b.train.labels.tolist()) == {0}
    torch.testing.assert_close(b.train.materialise().images, a.train.images, atol=0, rtol=0)


# ----------------------------------------------------------------------------------------- the run


def test_each_step_condenses_from_its_own_classes_and_memory_keeps_global_labels(data4, tiny_model, spies):
    ipc = 2
    result = tiny_run(data4, tiny_model, memory_ipc=ipc)
    orders = class_orders(4, 2)
    assert result.class_orders == orders
    assert len(spies["distill"]) == 2 * 2 * 2 and all(c["evaluate"] is False for c in spies["distill"])
    for call in spies["distill"]:
        cfg, sub = call["config"], call["dataset"]
        k, t = divmod(cfg.seed, 2)  # seed 0 + order * steps + step
        classes = step_classes(orders[k], 2)[t]
        assert class_ids(sub.spec.class_names) == classes
        assert set(sub.train.labels.tolist()) == {0, 1}  # local labels for the method
        mask = torch.isin(data4.train.labels, torch.tensor(classes))
        assert torch.equal(sub.train.images, data4.train.images[mask])  # that step's training images only
        assert torch.equal(to_global(sub.train.labels, classes), data4.train.labels[mask])
    previous: dict[tuple[str, int], torch.Tensor] = {}
    for call, record in zip(spies["evaluate"], result.records):
        syn, test = call["syn"], call["test"]
        k, t = record.order, record.step - 1
        groups = step_classes(orders[k], 2)
        seen = [c for g in groups[:t + 1] for c in g]
        assert record.classes == groups[t] and record.seen_classes == seen
        assert syn.metadata["num_classes"] == 4  # outputs for every class of the dataset
        assert len(syn) == record.memory_images == (t + 1) * 2 * ipc  # grows by classes × IPC per step
        new = syn.labels[-2 * ipc:]
        assert torch.equal(new, torch.tensor(groups[t]).repeat_interleave(ipc))  # mapped back to global ids
        assert set(syn.labels.tolist()) == set(seen)
        if t > 0:  # earlier steps' memory kept unchanged
            assert torch.equal(syn.images[:-2 * ipc], previous[(record.method, k)])
        previous[(record.method, k)] = syn.images.clone()
        assert set(test.labels.tolist()) == set(seen)  # exactly the seen classes, global labels
        assert len(test) == record.test_images == int(torch.isin(data4.test.labels, torch.tensor(seen)).sum())
        if record.method == "random":  # a coreset: real training images of the labelled class
            for img, label in zip(syn.images, syn.labels):
                same = (data4.train.images == img).flatten(1).all(1)
                assert same.any() and set(data4.train.labels[same].tolist()) == {int(label)}


def test_random_memory_is_the_learning_methods_starting_point(data4, tiny_model, spies):
    tiny_run(data4, tiny_model, memory_methods=["random", "dm", "datadam"], memory_ipc=1, orders=1,
             method_settings={"dm": {"iterations": 0}, "datadam": {"iterations": 1, "batch_real": 4}})
    by_step: dict[int, dict[str, torch.Tensor]] = {}
    for call in spies["evaluate"]:
        step = len(call["syn"]) // 2
        by_step.setdefault(step, {})[call["syn"].metadata["method"]] = call["syn"]
    for sets in by_step.values():
        assert torch.equal(sets["random"].images, sets["dm"].images)  # dm with 0 iterations = its init real
        assert torch.equal(sets["random"].labels, sets["datadam"].labels)
        assert not torch.equal(sets["random"].images, sets["datadam"].images)  # one step of learning moved it
    seeds = {}
    for call in spies["evaluate"]:
        seeds.setdefault(len(call["syn"]), set()).add(call["seed"])
    assert all(len(s) == 1 for s in seeds.values())  # same evaluation seed for every method at a step


def test_same_seed_gives_identical_results(data4, tiny_model, spies):
    def strip(result):
        return [{k: v for k, v in r.as_dict().items() if not k.endswith("seconds")} for r in result.records]

    first = tiny_run(data4, tiny_model, memory_ipc=1)
    memories = [c["syn"].images.clone() for c in spies["evaluate"]]
    spies["evaluate"].clear()
    second = tiny_run(data4, tiny_model, memory_ipc=1)
    assert strip(first) == strip(second)
    assert all(torch.equal(a, c["syn"].images) for a, c in zip(memories, spies["evaluate"]))
    other = tiny_run(data4, tiny_model, memory_ipc=1, seed=5)
    assert [r.seed for r in other.records] == [r.seed + 5 for r in first.records]


def test_output_files(data4, tiny_model, tmp_path):
    out = tmp_path / "cl"
    result = tiny_run(data4, tiny_model, out=out, memory_ipc=1, epochs=2, num_eval=2,
                      dsa_strategy=None)
    assert result.out == out
    report = json.loads((out / "continual.json").read_text(encoding="utf-8"))
    assert report["format"] == "datadistill.continual" and report["complete"] and report["orders_done"] == 2
    assert report["settings"]["steps"] == 2 and report["settings"]["memory_methods"] == ["random", "dm"]
    assert report["settings"]["dsa_strategy"] == SPEC4.dsa_strategy  # the dataset's default
    assert report["methods"]["dm"]["config"]["iterations"] == 2
    assert report["class_orders"] == class_orders(4, 2)
    for r in result.records:
        step = report["methods"][r.method]["orders"][r.order]["steps"][r.step - 1]
        assert step["accuracies"] == r.accuracies and len(r.accuracies) == 2
        assert step["memory_images"] == r.memory_images and step["classes"] == r.classes
    summary = report["methods"]["dm"]["summary"]
    last = [r for r in result.records if r.method == "dm" and r.step == 2]
    per_order = [statistics.fmean(r.accuracies) for r in last]
    assert summary[-1]["order_accuracies"] == pytest.approx(per_order)
    assert summary[-1]["accuracy_mean"] == pytest.approx(statistics.fmean(per_order))
    assert summary[-1]["accuracy_std"] == pytest.approx(statistics.pstdev(per_order))
    assert report["last_step"] == last_step_verdict({m: v["summary"] for m, v in report["methods"].items()})

    rows = list(csv.DictReader(io.StringIO((out / "continual.csv").read_text(encoding="utf-8"))))
    assert len(rows) == len(result.records) == 2 * 2 * 2
    by_key = {(row["method"], int(row["order"]), int(row["step"])): row for row in rows}
    assert len(by_key) == len(rows)
    for r in result.records:
        row = by_key[(r.method, r.order, r.step)]
        assert int(row["memory_images"]) == r.memory_images and int(row["seed"]) == r.seed
        assert [float(a) for a in row["accuracies"].split(";")] == pytest.approx(r.accuracies, abs=1e-4)
        assert [int(c) for c in row["seen_classes"].split(";")] == r.seen_classes

    md = (out / "continual.md").read_text(encoding="utf-8")
    assert "| memory | step 1 (2 cl.) | step 2 (4 cl.) |" in md
    dm_row = next(line for line in md.splitlines() if line.startswith("| dm | ") and "±" in line)
    assert f"{summary[-1]['accuracy_mean']:.2f} ± {summary[-1]['accuracy_std']:.2f}" in dm_row
    assert report["last_step"]["text"] in md and "the DM memory" in md
    assert (out / "continual.png").read_bytes().startswith(PNG)
    assert sorted(p.name for p in out.iterdir()) == ["continual.csv", "continual.json", "continual.md",
                                                     "continual.png"]


# ------------------------------------------------------------------------------ summary and verdict


def record(method, order, step, accs, memory=2):
    return StepRecord(method=method, order=order, step=step, classes=[step], seen_classes=list(range(step * 2)),
                      memory_images=memory * step, test_images=10, seed=0, iterations=0, accuracies=accs,
                      condense_seconds=1.0 + order, train_seconds=2.0, eval_seconds=3.0)


def test_summarize_means_over_orders_and_pools_networks():
    recs = [record("dm", 0, 1, [90.0, 80.0]), record("dm", 1, 1, [70.0, 70.0]), record("dm", 0, 2, [60.0, 60.0]),
            record("random", 0, 1, [50.0, 50.0])]
    s = summarize(recs)
    assert list(s) == ["dm", "random"]
    first = s["dm"][0]
    assert first["step"] == 1 and first["n_orders"] == 2 and first["orders"] == [0, 1]
    assert first["order_accuracies"] == [85.0, 70.0]
    assert first["accuracy_mean"] == 77.5 and first["accuracy_std"] == 7.5
    assert first["pooled_mean"] == 77.5 and first["pooled_std"] == pytest.approx(statistics.pstdev([90, 80, 70, 70]))
    assert first["condense_seconds"] == 1.5 and first["classes_seen"] == 2 and first["memory_images"] == 2
    assert s["dm"][1]["accuracy_std"] == 0.0 and s["dm"][1]["n_orders"] == 1
    assert summarize([r.as_dict() for r in recs]) == s


def rows(*steps):
    return [{"step": t, "classes_seen": 2 * t, "n_orders": n, "accuracy_mean": m, "accuracy_std": sd}
            for t, m, sd, n in steps]


def test_last_step_verdict_on_hand_values():
    summary = {"random": rows((1, 99.0, 0.1, 5), (2, 80.0, 2.0, 5)),
               "dm": rows((1, 99.5, 0.1, 5), (2, 85.0, 1.0, 5)),
               "datadam": rows((1, 99.0, 0.1, 5), (2, 81.0, 1.0, 5)),
               "herding": rows((1, 99.0, 0.1, 5), (2, 90.0, 9.0, 5))}
    v = last_step_verdict(summary)
    assert v["answer"] is True and v["step"] == 2 and v["n_orders"] == 5
    got = {c["method"]: c for c in v["comparisons"]}
    assert got["dm"]["beats"] and got["dm"]["margin"] == 5.0 and got["dm"]["threshold"] == 2.0
    assert not got["datadam"]["beats"]  # +1 point < random's std of 2
    assert got["herding"]["margin"] == 10.0 and got["herding"]["threshold"] == 9.0 and got["herding"]["beats"]
    assert v["text"].startswith("**Yes: the DM memory beats the random memory")
    assert "DataDAM: 81.00 ± 1.00 %" in v["text"] and "does not beat random" in v["text"]

    summary["dm"] = rows((1, 99.0, 0.1, 5), (2, 82.0, 1.0, 5))  # margin exactly the std: not more
    v = last_step_verdict(summary)
    assert v["answer"] is False and not beats(82.0, 1.0, 80.0, 2.0)
    assert v["text"].startswith("**No: neither the DM nor the DataDAM memory beats")

    only_dm = last_step_verdict({"random": rows((1, 50.0, 0.0, 1)), "dm": rows((1, 50.5, 0.0, 1))})
    assert only_dm["answer"] is True and "DataDAM not run" in only_dm["text"] and "one class order" in only_dm["text"]
    assert last_step_verdict({"dm": rows((1, 90.0, 1.0, 5))})["answer"] is None
    assert last_step_verdict({"random": rows((1, 90.0, 1.0, 5)), "herding": rows((1, 95.0, 1.0, 5))})["answer"] is None


# -------------------------------------------------------------------------------------- validation


@pytest.mark.parametrize("kw, error, needles", [
    ({"steps": 3}, ConfigError, ["steps = 3", "4 classes", "1, 2, 4"]),
    ({"memory_ipc": 0}, ConfigError, ["memory_ipc = 0", "≥ 1"]),
    ({"memory_ipc": PER_CLASS + 1}, ConfigError, [f"memory_ipc = {PER_CLASS + 1}", f"1 to {PER_CLASS}"]),
    ({"orders": 0}, ConfigError, ["orders = 0", "≥ 1"]),
    ({"memory_methods": ["random", "dn"]}, UnknownNameError, ["'dn'", "dm", "datadam", "herding"]),
    ({"memory_methods": ["dm", "DM"]}, ConfigError, ["'dm' twice"]),
    ({"memory_methods": []}, ConfigError, ["memory_methods = []"]),
    ({"memory_methods": ["mtt"]}, ConfigError, ["'mtt' is not supported", "expert"]),
    ({"method_settings": {"dm": {"iterationz": 2}}}, ConfigError,
     ["'iterationz'", "method_settings.dm", "iterations"]),
    ({"method_settings": {"herding": {"iterations": 2}}}, ConfigError, ["'herding'", "memory_methods"]),
    ({"method_settings": {"dm": {"iterations": -1}}}, ConfigError, ["method_settings.dm", "iterations = -1"]),
    ({"method_settings": {"dm": {"method_args": {"layers": "middle"}}}}, ConfigError,
     ["method_settings.dm", "'middle'"]),
    ({"method_settings": {"dm": {"init": "zeros"}}}, ConfigError, ["init = 'zeros'", "real"]),
    ({"epochs": 0}, ConfigError, ["epochs = 0"]),
    ({"model": "convnot"}, UnknownNameError, ["'convnot'", "convnet"]),
])
def test_bad_input_raises_one_clear_error_and_writes_nothing(data4, tiny_model, spies, tmp_path, kw, error,
                                                             needles):
    out = tmp_path / "cl"
    with pytest.raises(error) as info:
        tiny_run(data4, tiny_model, out=out, **kw)
    for needle in needles:
        assert needle in str(info.value), (needle, str(info.value))
    assert not out.exists() and spies["distill"] == [] and spies["evaluate"] == []


def test_an_output_path_that_is_a_file_is_refused(data4, tiny_model, spies, tmp_path):
    path = tmp_path / "file.txt"
    path.write_text("x", encoding="utf-8")
    with pytest.raises(ConfigError, match="exists and is not a folder"):
        tiny_run(data4, tiny_model, out=path)
    assert path.read_text(encoding="utf-8") == "x" and spies["distill"] == []


# ------------------------------------------------------------------------------------------ config


def test_repository_config_is_valid_and_keyword_settings_merge_into_it():
    path = REPO / "configs" / "continual" / "mnist_cpu.yaml"
    s = load_continual_settings(path)
    assert s.dataset == "mnist" and s.steps == 5 and s.orders == 5
    assert set(s.memory_methods) >= {"random", "dm", "datadam"}
    merged = load_continual_settings(path, steps=2,
                                     method_settings={"dm": {"iterations": 5, "method_args": {"layers": "all"}}})
    assert merged.steps == 2
    assert merged.method_settings["dm"]["iterations"] == 5
    assert merged.method_settings["dm"]["batch_real"] == s.method_settings["dm"]["batch_real"]  # kept from the file
    assert merged.method_settings["dm"]["method_args"] == {"layers": "all"}
    cfg = memory_config(merged, "dm", seed=3, dataset="mnist")
    assert (cfg.iterations, cfg.ipc, cfg.seed, cfg.num_eval) == (5, s.memory_ipc, 3, 0)
    assert cfg.method_args == {"layers": "all"} and cfg.model == s.model


def test_yaml_with_an_unknown_key_is_refused(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("steps: 5\nmemory_ipcs: 10\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"unknown setting 'memory_ipcs'.*memory_ipc"):
        load_continual_settings(path)
    with pytest.raises(ConfigError, match="memory_methods"):
        ContinualSettings(memory_methods="random,dn")
    assert ContinualSettings(memory_methods="random, dm").memory_methods == ("random", "dm")


# ------------------------------------------------------------------------- resume and workers


def without_seconds(records):
    return [{k: v for k, v in r.as_dict().items() if not k.endswith("seconds")} for r in records]


def test_an_interrupted_run_resumes_with_only_the_missing_pairs(data4, tiny_model, spies, tmp_path, monkeypatch):
    out = tmp_path / "cl"
    whole = tiny_run(data4, tiny_model, memory_ipc=1)  # the same run, uninterrupted and in memory
    real_run = continual_run.memory_run

    def crash_on_last(**kw):
        if kw["method"] == "dm" and kw["order_index"] == 1:
            raise RuntimeError("killed")
        return real_run(**kw)

    monkeypatch.setattr(continual_run, "memory_run", crash_on_last)
    with pytest.raises(RuntimeError, match="killed"):
        tiny_run(data4, tiny_model, memory_ipc=1, out=out)
    partial = json.loads((out / "continual.json").read_text(encoding="utf-8"))
    assert partial["orders_done"] == 1 and not partial["complete"]  # order 1 has random but not dm
    assert [o["order"] for o in partial["methods"]["random"]["orders"]] == [0, 1]
    assert [o["order"] for o in partial["methods"]["dm"]["orders"]] == [0]

    monkeypatch.setattr(continual_run, "memory_run", real_run)
    spies["distill"].clear()
    lines = []
    resumed = tiny_run(data4, tiny_model, memory_ipc=1, out=out, progress=lines.append)
    assert lines[0].startswith(f"resuming {out}: 3 of 4")
    seeds = [c["config"].seed for c in spies["distill"]]
    assert [c["config"].method for c in spies["distill"]] == ["dm", "dm"] and seeds == [2, 3]  # order 1 only
    assert without_seconds(resumed.records) == without_seconds(whole.records)
    report = json.loads((out / "continual.json").read_text(encoding="utf-8"))
    assert report["complete"] and report["orders_done"] == 2
    kept = partial["methods"]["random"]["orders"][0]["steps"]
    assert report["methods"]["random"]["orders"][0]["steps"] == kept  # reused as written, seconds included


def test_a_finished_folder_grows_by_new_orders_and_methods(data4, tiny_model, spies, tmp_path):
    out = tmp_path / "cl"
    tiny_run(data4, tiny_model, memory_ipc=1, orders=1, memory_methods=["random"], method_settings={}, out=out)
    spies["distill"].clear()
    grown = tiny_run(data4, tiny_model, memory_ipc=1, orders=2, out=out)
    done = [(c["config"].method, c["config"].seed) for c in spies["distill"]]
    assert done == [("dm", 0), ("dm", 1), ("random", 2), ("random", 3), ("dm", 2), ("dm", 3)]
    assert [(r.method, r.order, r.step) for r in grown.records] == [
        (m, k, t) for k in (0, 1) for m in ("random", "dm") for t in (1, 2)]
    assert json.loads((out / "continual.json").read_text(encoding="utf-8"))["complete"]


@pytest.mark.parametrize("kw, needles", [
    ({"epochs": 2}, ["other settings", "epochs = 1 there, 2 here", "another --out"]),
    ({"method_settings": {"dm": {"iterations": 3, "batch_real": 4}}}, ["condensation config of 'dm'"]),
    ({"memory_methods": ["random"], "method_settings": {}}, ["would drop", "['dm']"]),
    ({"orders": 1}, ["would drop", "2 class orders", "orders = 1"]),
])
def test_a_folder_of_other_settings_is_refused_and_left_as_it_is(data4, tiny_model, spies, tmp_path, kw, needles):
    out = tmp_path / "cl"
    tiny_run(data4, tiny_model, memory_ipc=1, out=out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    spies["distill"].clear()
    with pytest.raises(ConfigError) as info:
        tiny_run(data4, tiny_model, memory_ipc=1, out=out, **{"workers": 1, **kw})
    for needle in needles:
        assert needle in str(info.value), (needle, str(info.value))
    assert spies["distill"] == [] and {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_a_corrupt_results_file_is_refused(data4, tiny_model, spies, tmp_path):
    out = tmp_path / "cl"
    out.mkdir()
    (out / "continual.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ConfigError, match="cannot resume from .*continual.json"):
        tiny_run(data4, tiny_model, out=out)
    assert spies["distill"] == [] and (out / "continual.json").read_text(encoding="utf-8") == "{not json"


def test_two_worker_processes_give_the_in_process_results(data4):
    # a registered model (the test-only tiny ConvNet is unknown in a spawned worker)
    kw = {"model": "lenet", "memory_ipc": 1, "orders": 1}
    here = run_continual(ContinualSettings.build(None, {**TINY, **kw, "workers": 0}), data=data4)
    pool = run_continual(ContinualSettings.build(None, {**TINY, **kw, "workers": 2}), data=data4)
    assert without_seconds(pool.records) == without_seconds(here.records)
    assert [(r.method, r.step) for r in pool.records] == [("random", 1), ("random", 2), ("dm", 1), ("dm", 2)]
