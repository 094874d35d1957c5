"""Units of work spread over torch.distributed ranks (issue #20, items 4 and 5): two gloo processes on
the CPU give the same evaluation, experts, scores, compare tables and NAS ranking as one process.

One process group (tests/dist_helpers.py) runs every scenario of tests/dist_scenarios_units.py (starting
processes costs seconds on a small machine); each test runs its scenario again here, at world size 1,
and compares."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from datadistill.distributed import solo, world
from datadistill.errors import ConfigError
from datadistill.experiments.workers import run_tasks
from datadistill.models import MODELS
from datadistill.units import run_units
from dist_helpers import run_ranks
from dist_scenarios_units import (all_scenarios, compare_scenario, evaluation_scenario, experts_scenario, fail,
                                  nas_scenario, random_set, scores_baseline_scenario, scores_scenario, square)
from helpers import TINY_MODEL, tiny_builder, without_keys, write_fake_mnist

SECONDS = {"eval_seconds", "train_seconds", "seconds_per_network", "distill_seconds", "seconds", "start_time",
           "end_time", "synthetic_train_seconds", "real_train_seconds"}


def without_seconds(value):
    return without_keys(value, SECONDS)


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    """(scenario folder, data root, the random set's file, [rank 0's results, rank 1's])."""
    folder = tmp_path_factory.mktemp("world2")
    data_root = tmp_path_factory.mktemp("data")
    write_fake_mnist(data_root, n_train=100, n_test=50)
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setitem(MODELS._items, TINY_MODEL, tiny_builder)
        syn_path = random_set(str(data_root), str(tmp_path_factory.mktemp("random_set")))
    results = run_ranks(2, all_scenarios, str(folder), str(data_root), syn_path, out=folder / "returned")
    return folder, data_root, syn_path, results


def tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    with safe_open(str(path), "pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, f.metadata()


def same_tensor_files(a: Path, b: Path) -> None:
    ta, ma = tensors(a)
    tb, mb = tensors(b)
    assert ma == mb and ta.keys() == tb.keys(), a
    assert all(torch.equal(ta[k], tb[k]) for k in ta), a


def test_units_are_shared_out_and_every_rank_gets_every_result(two_ranks):
    _, _, _, (r0, r1) = two_ranks
    for key in ("units", "after"):
        n = len(r0[key]["values"])
        assert r0[key]["values"] == r1[key]["values"] == [i * i for i in range(n)]
        assert r0[key]["inner_world"] == {1}  # a unit runs alone (distributed.solo)
        assert r0[key]["seen"] == list(range(n)) and r1[key]["seen"] == []  # on_result: rank 0, every unit
    assert r0["units"]["together"] and r0["units"]["pids"] == 2  # both processes computed units


def test_an_error_in_one_unit_is_raised_on_every_rank(two_ranks):
    _, _, _, (r0, r1) = two_ranks
    assert r0["failing"] == r1["failing"] == "unit 1 cannot be computed"


def test_a_folder_some_rank_does_not_see_is_refused_on_every_rank(two_ranks):
    _, _, _, (r0, r1) = two_ranks
    for rank, message in enumerate((r0["unshared"], r1["unshared"])):  # each names the folder it was given
        assert message.startswith("expert folder ")
        assert f"rank{rank} is not shared: rank(s) 1 do not see the files rank 0 writes there" in message


def test_in_one_process_units_run_in_order_each_alone(monkeypatch):
    seen = []
    assert run_units(4, lambda i: (i, world().world_size), on_result=lambda i, r: seen.append(i)) == \
        [(i, 1) for i in range(4)]
    assert seen == [0, 1, 2, 3]
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert world().distributed and world().rank == 1
    with solo():
        assert world().rank == 0 and world().world_size == 1
    with pytest.raises(ConfigError, match="process group is not joined: call datadistill.distributed.init"):
        run_units(2, lambda i: i)


def test_a_failing_task_in_a_worker_process_is_raised_here():
    """Local worker processes (``workers`` ≥ 2) claim the tasks as torchrun's ranks do."""
    with pytest.raises(ValueError, match="task 2 failed"):
        run_tasks([(square, {"x": 1}), (square, {"x": 2}), (fail, {"message": "task 2 failed"})], workers=2)


def test_evaluation_of_4_networks_at_world_2_equals_world_1(two_ranks, tiny_model, tmp_path):
    folder, _, _, (r0, r1) = two_ranks
    one = evaluation_scenario(str(tmp_path))
    assert without_seconds(r0["evaluation"]["rows"]) == without_seconds(one["rows"])
    assert without_seconds(r1["evaluation"]["rows"]) == without_seconds(one["rows"])
    assert r0["evaluation"]["reported"] == one["reported"] and len(one["reported"]) == 4
    assert not r1["evaluation"]["reported"]  # progress: rank 0 only
    saved = r0["evaluation"]["saved"]  # rank 0 saves every network, those trained on rank 1 included
    assert saved.keys() == one["saved"].keys() == {f"{m}_{k}" for m in (TINY_MODEL, "mlp") for k in (0, 1)}
    assert all(torch.equal(saved[n][p], one["saved"][n][p]) for n in saved for p in saved[n])
    assert not r1["evaluation"]["saved"]
    for model in (TINY_MODEL, "mlp"):  # rank 0 recorded every network in the parts
        parts = json.loads((folder / "evaluation" / "parts" / f"{model}.json").read_text())
        assert sorted(parts["units"]) == ["0", "1"]


def test_experts_at_world_2_equal_world_1(two_ranks, tiny_model, tmp_path):
    folder, _, _, _ = two_ranks
    experts_scenario(str(tmp_path / "experts"))
    files = sorted(p.relative_to(tmp_path / "experts") for p in (tmp_path / "experts").rglob("*.safetensors"))
    assert len(files) == 3 * 3  # 3 experts × epochs 0 … 2
    assert files == sorted(p.relative_to(folder / "experts") for p in (folder / "experts").rglob("*.safetensors"))
    for f in files:
        same_tensor_files(folder / "experts" / f, tmp_path / "experts" / f)
    assert (folder / "experts" / "experts.json").read_text() == (tmp_path / "experts" / "experts.json").read_text()
    assert not list((folder / "experts").glob(".datadistill-shared-*"))  # the shared-folder probe is removed


def test_evaluate_scores_trains_its_new_baseline_once_and_every_rank_uses_it(two_ranks, tiny_model, tmp_path):
    """``evaluate --scores`` with a folder holding no baseline yet: one rank trains it (as one unit),
    every rank reads it, and the scores equal one process's."""
    folder, data_root, syn_path, (r0, r1) = two_ranks
    assert r0["scores_baseline"]["trained"] + r1["scores_baseline"]["trained"] == 1
    assert {p.name for p in (folder / "scores_baseline").iterdir()} == {"baseline.json", "model.safetensors"}
    one = scores_baseline_scenario(syn_path, str(data_root), str(tmp_path / "baseline"))
    assert one["trained"] == 1
    def same_folder(scores: dict, baseline: Path) -> dict:  # the baseline's folder (and teacher file) as one name
        return json.loads(json.dumps(without_seconds(scores)).replace(str(baseline), "BASELINE"))

    for r in (r0, r1):
        assert same_folder(r["scores_baseline"]["scores"], folder / "scores_baseline") == \
            same_folder(one["scores"], tmp_path / "baseline")


def test_scores_at_world_2_equal_world_1(two_ranks, tiny_model):
    _, _, _, (r0, r1) = two_ranks
    for score in ("el2n", "forgetting"):
        one = scores_scenario(score)
        assert torch.equal(r0["scores"][score], one) and torch.equal(r1["scores"][score], one)


def test_compare_grid_of_4_cells_with_2_ranks_writes_the_same_tables(two_ranks, tiny_model, tmp_path):
    folder, data_root, _, (r0, r1) = two_ranks
    rows = compare_scenario(str(data_root), str(tmp_path))
    assert len(rows) == 4 and all(r["status"] == "done" for r in rows)
    assert without_seconds(r0["compare"]) == without_seconds(r1["compare"]) == without_seconds(rows)
    two = folder / "compare"
    for name in ("results.json", "summary.json"):
        assert without_seconds(json.loads((two / name).read_text())) == without_seconds(
            json.loads((tmp_path / name).read_text()))
    assert (two / "accuracy_vs_ipc.png").is_file()
    for row in rows:  # each cell's set, whichever rank distilled it
        same_tensor_files(two / "cells" / row["cell"] / "synthetic.safetensors",
                          tmp_path / "cells" / row["cell"] / "synthetic.safetensors")


def test_nas_at_world_2_equals_world_1(two_ranks, tiny_model, tmp_path):
    folder, _, _, (r0, r1) = two_ranks
    one = nas_scenario(str(tmp_path))
    for r in (r0, r1):
        assert without_seconds(r["nas"]["rows"]) == without_seconds(one["rows"])
        assert r["nas"]["summary"] == one["summary"]
    record = json.loads((folder / "nas" / "nas_run.json").read_text())  # rank 0 recorded every training
    assert len(record["units"]) == 2 * len(one["rows"])
    assert json.loads((folder / "nas" / "nas.json").read_text())["summary"] == one["summary"]
