"""Run records (``datadistill.record``): fingerprints, finished units, refusals, and the
three layouts the experiments keep on disk (compare's cell folders, continual's results file, the
experts' manifest and epoch files)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from datadistill.errors import ConfigError
from datadistill.record import RunRecord, UnitFolders, differences, fingerprint, plain


def test_fingerprint_is_stable_and_ignores_what_may_differ():
    a = fingerprint({"epochs": 2, "models": ("a", "b"), "out": Path("x")})
    assert a == fingerprint({"out": "x", "models": ["a", "b"], "epochs": 2})  # key order, tuple vs list, Path
    assert len(a) == 64 and a != fingerprint({"epochs": 3, "models": ["a", "b"], "out": "x"})
    assert fingerprint({"epochs": 2, "workers": 1}, ignore=["workers"]) == fingerprint({"epochs": 2, "workers": 4},
                                                                                      ignore=["workers"])


def test_plain_and_differences():
    @dataclass
    class S:
        n: int = 1

    assert plain({"s": S(), "t": (1, 2), "p": Path("a/b"), "u": {3, 1}}) == {"s": {"n": 1}, "t": [1, 2],
                                                                           "p": "a/b", "u": [1, 3]}
    assert differences({"epochs": 1, "lr": 0.1, "gone": 1, "w": 1}, {"epochs": 2, "lr": 0.1, "new": "x", "w": 2},
                       ignore=["w"]) == ["epochs = 1 there, 2 here", "gone = 1 there, None here",
                                         "new = None there, 'x' here"]


# ------------------------------------------------------------------------------------ default layout
def test_run_record_resumes_finished_units_and_refuses_other_settings(tmp_path):
    path = tmp_path / "out" / "run.json"
    record = RunRecord(path, {"epochs": 1, "workers": 2}, ignore=["workers"], what="a search")
    assert record.resume() == {} and record.finished("c0") is None and not path.exists()
    record.mark_finished("c0", {"accuracy": 51.5, "accuracies": (50.0, 53.0)})
    record.mark_finished("c1", {"accuracy": 12.0})
    content = json.loads(path.read_text(encoding="utf-8"))
    assert content["fingerprint"] == fingerprint({"epochs": 1}) and content["settings"]["epochs"] == 1
    assert content["units"]["c0"] == {"accuracy": 51.5, "accuracies": [50.0, 53.0]}
    again = RunRecord(path, {"epochs": 1, "workers": 8}, ignore=["workers"], what="a search")
    assert set(again.resume()) == {"c0", "c1"} and again.finished("c1") == {"accuracy": 12.0}
    before = path.read_bytes()
    other = RunRecord(path, {"epochs": 2, "workers": 2}, ignore=["workers"], what="a search")
    with pytest.raises(ConfigError) as info:
        other.resume()
    assert str(info.value) == (f"{path} holds a search with other settings (epochs = 1 there, 2 here): choose "
                               "another --out, or delete that folder to start afresh")
    assert path.read_bytes() == before  # left as it is
    assert sorted(p.name for p in path.parent.iterdir()) == ["run.json"]  # atomic: no temporary files


@pytest.mark.parametrize("text, needle", [("{not json", "cannot resume from"),
                                          ('{"format": "other", "format_version": 1}', "not a datadistill.run_record"),
                                          ("[1]", "cannot resume from")])
def test_a_foreign_or_corrupt_record_is_refused(tmp_path, text, needle):
    path = tmp_path / "run.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=needle):
        RunRecord(path, {}).resume()


# ---------------------------------------------------------------------- compare's cell folders
def test_unit_folders_keep_compare_cell_json_as_it_was(tmp_path):
    cells = UnitFolders(tmp_path / "cells", marker="cell.json", settings_key="config", result="metrics.json")
    config = {"method": "dm", "ipc": 1, "method_args": {}, "max_seconds": None}
    assert cells.finished("dm_ipc1", config) is None
    folder = cells.begin("dm_ipc1")
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps({"accuracy_mean": 50.0}))
    assert cells.finished("dm_ipc1", config) is None  # results but no marker: not finished
    marker = cells.mark_finished("dm_ipc1", config, cell="dm_ipc1", label="dm")
    # the bytes compare wrote before it used UnitFolders
    expected = {"cell": "dm_ipc1", "label": "dm", "config": json.loads(json.dumps(config, sort_keys=True))}
    assert marker.read_text(encoding="utf-8") == json.dumps(expected, indent=2, sort_keys=True) + "\n"
    assert cells.finished("dm_ipc1", config) == {"accuracy_mean": 50.0}
    assert cells.finished("dm_ipc1", {**config, "ipc": 2}) is None  # other settings: rerun
    (folder / "metrics.json").write_text("[1, 2]")
    assert cells.finished("dm_ipc1", config) is None  # a result that is not an object
    cells.begin("dm_ipc1")
    assert not marker.exists()


def test_unit_folders_with_the_result_in_the_marker(tmp_path):
    clients = UnitFolders(tmp_path, marker="client.json")
    clients.mark_finished("client_0", {"ipc": 1}, {"bytes": 10})
    assert clients.finished("client_0", {"ipc": 1}) == {"bytes": 10}
    (tmp_path / "client_1").mkdir()
    (tmp_path / "client_1" / "client.json").write_text("{broken")
    assert clients.finished("client_1", {"ipc": 1}) is None


# ------------------------------------------------------------ continual's results file as the record
FORMAT = "datadistill.continual"


def continual_file(path, settings, methods, orders):
    path.write_text(json.dumps({"format": FORMAT, "format_version": 1, "settings": settings,
                                "methods": methods, "class_orders": orders}), encoding="utf-8")


def continual_record(path, settings, methods, orders, steps=2):
    def units_of(old):  # the (order, method) pairs whose every step is in the file
        return {(o["order"], m): o["steps"] for m, e in old["methods"].items() for o in e["orders"]
                if len(o["steps"]) == steps}

    def extra(old):
        found = [f"the condensation config of {m!r}" for m in sorted(set(old["methods"]) & set(methods))
                 if old["methods"][m]["config"] != methods[m]["config"]]
        if old["class_orders"][:len(orders)] != orders[:len(old["class_orders"])]:
            found.append("class_orders")
        return found

    return RunRecord(path, settings, format=FORMAT, ignore=("workers", "orders"), what="a continual run",
                     units_of=units_of, extra_differences=extra)


def test_an_experiment_keeps_its_own_results_file_as_the_record(tmp_path):
    path = tmp_path / "continual.json"
    orders = [{"order": 0, "steps": [{"step": 1}, {"step": 2}]}, {"order": 1, "steps": [{"step": 1}]}]
    methods = {"dm": {"config": {"iterations": 2}, "orders": orders}}
    continual_file(path, {"epochs": 1, "workers": 1, "orders": 2}, methods, [[0, 1], [1, 0]])
    record = continual_record(path, {"epochs": 1, "workers": 4, "orders": 3}, methods, [[0, 1], [1, 0], [1, 0]])
    done = record.resume()
    assert done == {(0, "dm"): [{"step": 1}, {"step": 2}]}  # order 1 is unfinished
    with pytest.raises(ConfigError) as info:
        continual_record(path, {"epochs": 2, "workers": 1, "orders": 2},
                         {"dm": {"config": {"iterations": 3}}}, [[0, 1], [0, 1]]).resume()
    assert ("holds a continual run with other settings (epochs = 1 there, 2 here; the condensation config of "
            "'dm'; class_orders): choose another --out") in str(info.value)
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(ConfigError, match="cannot resume from .*continual.json"):
        continual_record(path, {}, {}, []).resume()


# ----------------------------------------------------------------- the experts' manifest and epochs
def test_expert_epochs_as_units_of_a_manifest_record(tmp_path):
    root = tmp_path / "experts"
    keys = ("dataset", "model", "settings", "preprocessing")
    manifest = {"format": "datadistill.expert_trajectories", "format_version": 1, "dataset": "mnist",
                "model": "convnet", "settings": {"epochs": 2, "num_experts": 1}, "preprocessing": {"zca_eps": None},
                "package_version": "0.1.0"}

    def epochs_on_disk(old):  # expert k's epoch files 0 … e that exist
        units = {}
        for k in range(old["settings"]["num_experts"]):
            e = 0
            while (root / f"expert_{k:03d}" / f"epoch_{e:03d}.safetensors").is_file():
                units[(k, e)] = root / f"expert_{k:03d}" / f"epoch_{e:03d}.safetensors"
                e += 1
        return units

    def record(settings):
        current = {k: m for k, m in {**manifest, "settings": settings}.items() if k in keys}
        return RunRecord(root / "experts.json", current, format=manifest["format"], what="expert trajectories",
                         settings_of=lambda old: {k: old.get(k) for k in keys}, units_of=epochs_on_disk)

    (root / "expert_000").mkdir(parents=True)
    (root / "experts.json").write_text(json.dumps(manifest))
    for e in (0, 1):
        (root / "expert_000" / f"epoch_{e:03d}.safetensors").write_bytes(b"x")
    r = record(manifest["settings"])
    assert set(r.resume()) == {(0, 0), (0, 1)} and r.finished((0, 2)) is None
    with pytest.raises(ConfigError, match=r"expert trajectories with other settings \(settings = .*'epochs': 2"):
        record({"epochs": 3, "num_experts": 1}).resume()
