"""``evaluate --scores`` and ``compare`` with ``scores:`` end to end on a fake MNIST (seconds): the
baseline and its saved network (the teacher), evaluation.json, the printed table, the report page, the
compare columns, and the clean refusals."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
import yaml

from datadistill.evaluation.ranking import augmentation_robust_score, label_robust_score
from datadistill.io import load_synthetic_set, save_synthetic_set
from helpers import assert_clean_failure, cli_ok, run_cli, write_fake_mnist

FAST = ("--models", "convnet_w32", "--num-eval", "2", "--eval-epochs", "1", "--lr-grid", "0.01,0.05")


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A fake MNIST, a random IPC 1 set, the same set with soft labels and a learned lr, a baseline."""
    work = tmp_path_factory.mktemp("ranking")
    root = work / "data"
    write_fake_mnist(root)
    cli_ok(run_cli("distill", "--data-root", root, "--out", work / "run", "--quiet", "--method", "random", "--ipc", "1",
                   "--num-eval", "0", "--model", "convnet_w32"))
    syn = load_synthetic_set(work / "run" / "synthetic.safetensors")
    soft = dataclasses.replace(syn, labels=3.0 * torch.nn.functional.one_hot(syn.labels, 10).float(), learned_lr=0.02)
    save_synthetic_set(soft, work / "soft.safetensors")
    cli_ok(run_cli("baseline", "--data-root", root, "--epochs", "1", "--model", "convnet_w32", "--out", work / "base"))
    return {"root": root, "work": work, "hard": work / "run" / "synthetic.safetensors",
            "soft": work / "soft.safetensors", "base": work / "base"}


def test_evaluate_scores_writes_every_accuracy_and_the_scores(made):
    out = made["work"] / "eval_hard"
    result = cli_ok(run_cli("evaluate", made["hard"], "--data-root", made["root"], *FAST, "--scores", "--baseline",
                            made["base"], "--out", out))
    assert (made["base"] / "model.safetensors").is_file()  # the baseline keeps its network: the teacher
    r = json.loads((out / "evaluation.json").read_text())["ranking_scores"]
    assert r["modes"] == ["hard"] and r["accuracy_unit"] == "fraction" and r["num_eval"] == 2
    base = json.loads((made["base"] / "baseline.json").read_text())
    assert r["real_hard_accuracy"] == pytest.approx(base["accuracy"] / 100)
    acc = r["accuracies"]
    assert set(acc) == {"S/hard/aug", "R/hard/aug", "S/hard/no_aug", "R/hard/no_aug"}
    s = r["scores"]["hard"]
    for k in range(2):
        hlr = r["real_hard_accuracy"] - acc["S/hard/aug"][k]
        ior = acc["S/hard/aug"][k] - acc["R/hard/aug"][k]
        assert s["lrs"][k] == pytest.approx(label_robust_score(ior, hlr))
        assert s["ars"][k] == pytest.approx(augmentation_robust_score(acc["S/hard/aug"][k], acc["R/hard/aug"][k],
                                                                      acc["S/hard/no_aug"][k], acc["R/hard/no_aug"][k]))
    assert all(lr["chosen"] in (0.01, 0.05) and lr["source"] == "grid" for lr in r["lr"].values())
    # the number of trainings is printed before the work, and is what ran (+ the usual K networks)
    planned = next(line for line in result.stderr.splitlines() if "network trainings" in line)
    assert f"{r['trainings'] + 2} network trainings" in planned
    assert "DD-Ranking scores" in result.stdout and "R/hard/no_aug" in result.stdout
    cli_ok(run_cli("report", out.parent / "run"))  # a run folder without evaluation.json: no section
    (made["work"] / "run" / "evaluation.json").write_text((out / "evaluation.json").read_text())
    html = (made["work"] / "run" / "report.html")
    cli_ok(run_cli("report", made["work"] / "run"))
    assert "DD-Ranking scores" in html.read_text() and "R/hard/no_aug" in html.read_text()


def test_a_soft_label_set_is_also_scored_with_the_teachers_soft_labels(made):
    out = made["work"] / "eval_soft"
    cli_ok(run_cli("evaluate", made["soft"], "--data-root", made["root"], *FAST, "--scores", "--baseline", made["base"],
                   "--out", out))
    r = json.loads((out / "evaluation.json").read_text())["ranking_scores"]
    assert r["modes"] == ["hard", "soft"] and r["primary_mode"] == "soft"
    assert r["teacher"]["file"] == str(made["base"] / "model.safetensors")
    assert r["lr"]["S/soft/aug"]["source"] == "learned" and r["lr"]["S/soft/aug"]["chosen"] == pytest.approx(0.02)
    assert r["lr"]["R/soft/aug"]["source"] == "grid"
    assert len(r["accuracies"]) == 8


def test_scores_train_and_keep_a_missing_baseline(made):
    new = made["work"] / "new_base"
    cli_ok(run_cli("evaluate", made["hard"], "--data-root", made["root"], *FAST, "--scores", "--baseline", new,
                   "--score-labels", "hard", "--lr-grid", "0.01"))
    assert (new / "baseline.json").is_file() and (new / "model.safetensors").is_file()


@pytest.mark.parametrize("case", ["no_baseline", "percent_grid", "teacher_without_scores", "other_model",
                                  "val_too_big", "foreign_teacher"])
def test_scores_refusals(case, made, tmp_path):
    """One error line, before any network is trained (no evaluation folder is written)."""
    out = tmp_path / "out"
    common = ("evaluate", made["hard"], "--data-root", made["root"], *FAST, "--out", out)
    args, needles = {
        "no_baseline": (("--scores",), ("--baseline",)),
        "percent_grid": (("--scores", "--baseline", made["base"], "--lr-grid", "0.01,x"), ("--lr-grid",)),
        "teacher_without_scores": (("--teacher", made["base"] / "model.safetensors"), ("--scores",)),
        "other_model": (("--scores", "--baseline", made["base"], "--models", "mlp"), ("baseline of mlp",)),
        "val_too_big": (("--scores", "--baseline", made["base"], "--val-size", "200"), ("lower val_size",)),
        "foreign_teacher": (("--scores", "--baseline", made["base"], "--teacher", made["hard"]), ("teacher",)),
    }[case]
    assert_clean_failure(run_cli(*common, *args), *needles)
    assert not out.exists()


def test_compare_with_scores_writes_the_columns(made):
    out = made["work"] / "cmp"
    config = {"out": str(out), "base": {"dataset": "mnist", "data_root": str(made["root"]), "model": "convnet_w32",
                                        "num_eval": 1, "eval_epochs": 1},
              "methods": ["random"], "ipc": [1], "seeds": [0], "scores": True}
    path = made["work"] / "cmp.yaml"
    path.write_text(yaml.safe_dump(config))
    cli_ok(run_cli("compare", "--config", path))
    header, row = (out / "results.csv").read_text().splitlines()[:2]
    values = dict(zip(header.split(","), row.split(",")))
    assert 0 <= float(values["lrs_mean"]) <= 1 and 0 <= float(values["ars_mean"]) <= 1
    assert values["score_labels"] == "hard" and values["status"] == "done"
    md = (out / "results.md").read_text()
    assert "Label-robust score LRS" in md and "Augmentation-robust score ARS" in md
    assert (out / "baselines" / "convnet_w32" / "baseline.json").is_file()
    stored = out / "cells" / "random_ipc1_random_seed0" / "ranking_scores.json"
    before = stored.stat().st_mtime_ns
    cli_ok(run_cli("compare", "--config", path))  # a rerun reuses the cell and its scores
    assert stored.stat().st_mtime_ns == before
    assert (out / "results.csv").read_text().splitlines()[1].split(",")[header.split(",").index("lrs_mean")] == \
        values["lrs_mean"]
