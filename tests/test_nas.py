"""Architecture search with a synthetic proxy (experiments/nas/), the MLP's width/depth arguments and
EvalSettings.model_args."""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from datadistill.experiments import nas
from datadistill.experiments import workers as workers_module
from datadistill.experiments.nas import (
    FAMILY_KEYS, SearchSpace, candidate_seed, load_search_space, parse_search_space, run_nas, summarise,
)
from datadistill.errors import ConfigError, UnknownNameError
from datadistill.evaluation import EvalSettings, evaluate_synthetic_set
from datadistill.io import SyntheticSet, save_synthetic_set
from datadistill.models import build_model
from datadistill.models.convnet import ACTIVATIONS, NORMS, POOLINGS
from helpers import TINY_SPEC, make_tiny_dataset

CPU = torch.device("cpu")
CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "nas"
TINY_SPACE = {"family": "convnet", "depth": [1, 2], "width": 4, "norm": ["instancenorm", "batchnorm"]}
VAL_SIZE = 15  # of the tiny dataset's 60 training images
RUN_ARGS = dict(num_eval=2, epochs=2, batch_size=256, real_epochs=1, real_batch_size=16, val_size=VAL_SIZE,
                seed=3, device="cpu")


def tiny_synthetic(n_per_class: int = 2, size: int = 28) -> SyntheticSet:
    gen = torch.Generator().manual_seed(5)
    k = TINY_SPEC.num_classes
    labels = torch.arange(k).repeat_interleave(n_per_class)
    return SyntheticSet(torch.randn(len(labels), 1, size, size, generator=gen), labels, metadata={
        "dataset": "tiny", "channels": 1, "image_size": [size, size], "mean": [0.5], "std": [0.25],
        "method": "random", "ipc": n_per_class, "num_classes": k})


@pytest.fixture(scope="module")
def synthetic_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("syn") / "synthetic.safetensors"
    save_synthetic_set(tiny_synthetic(), path)
    return path


@pytest.fixture(scope="module")
def in_process_run(synthetic_file, tmp_path_factory):
    """One search of the 4-candidate tiny space in this process, written to a folder."""
    out = tmp_path_factory.mktemp("nas") / "out"
    before = torch.random.get_rng_state()
    seen = []
    result = run_nas(synthetic_file, TINY_SPACE, out, dataset=make_tiny_dataset(), workers=0,
                     progress=lambda phase, done, total, row: seen.append((phase, done, total, row["name"])),
                     **RUN_ARGS)
    return result, out, seen, before, torch.random.get_rng_state()


# ---------------------------------------------------------------------------------- search spaces


def test_shipped_spaces_parse_and_fit_mnist():
    dc = load_search_space(CONFIGS / "convnet_dc.yaml")
    assert dc.family == "convnet" and len(dc.candidates()) == dc.grid_size == 720
    assert set(dc.grid["norm"]) == set(NORMS) and set(dc.grid["activation"]) == set(ACTIVATIONS)
    assert set(dc.grid["pooling"]) == set(POOLINGS)
    assert dc.grid["depth"] == (1, 2, 3, 4) and dc.grid["width"] == (32, 64, 128, 256)
    cpu = load_search_space(CONFIGS / "convnet_mnist_cpu.yaml")
    assert cpu.family == "convnet" and len(cpu.candidates()) >= 24 and max(cpu.grid["width"]) <= 64
    mlp = load_search_space(CONFIGS / "mlp_mnist.yaml")
    assert mlp.family == "mlp" and set(mlp.grid) == {"depth", "width"} and len(mlp.candidates()) >= 24
    # every candidate builds for MNIST (the DC space: its largest, deepest corner, to stay quick)
    biggest = [c for c in dc.candidates() if c.args["depth"] == 4 and c.args["width"] == 256]
    for cands in (cpu.candidates(), mlp.candidates(), biggest):
        params = nas.check_candidates(cands, (1, 28, 28), 10)
        assert len(params) == len(cands) and all(p > 0 for p in params)


def test_cartesian_product_order_and_names():
    data = {"family": "convnet", "depth": [1, 2], "width": [8, 16, 32], "activation": ["relu", "sigmoid"]}
    space = parse_search_space(data)
    cands = space.candidates()
    expected = list(itertools.product(data["depth"], data["width"], data["activation"]))  # last key fastest
    assert [(c.args["depth"], c.args["width"], c.args["activation"]) for c in cands] == expected
    assert [c.index for c in cands] == list(range(len(expected)))
    assert all(list(c.args) == ["depth", "width", "activation"] for c in cands)  # unlisted keys: builder defaults
    assert len({c.name for c in cands}) == len(cands)
    assert cands[3].name == f"convnet-d{expected[3][0]}-w{expected[3][1]}-{expected[3][2]}"
    # key order in the file does not matter; a scalar is a one-value list
    shuffled = parse_search_space({"activation": ["relu", "sigmoid"], "width": [8, 16, 32], "depth": [1, 2],
                                   "family": "convnet", "pooling": "maxpooling"})
    assert [c.args for c in shuffled.candidates()] == [{**c.args, "pooling": "maxpooling"} for c in cands]


def test_sample_is_reproducible_and_a_subset_of_the_grid():
    grid = {"family": "convnet", "depth": [1, 2, 3, 4], "width": [32, 64, 128, 256],
            "activation": list(ACTIVATIONS), "norm": list(NORMS), "pooling": list(POOLINGS)}
    full = parse_search_space(grid)
    a = parse_search_space({**grid, "sample": 12, "seed": 7})
    b = parse_search_space({**grid, "sample": 12, "seed": 7})
    c = parse_search_space({**grid, "sample": 12, "seed": 8})
    assert a.indices() == b.indices() and [x.args for x in a.candidates()] == [x.args for x in b.candidates()]
    assert a.indices() != c.indices()
    idx = a.indices()
    assert len(idx) == 12 == len(set(idx)) and idx == sorted(idx) and all(0 <= i < full.grid_size for i in idx)
    assert [x.args for x in a.candidates()] == [full.candidates()[i].args for i in idx]
    everything = parse_search_space({"family": "mlp", "depth": [1, 2], "width": [4, 8], "sample": 4})
    assert everything.indices() == [0, 1, 2, 3]


@pytest.mark.parametrize("data, needles", [
    ([1, 2], ["not a mapping"]),
    ({"depth": [1, 2]}, ["family is missing", "convnet", "mlp"]),
    ({"family": "resnet", "depth": [1, 2]}, ["'resnet'", "convnet, mlp"]),
    ({"family": "convnet", "depth": [1, 2], "dropout": [0.1]}, ["'dropout'", "activation", "pooling"]),
    ({"family": "mlp", "width": [8, 16], "norm": ["none"]}, ["'norm'", "mlp", "depth, width"]),
    ({"family": "convnet", "depth": [], "width": [8, 16]}, ["depth = []", "empty"]),
    ({"family": "convnet", "depth": [1, 2], "norm": ["batchnorm2d"]}, ["'batchnorm2d'", "instancenorm", "groupnorm"]),
    ({"family": "convnet", "depth": [1, 2], "activation": ["gelu"]}, ["'gelu'", "leakyrelu"]),
    ({"family": "convnet", "depth": [1, 2], "pooling": ["strided"]}, ["'strided'", "avgpooling"]),
    ({"family": "convnet", "depth": [0, 1]}, ["depth", "0", "integer ≥ 1"]),
    ({"family": "mlp", "width": [8, 2.5]}, ["width", "2.5", "integer ≥ 1"]),
    ({"family": "mlp", "width": [8, True]}, ["width", "True"]),
    ({"family": "convnet", "width": [8, 8]}, ["width", "twice"]),
    ({"family": "convnet", "width": [8]}, ["1 candidate", "at least two"]),
    ({"family": "mlp", "width": [8, 16], "sample": 1}, ["sample = 1", "≥ 2"]),
    ({"family": "mlp", "width": [8, 16], "sample": 3}, ["sample = 3", "2 candidates", "2 … 2"]),
    ({"family": "mlp", "width": [8, 16], "sample": "two"}, ["sample = 'two'"]),
    ({"family": "mlp", "width": [8, 16], "seed": -1}, ["seed = -1", "≥ 0"]),
])
def test_space_errors_name_the_value_and_what_is_accepted(data, needles):
    with pytest.raises(ConfigError) as info:
        parse_search_space(data)
    for needle in needles:
        assert needle in str(info.value), (needle, str(info.value))


def test_space_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_search_space(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("family: [convnet\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_search_space(bad)
    listed = tmp_path / "list.yaml"
    listed.write_text("- convnet\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="mapping"):
        load_search_space(listed)
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("family: convnet\nnorm: [fancy, none]\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_search_space(wrong)
    assert str(wrong) in str(info.value) and "'fancy'" in str(info.value)


# ---------------------------------------------------------------------------------------- summary


def _spearman_no_ties(x, y):
    """1 − 6 Σd² / (n (n² − 1)) with d the rank differences (no ties)."""
    rx = {v: r for r, v in enumerate(sorted(x))}
    ry = {v: r for r, v in enumerate(sorted(y))}
    d2 = sum((rx[a] - ry[b]) ** 2 for a, b in zip(x, y))
    n = len(x)
    return 1 - 6 * d2 / (n * (n * n - 1))


def test_spearman_of_a_known_permutation():
    syn = [50.0, 60.0, 70.0, 80.0, 90.0]
    real = [61.0, 55.0, 80.0, 72.0, 95.0]  # neighbours 1↔2 and 3↔4 swapped
    s = summarise(syn, real, top=(5,))
    assert s["spearman"]["all"] == pytest.approx(_spearman_no_ties(syn, real))
    assert s["spearman"]["all"] == pytest.approx(1 - 6 * 4 / (5 * 24))  # Σd² = 4
    assert s["spearman"]["top5"] == pytest.approx(s["spearman"]["all"])  # k = n: all of them
    assert summarise(syn, syn)["spearman"]["all"] == pytest.approx(1.0)
    assert summarise(syn, syn[::-1])["spearman"]["all"] == pytest.approx(-1.0)
    assert 0.0 < s["spearman_pvalue"] < 1.0


def test_spearman_with_ties_uses_average_ranks():
    # synthetic ranks (1, 2.5, 2.5, 4) against (1, 2, 3, 4): cov 4.5, var 4.5 and 5 → ρ = 4.5 / √22.5
    s = summarise([10.0, 20.0, 20.0, 30.0], [1.0, 2.0, 3.0, 4.0])
    assert s["spearman"]["all"] == pytest.approx(4.5 / math.sqrt(4.5 * 5.0))


def test_top_k_uses_the_best_by_real_and_is_undefined_beyond_n():
    # the 3 best by real (positions 3, 4, 5) are ordered the other way round by the synthetic side
    syn = [1.0, 2.0, 3.0, 6.0, 5.0, 4.0]
    real = [10.0, 20.0, 30.0, 40.0, 50.0, 60.0]
    s = summarise(syn, real, top=(3, 6, 10))
    assert s["spearman"]["top3"] == pytest.approx(-1.0)
    assert s["spearman"]["top6"] == pytest.approx(s["spearman"]["all"]) and s["spearman"]["all"] > 0
    assert s["spearman"]["top10"] is None  # k > n
    assert set(s["spearman"]) == {"all", "top3", "top6", "top10"}


def test_best_agreement_rank_and_regret():
    syn = [70.0, 90.0, 80.0, 60.0]
    real = [95.0, 85.0, 90.0, 70.0]
    s = summarise(syn, real)
    assert (s["synthetic_best"], s["real_best"]) == (1, 0)
    assert s["best_agrees"] is False
    assert s["synthetic_best_real_rank"] == 3  # 85 is the third-best real accuracy
    assert s["real_best_synthetic_rank"] == 3
    assert s["regret"] == pytest.approx(95.0 - 85.0)
    agree = summarise([1.0, 3.0, 2.0], [5.0, 9.0, 7.0])
    assert agree["best_agrees"] is True and agree["synthetic_best_real_rank"] == 1 and agree["regret"] == 0.0


def test_ties_for_the_best():
    # synthetic tie for first: the first in input order is the pick (position 1, not 2)
    s = summarise([10.0, 30.0, 30.0], [1.0, 2.0, 3.0])
    assert s["synthetic_best"] == 1 and s["synthetic_best_real_rank"] == 2 and not s["best_agrees"]
    # the pick shares the best real accuracy with another candidate: rank 1, agrees, no regret
    t = summarise([10.0, 30.0, 20.0], [50.0, 50.0, 40.0])
    assert t["real_best"] == 0 and t["synthetic_best"] == 1
    assert t["synthetic_best_real_rank"] == 1 and t["best_agrees"] and t["regret"] == 0.0


def test_undefined_correlations_are_none():
    flat = summarise([33.3, 33.3, 33.3], [10.0, 20.0, 30.0], top=(2,))
    assert flat["spearman"]["all"] is None and flat["spearman_pvalue"] is None
    assert flat["spearman"]["top2"] is None
    one = summarise([40.0], [50.0], top=(1, 5))
    assert one["spearman"] == {"all": None, "top1": None, "top5": None} and one["best_agrees"]


@pytest.mark.parametrize("syn, real, top, needle", [
    ([1.0, 2.0], [1.0], (5,), "2 synthetic accuracies but 1"),
    ([], [], (5,), "no candidates"),
    ([1.0, float("nan")], [1.0, 2.0], (5,), "synthetic[1] = nan"),
    ([1.0, 2.0], [1.0, "x"], (5,), "real[1] = 'x'"),
    ([1.0, 2.0], [1.0, 2.0], (0,), "top = 0"),
])
def test_summarise_errors(syn, real, top, needle):
    with pytest.raises(ConfigError) as info:
        summarise(syn, real, top=top)
    assert needle in str(info.value)


# --------------------------------------------------------------------------------------- the run


def test_run_writes_the_four_files(in_process_run):
    result, out, _, _, _ = in_process_run
    # the four files and the run record (resume); no temp files
    assert sorted(p.name for p in out.iterdir()) == ["nas.csv", "nas.json", "nas.md", "nas.png", "nas_run.json"]
    doc = json.loads((out / "nas.json").read_text(encoding="utf-8"))
    assert doc["format"] == "datadistill.nas" and doc["space"]["family"] == "convnet"
    assert doc["space"]["grid_size"] == 4 and len(doc["candidates"]) == 4
    assert doc == json.loads(json.dumps(result.as_dict()))
    rows = doc["candidates"]
    syn = [r["synthetic_val_accuracy"] for r in rows]
    real = [r["real_val_accuracy"] for r in rows]
    # the summary is summarise() of the rows' validation accuracies
    expected = json.loads(json.dumps(summarise(syn, real)))
    assert {k: doc["summary"][k] for k in expected} == expected
    assert doc["summary"]["synthetic_best_name"] == rows[expected["synthetic_best"]]["name"]
    # ranks: 1 + the number of candidates strictly better
    for r in rows:
        assert r["real_rank"] == 1 + sum(v > r["real_val_accuracy"] for v in real)
        assert r["synthetic_rank"] == 1 + sum(v > r["synthetic_val_accuracy"] for v in syn)
        assert r["synthetic_val_accuracy"] == pytest.approx(sum(r["synthetic_val_accuracies"]) / 2)
        assert r["model_args"] == {k: r[k] for k in ("depth", "width", "norm")}
        assert r["seed"] == candidate_seed(RUN_ARGS["seed"], r["index"])
    # validation accuracies are multiples of 100/15 (15 images), test ones of 100/30: the two sets differ
    for r in rows:
        for v in r["synthetic_val_accuracies"] + [r["real_val_accuracy"]]:
            assert v * VAL_SIZE / 100 == pytest.approx(round(v * VAL_SIZE / 100))
        for v in r["synthetic_test_accuracies"] + [r["real_test_accuracy"]]:
            assert v * 30 / 100 == pytest.approx(round(v * 30 / 100))
    settings = doc["settings"]
    sizes = (settings["val_images"], settings["real_train_images"], settings["test_images"])
    assert sizes == (VAL_SIZE, 60 - VAL_SIZE, 30)
    assert settings["synthetic_protocol"]["model"] == "convnet" and settings["real_proxy"]["epochs"] == 1
    t = doc["times"]
    assert t["synthetic_train_seconds"] == pytest.approx(sum(r["synthetic_train_seconds"] for r in rows))
    assert t["train_seconds_ratio"] == pytest.approx(t["real_train_seconds"] / t["synthetic_train_seconds"])
    assert t["wall_seconds_ratio"] == pytest.approx(t["real_wall_seconds"] / t["synthetic_wall_seconds"])
    assert 0 < t["synthetic_wall_seconds"] <= t["total_wall_seconds"]
    # in this process the two searches run one after the other
    assert t["synthetic_wall_seconds"] + t["real_wall_seconds"] <= t["total_wall_seconds"] + 1e-3

    table = list(csv.DictReader(io.StringIO((out / "nas.csv").read_text(encoding="utf-8"))))
    assert [r["name"] for r in table] == [r["name"] for r in rows]
    assert [float(r["real_val_accuracy"]) for r in table] == real
    assert [[float(v) for v in r["synthetic_val_accuracies"].split(";")] for r in table] == \
        [r["synthetic_val_accuracies"] for r in rows]
    assert {"depth", "width", "norm", "real_rank", "synthetic_rank"} <= set(table[0])

    md = (out / "nas.md").read_text(encoding="utf-8")
    lines = [line for line in md.splitlines() if line.startswith("| ") and "`convnet-" in line]
    assert len(lines) == 4 and all(r["name"] in md for r in rows)
    assert [int(line.split("|")[1]) for line in lines] == sorted(r["real_rank"] for r in rows)
    rho = doc["summary"]["spearman"]["all"]
    assert ("—" if rho is None else f"{rho:.3f}") in md and "top-20 —" in md  # 4 candidates: no top-20

    png = (out / "nas.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    from matplotlib.image import imread

    assert imread(out / "nas.png").shape[0] > 100


def test_run_reports_progress_and_keeps_the_global_rng(in_process_run):
    result, _, seen, before, after = in_process_run
    names = [r["name"] for r in result.rows]
    assert [s[:3] for s in seen] == [("synthetic", k, 4) for k in (1, 2, 3, 4)] + [("real", k, 4) for k in (1, 2, 3, 4)]
    assert [s[3] for s in seen] == names + names
    assert torch.equal(before, after)


def test_results_do_not_depend_on_workers(in_process_run, synthetic_file, monkeypatch):
    # 1 torch thread per worker, as in this process (conftest), whatever the machine's core count
    monkeypatch.setattr(workers_module.os, "cpu_count", lambda: 2)
    result, _, _, _, _ = in_process_run
    parallel = run_nas(synthetic_file, TINY_SPACE, None, dataset=make_tiny_dataset(), workers=2, **RUN_ARGS)
    keys = ("index", "seed", "params", "synthetic_val_accuracies", "synthetic_test_accuracies", "real_val_accuracy",
            "real_test_accuracy", "synthetic_rank", "real_rank")
    assert [{k: r[k] for k in keys} for r in parallel.rows] == [{k: r[k] for k in keys} for r in result.rows]
    assert parallel.summary == result.summary


def test_a_candidate_gets_the_same_result_when_the_space_is_sampled(in_process_run, synthetic_file):
    result, _, _, _, _ = in_process_run
    sampled = run_nas(synthetic_file, {**TINY_SPACE, "sample": 2, "seed": 1}, None, dataset=make_tiny_dataset(),
                      workers=0, **RUN_ARGS)
    by_index = {r["index"]: r for r in result.rows}
    keys = ("synthetic_val_accuracies", "synthetic_test_accuracies", "real_val_accuracy", "real_test_accuracy")
    assert len(sampled.rows) == 2
    for r in sampled.rows:
        assert {k: r[k] for k in keys} == {k: by_index[r["index"]][k] for k in keys}


def test_candidate_seed_depends_on_seed_and_index_only():
    assert candidate_seed(0, 5) == candidate_seed(0, 5)
    seeds = {candidate_seed(s, i) for s in range(3) for i in range(50)}
    assert len(seeds) == 150 and all(0 <= s < 2 ** 32 for s in seeds)


def test_validation_is_carved_from_training_and_the_subset_is_per_class():
    data = make_tiny_dataset()
    syn, train, val, test = nas.prepare_splits(data, tiny_synthetic(), 12, 5, seed=0)
    assert len(val) == 12 and len(train) == 5 * 3
    assert torch.bincount(train.labels, minlength=3).tolist() == [5, 5, 5]
    assert test is data.test  # the test set is left as it is
    flat = data.train.images.flatten(1)

    def rows_of(images):
        return {int((flat == x).all(dim=1).nonzero()[0]) for x in images.flatten(1)}

    assert rows_of(val.images).isdisjoint(rows_of(train.images))
    again = nas.prepare_splits(data, tiny_synthetic(), 12, 5, seed=0)
    assert torch.equal(again[1].images, train.images) and torch.equal(again[2].images, val.images)
    assert syn.zca is None and syn.metadata["num_classes"] == 3


@pytest.mark.parametrize("change, needles", [
    ({"space": {"family": "convnet", "depth": [1, 2], "norm": ["fancy"]}}, ["'fancy'"]),
    ({"space": {**TINY_SPACE, "depth": [1, 6]}}, ["candidate convnet-d6-w4", "too small"]),
    ({"val_size": 60}, ["val_size = 60", "1 … 59"]),
    ({"val_size": 0}, ["val_size = 0"]),
    ({"real_subset": 50}, ["real_subset = 50", "smallest class"]),
    ({"real_epochs": 0}, ["real proxy: epochs = 0", "integer ≥ 1"]),
    ({"real_subset": 0}, ["real proxy: subset = 0"]),
    ({"epochs": 0}, ["epochs"]),
    ({"workers": -1}, ["workers = -1"]),
    ({"seed": -2}, ["seed = -2"]),
    ({"dsa_strategy": "warp"}, ["'warp'"]),
    ({"synthetic": tiny_synthetic(size=32)}, ["(1, 32, 32)", "(1, 28, 28)"]),
])
def test_invalid_inputs_fail_before_training_and_write_nothing(tmp_path, synthetic_file, change, needles, monkeypatch):
    def no_training(*a, **k):
        raise AssertionError("training started")

    monkeypatch.setattr(workers_module, "run_tasks", no_training)
    out = tmp_path / "out"
    args = {**RUN_ARGS, **{k: v for k, v in change.items() if k not in ("space", "synthetic")}}
    with pytest.raises(ConfigError) as info:
        run_nas(change.get("synthetic", synthetic_file), change.get("space", TINY_SPACE), out,
                dataset=make_tiny_dataset(), workers=args.pop("workers", 0), **args)
    for needle in needles:
        assert needle in str(info.value), (needle, str(info.value))
    assert not out.exists()


def test_out_must_be_a_folder(tmp_path, synthetic_file):
    file = tmp_path / "taken"
    file.write_text("x", encoding="utf-8")
    with pytest.raises(ConfigError, match="not a folder"):
        run_nas(synthetic_file, TINY_SPACE, file, dataset=make_tiny_dataset(), workers=0, **RUN_ARGS)
    assert file.read_text(encoding="utf-8") == "x"


# ------------------------------------------------------------------- mlp width/depth, model_args


def _linears(net: nn.Module) -> list[nn.Linear]:
    return [m for m in net.modules() if isinstance(m, nn.Linear)]


def test_mlp_defaults_are_the_reference_mlp():
    torch.manual_seed(0)
    default = build_model("mlp", 1, 10, (28, 28))
    torch.manual_seed(0)
    explicit = build_model("mlp", 1, 10, (28, 28), width=128, depth=2)
    assert [tuple(p.shape) for p in default.parameters()] == [tuple(p.shape) for p in explicit.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(default.parameters(), explicit.parameters()))
    assert [(lin.in_features, lin.out_features) for lin in _linears(default)] == [(784, 128), (128, 128), (128, 10)]


@pytest.mark.parametrize("width, depth", [(7, 1), (7, 3), (32, 4)])
def test_mlp_width_and_depth(width, depth):
    net = build_model("mlp", 3, 5, (8, 8), width=width, depth=depth)
    shapes = [(lin.in_features, lin.out_features) for lin in _linears(net)]
    assert shapes == [(3 * 8 * 8, width)] + [(width, width)] * (depth - 1) + [(width, 5)]
    x = torch.randn(4, 3, 8, 8)
    feats = net.features(x)
    assert len(feats.activations) == depth and all(a.shape == (4, width, 1, 1) for a in feats.activations)
    assert net(x).shape == (4, 5) and net.embed(x).shape == (4, width) and net.embedding_dim == width


@pytest.mark.parametrize("kw, needle", [({"width": 0}, "width = 0"), ({"depth": 0}, "depth = 0"),
                                        ({"depth": 2.5}, "depth = 2.5"), ({"width": True}, "width = True")])
def test_mlp_rejects_bad_width_or_depth(kw, needle):
    with pytest.raises(ConfigError, match=needle):
        build_model("mlp", 1, 10, (28, 28), **kw)


def _eval_settings(**kw):
    return EvalSettings(**{"model": "mlp", "num_eval": 2, "epochs": 1, "batch_size": 4, "dsa_strategy": "none", **kw})


@pytest.mark.parametrize("vectorise", [True, False])
def test_model_args_reach_the_built_model(tiny_dataset, vectorise):
    nets = []
    settings = _eval_settings(model_args={"width": 5, "depth": 3}, vectorise=vectorise)
    res = evaluate_synthetic_set(tiny_synthetic(), tiny_dataset.test, settings, CPU, seed=0,
                                 on_model=lambda k, net: nets.append(net))
    assert res.vectorised is vectorise and len(nets) == 2
    for net in nets:
        assert [(lin.in_features, lin.out_features) for lin in _linears(net)] == [(784, 5), (5, 5), (5, 5), (5, 3)]


def test_model_args_for_the_convnet_and_batchnorm_fallback(tiny_dataset):
    nets = []
    settings = _eval_settings(model="convnet", model_args={"width": 4, "depth": 1, "norm": "batchnorm"})
    res = evaluate_synthetic_set(tiny_synthetic(), tiny_dataset.test, settings, CPU, seed=0,
                                 on_model=lambda k, net: nets.append(net))
    assert not res.vectorised  # BatchNorm: the sequential loop
    assert all(len(net.blocks) == 1 and net.blocks[0][0].out_channels == 4 for net in nets)
    assert all(isinstance(net.blocks[0][1], nn.BatchNorm2d) for net in nets)


def test_model_args_errors_and_defaults(tiny_dataset):
    assert EvalSettings().model_args == {}
    source = {"width": 5}
    s = EvalSettings(model="mlp", model_args=source)
    source["width"] = 6
    assert s.model_args == {"width": 5}  # a private copy
    assert hash(s) == hash(EvalSettings(model="mlp", model_args={"width": 9}))  # still hashable
    with pytest.raises(ConfigError, match="model_args"):
        EvalSettings(model_args=[("width", 5)])
    with pytest.raises(ConfigError) as info:
        evaluate_synthetic_set(tiny_synthetic(), tiny_dataset.test,
                               _eval_settings(model="lenet", model_args={"width": 5}), CPU)
    assert "'lenet'" in str(info.value) and "width" in str(info.value)
    with pytest.raises(UnknownNameError):
        evaluate_synthetic_set(tiny_synthetic(), tiny_dataset.test, _eval_settings(model="nosuchnet"), CPU)


def test_families_are_registered_models():
    for family in FAMILY_KEYS:
        build_model(family, 1, 3, (28, 28))
    assert isinstance(parse_search_space({"family": "mlp", "width": [4, 8]}), SearchSpace)
