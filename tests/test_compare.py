"""``datadistill compare``: grid expansion and validation, cell reuse, failures, tables and plots."""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from pathlib import Path

import pytest

import datadistill.api as api
from datadistill.experiments.compare import load_compare, run_compare, summarize
from datadistill.errors import ConfigError, NonFiniteLossError, UnknownNameError
from datadistill.io import atomic_write_text
from helpers import TINY_MODEL

REPO = Path(__file__).resolve().parents[1]
PNG = b"\x89PNG\r\n\x1a\n"


class FakeRun:
    """Stands in for ``api.run_distill``: writes a ``metrics.json`` (accuracies from ``accuracies`` keyed
    by (method, ipc, seed), else a formula), records the calls, raises for the cells in ``fail``."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.accuracies: dict[tuple[str, int, int], list[float]] = {}
        self.seconds: dict[tuple[str, int, int], float] = {}
        self.fail: dict[tuple[str, int, int], Exception] = {}

    def __call__(self, config, out_dir, callbacks=()):
        out = Path(out_dir)
        self.calls.append(out.name)
        key = (config.method, config.ipc, config.seed)
        if key in self.fail:
            raise self.fail[key]
        accs = self.accuracies.get(key, [50.0 + config.ipc + config.seed + k for k in range(max(config.num_eval, 1))])
        metrics = {"method": config.method, "dataset": config.dataset, "ipc": config.ipc, "init": config.init,
                   "seed": config.seed, "iterations": config.iterations, "distill_seconds": self.seconds.get(key, 10.0),
                   "eval_seconds": 2.0, "accuracies": accs, "accuracy_mean": statistics.fmean(accs),
                   "accuracy_std": statistics.pstdev(accs)}
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "metrics.json", json.dumps(metrics))


@pytest.fixture
def fake_run(monkeypatch) -> FakeRun:
    fake = FakeRun()
    monkeypatch.setattr(api, "run_distill", fake)
    return fake


def grid(**kw) -> dict:
    base = {"base": {"iterations": 5, "num_eval": 2, "eval_epochs": 7},
            "methods": ["random", "dm"], "ipc": [1, 10], "init": ["real"], "seeds": [0, 1]}
    return {**base, **kw}


def read_csv(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))


# -------------------------------------------------------------------------------------- the grid


def test_cells_coreset_collapses_inits_and_settings_layer():
    plan = load_compare(grid(
        base={"iterations": 5, "max_seconds": 30, "lr_img": 0.5, "num_eval": 2},
        methods=["herding", "dm",
                 {"method": "datadam", "label": "dam", "lr_img": 2.0, "method_args": {"attention_power": 1},
                  "by_ipc": {10: {"lr_img": 3.0, "num_eval": 1, "method_args": {"mask_shallow": 0.5}}}},
                 {"method": "dm", "label": "dm_herd", "init": "herding"}],
        init=["real", "noise"]))
    # per (ipc, seed): herding 1 + dm 2 inits + dam 2 inits + dm_herd 1 = 6; 2 ipc × 2 seeds
    assert len(plan.cells) == 24
    names = [c.name for c in plan.cells]
    assert len(set(names)) == 24
    assert names[:6] == ["herding_ipc1_herding_seed0", "dm_ipc1_real_seed0", "dm_ipc1_noise_seed0",
                         "dam_ipc1_real_seed0", "dam_ipc1_noise_seed0", "dm_herd_ipc1_herding_seed0"]
    assert all(c.config.seed == 0 for c in plan.cells[:12])  # seed 0 first: an interrupted grid covers all
    by_name = {c.name: c for c in plan.cells}
    herding = by_name["herding_ipc10_herding_seed1"].config
    assert (herding.method, herding.init, herding.iterations, herding.max_seconds) == ("herding", "herding", 0, None)
    assert by_name["herding_ipc10_herding_seed1"].column_init is None
    dm = by_name["dm_ipc10_noise_seed1"].config
    assert (dm.iterations, dm.max_seconds, dm.lr_img, dm.init, dm.seed, dm.ipc) == (5, 30, 0.5, "noise", 1, 10)
    assert dm.method_args == {}
    dam1, dam10 = by_name["dam_ipc1_real_seed0"].config, by_name["dam_ipc10_real_seed0"].config
    assert (dam1.lr_img, dam1.num_eval) == (2.0, 2)  # entry overrides base
    assert (dam10.lr_img, dam10.num_eval) == (3.0, 1)  # by_ipc overrides the entry at that IPC only
    assert dam1.method_args == {"attention_power": 1}
    assert dam10.method_args == {"attention_power": 1, "mask_shallow": 0.5}  # method_args merged
    assert by_name["dm_herd_ipc1_herding_seed0"].config.init == "herding"


@pytest.mark.parametrize("change, error, needles", [
    ({"colour": "red"}, ConfigError, ["'colour'", "base, methods, ipc"]),
    ({"base": {"iterationz": 3}}, ConfigError, ["'iterationz'", "base", "iterations"]),
    ({"base": {"ipc": 3}}, ConfigError, ["base.ipc = 3", "grid"]),
    ({"base": {"iterations": -1}}, ConfigError, ["cell dm_ipc1_real_seed0", "iterations = -1", "≥ 0"]),
    ({"base": {"num_eval": "two"}}, ConfigError, ["num_eval = 'two'", "int"]),
    ({"methods": []}, ConfigError, ["methods = []", "non-empty", "datadam"]),
    ({"methods": ["dmm"]}, UnknownNameError, ["methods[0]", "'dmm'", "did you mean 'dm'"]),
    ({"methods": ["dm", {"method": "dm", "lr_img": 2}]}, ConfigError, ["label 'dm'", "methods[0]", "distinct"]),
    ({"methods": [{"method": "dm", "seed": 3}]}, ConfigError, ["methods[0].seed = 3", "grid"]),
    ({"methods": [{"method": "dm", "label": "a/b"}]}, ConfigError, ["'a/b'", "letters"]),
    ({"methods": [{"method": "dm", "method_args": {"bogus": 1}}]}, ConfigError, ["cell dm_ipc1", "'bogus'"]),
    ({"methods": [{"method": "dm", "model": "nonet"}]}, UnknownNameError, ["unknown model 'nonet'"]),
    ({"methods": [{"method": "herding", "init": "real"}]}, ConfigError, ["'real'", "coreset"]),
    ({"methods": [{"method": "mtt", "method_args": {"experts": "no/such/dir"}}]}, ConfigError,
     ["'no/such/dir'", "experts.json", "datadistill experts"]),
    ({"ipc": []}, ConfigError, ["ipc = []", "empty"]),
    ({"ipc": [1, 2.5]}, ConfigError, ["2.5", "integer ≥ 1"]),
    ({"ipc": [1, True]}, ConfigError, ["True", "integer"]),
    ({"ipc": [1, 1]}, ConfigError, ["twice"]),
    ({"seeds": ["a"]}, ConfigError, ["seeds", "'a'", "integer ≥ 0"]),
    ({"seeds": []}, ConfigError, ["seeds = []"]),
    ({"init": ["real", "realistic"]}, ConfigError, ["init = 'realistic'", "noise"]),
    ({"methods": [{"method": "dm", "by_ipc": {"ten": {}}}]}, ConfigError, ["by_ipc key 'ten'", "IPC"]),
    ({"methods": [{"method": "dm", "by_ipc": {10: {"lr": 1}}}]}, ConfigError, ["'lr'", "methods[0].by_ipc.10"]),
])
def test_invalid_grid_fails_before_any_cell_runs(fake_run, tmp_path, change, error, needles):
    with pytest.raises(error) as info:
        run_compare(grid(**change), out=tmp_path / "out")
    for needle in needles:
        assert needle in str(info.value), (needle, str(info.value))
    assert fake_run.calls == []
    assert not (tmp_path / "out").exists()


def test_config_file_and_output_folder(fake_run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "grid.yaml"
    path.write_text("out: from_config\nmethods: [random]\nipc: [1]\nbase: {num_eval: 1}\n", encoding="utf-8")
    assert run_compare(path).out == Path("from_config")
    assert (tmp_path / "from_config" / "results.md").is_file()
    assert run_compare(path, out=tmp_path / "flag").out == tmp_path / "flag"
    assert (tmp_path / "flag" / "cells" / "random_ipc1_random_seed0" / "cell.json").is_file()
    with pytest.raises(ConfigError, match="no output folder"):
        run_compare({"methods": ["random"], "ipc": [1]})
    with pytest.raises(ConfigError, match="does not exist"):
        run_compare(tmp_path / "missing.yaml", out=tmp_path / "x")


# --------------------------------------------------------------------------------- end to end


def test_end_to_end_grid_on_fake_mnist_writes_everything_and_reuses(mnist_root, tiny_model, tmp_path, monkeypatch):
    calls: list[str] = []
    real_run = api.run_distill

    def counting(config, out_dir, callbacks=()):
        calls.append(Path(out_dir).name)
        return real_run(config, out_dir, callbacks)

    monkeypatch.setattr(api, "run_distill", counting)
    config = {"base": {"dataset": "mnist", "data_root": str(mnist_root), "model": tiny_model, "iterations": 2,
                       "batch_real": 4, "num_eval": 1, "eval_epochs": 1, "eval_batch": 8, "device": "cpu"},
              "methods": ["random", {"method": "dm", "label": "DM"}], "ipc": [1, 2], "init": ["real", "noise"],
              "seeds": [0]}
    out = tmp_path / "cmp"
    seen: list[tuple[str, str]] = []
    result = run_compare(config, out=out, progress=lambda name, status: seen.append((name, status)))

    # random: one cell per IPC (inits collapse); DM: one per IPC and init
    assert sorted(calls) == sorted(["random_ipc1_random_seed0", "random_ipc2_random_seed0", "DM_ipc1_real_seed0",
                                    "DM_ipc1_noise_seed0", "DM_ipc2_real_seed0", "DM_ipc2_noise_seed0"])
    assert result.ok and [r["status"] for r in result.rows] == ["done"] * 6
    assert seen[:2] == [("random_ipc1_random_seed0", "running"), ("random_ipc1_random_seed0", "done")]
    for name in calls:
        cell = out / "cells" / name
        assert {"metrics.json", "cell.json", "synthetic.safetensors"} <= {p.name for p in cell.iterdir()}
    for name in ("results.csv", "results.json", "summary.csv", "summary.json", "results.md", "compare.yaml"):
        assert (out / name).is_file(), name
    for name in ("accuracy_vs_ipc.png", "accuracy_vs_time.png"):
        assert (out / name).read_bytes().startswith(PNG), name

    rows = json.loads((out / "results.json").read_text())
    assert [r["cell"] for r in rows] == ["random_ipc1_random_seed0", "random_ipc2_random_seed0",
                                         "DM_ipc1_noise_seed0", "DM_ipc1_real_seed0",
                                         "DM_ipc2_noise_seed0", "DM_ipc2_real_seed0"]
    dm = rows[3]
    metrics = json.loads((out / "cells" / "DM_ipc1_real_seed0" / "metrics.json").read_text())
    assert (dm["method"], dm["dataset"], dm["ipc"], dm["init"], dm["seed"], dm["iterations"]) == ("dm", "mnist", 1, "real", 0, 2)
    assert dm["accuracies"] == metrics["accuracies"] and len(dm["accuracies"]) == 1
    assert dm["accuracy_mean"] == pytest.approx(metrics["accuracy_mean"])
    assert rows[0]["iterations"] == 0 and rows[0]["init"] == "random"
    csv_rows = read_csv(out / "results.csv")
    assert [r["cell"] for r in csv_rows] == [r["cell"] for r in rows]
    assert csv_rows[3]["accuracies"] == f"{metrics['accuracies'][0]:.4f}"
    assert csv_rows[3]["status"] == "done" and csv_rows[3]["error"] == ""
    md = (out / "results.md").read_text()
    assert "| method | IPC 1, real | IPC 1, noise | IPC 2, real | IPC 2, noise |" in md
    random_cells = next(line for line in md.splitlines() if line.startswith("| random |")).split(" | ")[1:]
    ipc1, ipc2 = (f"{r['accuracy_mean']:.2f} ± 0.00" for r in rows[:2])
    assert random_cells[:2] == [ipc1, ipc1]  # the coreset fills every init column of its IPC
    assert random_cells[2:] == [ipc2, ipc2 + " |"]

    # second run: nothing recomputed
    calls.clear()
    seen.clear()
    again = run_compare(config, out=out, progress=lambda name, status: seen.append((name, status)))
    assert calls == []
    assert {status for _, status in seen} == {"reused"}
    assert [r["accuracies"] for r in again.rows] == [r["accuracies"] for r in result.rows]

    # a changed learning setting recomputes the learning cells only (coresets ignore iterations)
    config["base"]["iterations"] = 3
    third = run_compare(config, out=out)
    assert sorted(calls) == sorted(["DM_ipc1_real_seed0", "DM_ipc1_noise_seed0", "DM_ipc2_real_seed0",
                                    "DM_ipc2_noise_seed0"])
    assert {r["cell"]: r["iterations"] for r in third.rows}["DM_ipc2_real_seed0"] == 3
    assert {r["cell"]: r["status"] for r in third.rows}["random_ipc1_random_seed0"] == "reused"


# ------------------------------------------------------------------------------- reuse, failures


def test_changed_cell_setting_recomputes_only_that_cell(fake_run, tmp_path):
    out = tmp_path / "out"
    run_compare(grid(), out=out)
    assert len(fake_run.calls) == 8
    fake_run.calls.clear()
    changed = grid(methods=["random", {"method": "dm", "by_ipc": {10: {"lr_img": 0.5}}}])
    run_compare(changed, out=out)
    assert sorted(fake_run.calls) == ["dm_ipc10_real_seed0", "dm_ipc10_real_seed1"]
    fake_run.calls.clear()
    run_compare(changed, out=out)
    assert fake_run.calls == []
    # a cell whose record is unreadable is recomputed
    (out / "cells" / "dm_ipc1_real_seed1" / "cell.json").write_text("{not json", encoding="utf-8")
    run_compare(changed, out=out)
    assert fake_run.calls == ["dm_ipc1_real_seed1"]


def test_failed_rerun_does_not_leave_a_stale_record(fake_run, tmp_path):
    out = tmp_path / "out"
    first = grid(methods=["dm"], ipc=[1], seeds=[0])
    run_compare(first, out=out)
    # config B fails after the folder was used by A: going back to A must recompute, not reuse
    fake_run.fail[("dm", 1, 0)] = NonFiniteLossError("loss is nan")
    second = grid(methods=["dm"], ipc=[1], seeds=[0], base={"iterations": 6, "num_eval": 2})
    assert not run_compare(second, out=out).ok
    assert not (out / "cells" / "dm_ipc1_real_seed0" / "cell.json").exists()
    fake_run.fail.clear()
    fake_run.calls.clear()
    run_compare(first, out=out)
    assert fake_run.calls == ["dm_ipc1_real_seed0"]


def test_failing_cell_is_recorded_and_the_grid_goes_on(fake_run, tmp_path):
    fake_run.fail[("dm", 10, 1)] = NonFiniteLossError("matching loss is nan at iteration 3")
    fake_run.fail[("random", 10, 0)] = NonFiniteLossError("boom")
    fake_run.fail[("random", 10, 1)] = NonFiniteLossError("boom")
    out = tmp_path / "out"
    seen: list[tuple[str, str]] = []
    result = run_compare(grid(), out=out, progress=lambda name, status: seen.append((name, status)))
    assert len(fake_run.calls) == 8  # every cell was tried
    assert not result.ok
    assert sorted(r["cell"] for r in result.failures) == ["dm_ipc10_real_seed1", "random_ipc10_random_seed0",
                                                          "random_ipc10_random_seed1"]
    assert ("dm_ipc10_real_seed1", "failed") in seen and ("dm_ipc10_real_seed0", "done") in seen
    failed = next(r for r in read_csv(out / "results.csv") if r["cell"] == "dm_ipc10_real_seed1")
    assert failed["status"] == "failed" and failed["error"] == "matching loss is nan at iteration 3"
    assert failed["accuracy_mean"] == "" and failed["accuracies"] == ""
    summary = {(g["label"], g["ipc"]): g for g in result.summary}
    assert summary[("dm", 10)]["seeds_done"] == 1 and summary[("dm", 10)]["n"] == 2
    assert summary[("random", 10)]["accuracy_mean"] is None
    md = (out / "results.md").read_text()
    assert "| dm | 52.00 ± 0.71 | 60.50 ± 0.50* |" in md  # seed 0 only at IPC 10: marked
    assert "| random | 52.00 ± 0.71 | failed |" in md
    assert "* fewer seeds than asked" in md
    # the next run retries the failed cells and reuses the others
    fake_run.fail.clear()
    fake_run.calls.clear()
    assert run_compare(grid(), out=out).ok
    assert sorted(fake_run.calls) == ["dm_ipc10_real_seed1", "random_ipc10_random_seed0", "random_ipc10_random_seed1"]


def test_no_run_tabulates_the_finished_cells_and_runs_nothing(fake_run, tmp_path):
    out = tmp_path / "out"
    seen: list[tuple[str, str]] = []
    empty = run_compare(grid(), out=out, run=False, progress=lambda name, status: seen.append((name, status)))
    assert fake_run.calls == [] and empty.rows == [] and {s for _, s in seen} == {"skipped"}
    assert "| dm | — | — |" in (out / "results.md").read_text()
    run_compare(grid(seeds=[0]), out=out)  # seed 0 finishes; seed 1 is left
    fake_run.calls.clear()
    seen.clear()
    result = run_compare(grid(), out=out, run=False, progress=lambda name, status: seen.append((name, status)))
    assert fake_run.calls == []
    assert sorted(r["cell"] for r in result.rows) == sorted(n for n, st in seen if st == "reused")
    assert {n for n, st in seen if st == "skipped"} == {"random_ipc1_random_seed1", "random_ipc10_random_seed1",
                                                        "dm_ipc1_real_seed1", "dm_ipc10_real_seed1"}
    assert "| dm | 51.50 ± 0.50* | 60.50 ± 0.50* |" in (out / "results.md").read_text()
    assert (out / "accuracy_vs_ipc.png").read_bytes().startswith(PNG)
    assert not (out / "cells" / "dm_ipc1_real_seed1").exists()


def test_other_exceptions_propagate(fake_run, tmp_path):
    fake_run.fail[("dm", 1, 0)] = RuntimeError("a bug")
    with pytest.raises(RuntimeError, match="a bug"):
        run_compare(grid(), out=tmp_path / "out")


# ------------------------------------------------------------------------------------- tables


def test_tables_pool_all_networks_of_all_seeds(fake_run, tmp_path):
    fake_run.accuracies = {("dm", 1, 0): [90.0, 92.0], ("dm", 1, 1): [94.0, 96.0],
                           ("random", 1, 0): [60.0, 61.0], ("random", 1, 1): [62.0, 65.0]}
    fake_run.seconds = {("dm", 1, 0): 100.0, ("dm", 1, 1): 140.0, ("random", 1, 0): 3.0, ("random", 1, 1): 5.0}
    out = tmp_path / "out"
    result = run_compare(grid(ipc=[1, 10]), out=out)
    dm = next(g for g in result.summary if (g["label"], g["ipc"]) == ("dm", 1))
    pooled = [90.0, 92.0, 94.0, 96.0]
    assert dm["n"] == 4 and dm["seeds_done"] == 2 and dm["seeds_total"] == 2
    assert dm["accuracy_mean"] == pytest.approx(93.0)
    assert dm["accuracy_std"] == pytest.approx(math.sqrt(5.0))  # pooled, not the mean of the per-seed stds (1.0)
    assert dm["accuracy_std"] == pytest.approx(statistics.pstdev(pooled))
    assert dm["distill_seconds"] == pytest.approx(120.0) and dm["iterations"] == pytest.approx(5)
    assert summarize(load_compare(grid(ipc=[1, 10])), result.rows) == result.summary

    md = (out / "results.md").read_text()
    assert "n = seeds × num_eval = 4 per cell (2 seeds: 0, 1" in md
    assert "Evaluation model convnet, trained 7 epochs on the distilled set, protocol ours (the same for every " \
           "method)." in md
    assert "| method | IPC 1 | IPC 10 |" in md
    assert "| random | 62.00 ± 1.87 | 61.00 ± 0.71 |" in md
    assert "| dm | 93.00 ± 2.24 | 61.00 ± 0.71 |" in md
    assert md.index("| random |") < md.index("| dm |")  # config order
    seconds = md[md.index("Distillation time"):]
    assert "| dm | 120.0 (5 it) | 10.0 (5 it) |" in seconds
    assert "| random | 4.0 | 10.0 |" in seconds  # coresets: no iterations

    rows = read_csv(out / "results.csv")
    assert list(rows[0]) == ["cell", "label", "method", "dataset", "ipc", "init", "seed", "model", "eval_model",
                             "eval_protocol", "num_eval", "eval_epochs", "iterations", "distill_seconds", "eval_seconds",
                             "accuracy_mean", "accuracy_std", "accuracies", "status", "error"]
    dm0 = next(r for r in rows if r["cell"] == "dm_ipc1_real_seed0")
    assert (dm0["accuracies"], dm0["accuracy_mean"], dm0["accuracy_std"], dm0["distill_seconds"]) == (
        "90.0000;92.0000", "91.0000", "1.0000", "100.00")
    summary_csv = {(r["label"], r["ipc"]): r for r in read_csv(out / "summary.csv")}
    assert summary_csv[("dm", "1")]["accuracy_mean"] == "93.0000" and summary_csv[("dm", "1")]["n"] == "4"
    assert json.loads((out / "summary.json").read_text()) == json.loads(json.dumps(result.summary))
    cells = {r["cell"]: r for r in json.loads((out / "results.json").read_text())}
    assert cells["dm_ipc1_real_seed0"]["accuracies"] == [90.0, 92.0]


def test_caption_names_exceptions_and_fixed_inits(fake_run, tmp_path):
    config = grid(methods=["random", "dm", {"method": "datadam", "label": "dam", "eval_model": "convnet_w32",
                                              "num_eval": 1, "init": "noise"}], ipc=[1], seeds=[0])
    run_compare(config, out=tmp_path)
    md = (tmp_path / "results.md").read_text()
    assert "Evaluation model convnet (dam: convnet_w32)" in md
    assert "n = seeds × num_eval = 2 (dam: 1) per cell" in md
    assert "Init: real; dam: noise (random: coreset selection of real images, no learning)." in md
    assert "not run yet" not in md  # the legend of missing cells only when some are


def test_init_accuracy_is_reported_when_present(monkeypatch, tmp_path):
    def with_init(config, out_dir, callbacks=()):
        FakeRun()(config, out_dir)
        path = Path(out_dir) / "metrics.json"
        metrics = json.loads(path.read_text())
        metrics.update(init_accuracy_mean=40.0, init_accuracy_std=1.0, init_accuracies=[39.0, 41.0])
        path.write_text(json.dumps(metrics))

    monkeypatch.setattr(api, "run_distill", with_init)
    result = run_compare(grid(methods=["dm"], ipc=[1], seeds=[0]), out=tmp_path)
    assert result.rows[0]["init_accuracy_mean"] == 40.0
    assert read_csv(tmp_path / "results.csv")[0]["init_accuracy_mean"] == "40.0000"
    assert result.summary[0]["init_accuracy_std"] == pytest.approx(1.0)


# -------------------------------------------------------------------------------- shipped grid


def test_shipped_mnist_cpu_grid_is_valid(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the grid's input files, as the experts/scores commands leave them
    for folder in ("runs/experts/mnist_w32", "runs/experts/mnist_w32_pad"):
        (tmp_path / folder).mkdir(parents=True)
        (tmp_path / folder / "experts.json").write_text("{}")
    (tmp_path / "runs/scores").mkdir(parents=True)
    (tmp_path / "runs/scores/mnist_el2n.safetensors").write_bytes(b"")
    plan = load_compare(REPO / "configs" / "compare" / "mnist_cpu.yaml")
    labels = [e.label for e in plan.entries]
    assert labels == ["random", "herding", "k_center", "el2n", "dm", "datadam", "dc", "dsa", "cafe", "mtt", "datm", "pad"]
    assert (plan.ipcs, plan.seeds) == ([1, 10], [0, 1])
    assert len(plan.cells) == 12 * 2 * 2
    cfg = {c.name: c.config for c in plan.cells}
    for c in plan.cells:
        assert (c.config.dataset, c.config.num_eval, c.config.eval_epochs, c.config.resolved_eval_model) == (
            "mnist", 1, 300, "convnet")
    assert cfg["dm_ipc10_real_seed0"].max_seconds == 60
    assert cfg["mtt_ipc1_real_seed0"].lr_img == 1000 and cfg["mtt_ipc10_real_seed0"].lr_img == 100
    assert cfg["pad_ipc10_samples_predicted_correctly_seed1"].method_args["experts"] == "runs/experts/mnist_w32_pad"
    assert cfg["datm_ipc1_samples_predicted_correctly_seed0"].model == "convnet_w32"
