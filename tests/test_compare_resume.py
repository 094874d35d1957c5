"""``compare`` resumes a cell killed mid-distillation from that cell's checkpoint (issue 19, item 5):
the cell's folder, with the ``checkpoint/`` its interrupted ``run_distill`` left, survives until the
rerun, which is given the same folder; a checkpoint of another config is deleted first. ``run_distill``
is replaced by a stand-in that writes a checkpoint and is "killed" (KeyboardInterrupt, which compare
does not catch), then resumes from what it finds."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest

import datadistill.api as api
from datadistill.experiments.compare import run_compare
from datadistill.io import atomic_write_text
from datadistill.record import UnitFolders

CELL = "dm_ipc10_real_seed0"


class Killed(KeyboardInterrupt):
    """Stands for a kill (compare catches DatadistillError only)."""


class CheckpointingRun:
    """Stands in for ``api.run_distill`` once h19's checkpoints are in: writes ``OUT/checkpoint/`` as it
    goes, resumes from it when it is there, removes it when the run finished."""

    def __init__(self, kill: set[str] = frozenset()) -> None:
        self.kill = set(kill)
        self.calls: list[tuple[str, Path, dict | None]] = []

    def __call__(self, config, out_dir, callbacks=()):
        out = Path(out_dir)
        state = out / "checkpoint" / "state.json"
        found = json.loads(state.read_text()) if state.is_file() else None
        self.calls.append((out.name, out, found))
        start = found["iteration"] if found else 0
        atomic_write_text(state, json.dumps({"iteration": max(start, 3), "lr_img": config.lr_img}))
        if out.name in self.kill:
            self.kill.discard(out.name)
            raise Killed
        accs = [50.0 + config.ipc + k for k in range(config.num_eval)]
        metrics = {"method": config.method, "ipc": config.ipc, "seed": config.seed, "iterations": config.iterations,
                   "distill_seconds": 1.0, "eval_seconds": 1.0, "accuracies": accs,
                   "accuracy_mean": statistics.fmean(accs), "accuracy_std": statistics.pstdev(accs),
                   "resumed_from": start}
        atomic_write_text(out / "metrics.json", json.dumps(metrics))
        (out / "checkpoint" / "state.json").unlink()
        (out / "checkpoint").rmdir()


def grid(**kw) -> dict:
    return {"base": {"iterations": 5, "num_eval": 2, "eval_epochs": 1}, "methods": ["dm"], "ipc": [1, 10],
            "init": ["real"], "seeds": [0], **kw}


@pytest.fixture
def checkpointing(monkeypatch) -> CheckpointingRun:
    fake = CheckpointingRun(kill={CELL})
    monkeypatch.setattr(api, "run_distill", fake)
    return fake


def test_a_killed_cell_resumes_from_its_checkpoint(checkpointing, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(Killed):
        run_compare(grid(), out=out)
    folder = out / "cells" / CELL
    assert (folder / "checkpoint" / "state.json").is_file()  # what the killed run left
    assert not (folder / "cell.json").exists() and (folder / "cell.started.json").is_file()
    checkpointing.calls.clear()
    result = run_compare(grid(), out=out)
    assert [c[0] for c in checkpointing.calls] == [CELL]  # the finished cell reused, the killed one rerun
    name, given, found = checkpointing.calls[0]
    assert given == folder and found is not None and found["iteration"] == 3  # the same folder, its checkpoint
    assert json.loads((folder / "metrics.json").read_text())["resumed_from"] == 3
    assert (folder / "cell.json").is_file() and not (folder / "cell.started.json").exists()
    assert {r["cell"]: r["status"] for r in result.rows} == {"dm_ipc1_real_seed0": "reused", CELL: "done"}


def test_a_checkpoint_of_another_config_is_deleted_before_the_cell_reruns(checkpointing, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(Killed):
        run_compare(grid(), out=out)
    checkpointing.calls.clear()
    changed = grid(methods=[{"method": "dm", "by_ipc": {10: {"lr_img": 0.5}}}])
    run_compare(changed, out=out)
    assert [(c[0], c[2]) for c in checkpointing.calls] == [(CELL, None)]  # started afresh
    assert json.loads((out / "cells" / CELL / "metrics.json").read_text())["resumed_from"] == 0


def test_unit_folders_begin_keeps_an_unfinished_unit_of_the_same_settings(tmp_path):
    cells = UnitFolders(tmp_path, marker="cell.json", settings_key="config", result="metrics.json")
    folder = cells.begin("a", {"ipc": 1}, stale=("checkpoint",))
    (folder / "checkpoint").mkdir()
    (folder / "checkpoint" / "x").write_text("1")
    cells.begin("a", {"ipc": 1}, stale=("checkpoint",))  # interrupted, rerun with the same settings
    assert (folder / "checkpoint" / "x").read_text() == "1"
    cells.begin("a", {"ipc": 2}, stale=("checkpoint",))  # other settings: the checkpoint is theirs
    assert not (folder / "checkpoint").exists()
    assert json.loads(cells.started_marker("a").read_text()) == {"config": {"ipc": 2}}
    (folder / "checkpoint").mkdir()
    (folder / "metrics.json").write_text("{}")
    cells.mark_finished("a", {"ipc": 2})
    assert not cells.started_marker("a").exists()
    cells.begin("a", {"ipc": 3}, stale=("checkpoint",))  # a finished unit of other settings: the same
    assert not (folder / "checkpoint").exists() and not (folder / "cell.json").exists()
    (folder / "checkpoint").mkdir()
    cells.begin("a", stale=("checkpoint",))  # without settings: only the marker goes, as before
    assert (folder / "checkpoint").is_dir()
