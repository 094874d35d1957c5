"""Bit-identical resume of every learning method (issue #19): N iterations interrupted after iteration k
(a checkpoint written there), then resumed by a fresh run (a new distiller, the global generators
scrambled; for two methods a new process) give a synthetic set ``torch.equal`` to the uninterrupted
run's, with the same loss history. Tiny data, a few iterations: each case takes about a second."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import datadistill
from datadistill.api import distill
from datadistill.api.checkpointing import RunCheckpoint
from datadistill.config import build_config
from datadistill.io.checkpoint import load_checkpoint
from datadistill.methods import METHODS
from datadistill.models import MODELS
from datadistill.trajectory import train_experts
from helpers import TINY_MODEL, make_tiny_dataset, tiny_builder
from trajectory_helpers import CPU, expert_settings

LEARNING = ["dm", "datadam", "dc", "dsa", "cafe", "cafe_dsa", "mtt", "datm", "pad"]
TOTAL, STOP = 5, 3
FAST = {
    "dc": {"outer_loop": 2, "inner_loop": 1},
    "dsa": {"outer_loop": 2, "inner_loop": 1},
    # lr_milestones inside the run: the resumed part must continue CAFE's halved lr
    "cafe": {"window": 2, "max_outer": 3, "max_inner": 2, "watch_batch": 4, "lr_milestones": "2,4"},
    "cafe_dsa": {"window": 2, "max_outer": 3, "max_inner": 2, "watch_batch": 4, "lr_milestones": "3"},
    "mtt": {"syn_steps": 2, "expert_epochs": 1, "max_start_epoch": 2, "batch_syn": 4},
    # the start window grows during the run, soft labels and the image EMA are learned, no step skipped
    "datm": {"syn_steps": 2, "expert_epochs": 1, "max_start_epoch": 3, "current_max_start_epoch": 1,
             "expansion_end_iteration": 4, "loss_threshold": 0, "ema_decay": 0.5, "batch_syn": 4},
    "pad": {"syn_steps": 2, "expert_epochs": 1, "max_start_epoch": 3, "current_max_start_epoch": 1,
            "expansion_end_iteration": 4, "loss_threshold": 0, "ema_decay": 0.5, "batch_syn": 4, "mask_ratio": 0.5},
}


class Stop(Exception):
    """Stands for a kill right after the checkpoint of iteration STOP."""


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """The tiny dataset, the tiny model registered, and 2 experts × 4 epochs for the MTT family."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(MODELS._items, TINY_MODEL, tiny_builder)
        data = make_tiny_dataset()
        experts = train_experts(data, tmp_path_factory.mktemp("experts") / "experts", expert_settings(TINY_MODEL), CPU)
        yield data, experts


def config(method: str, experts: Path, **overrides):
    args = dict(FAST.get(method, {}))
    if METHODS.get(method).needs_experts:
        args["experts"] = str(experts)
    values = {"method": method, "ipc": 2, "iterations": TOTAL, "batch_real": 4, "model": TINY_MODEL, "num_eval": 0,
              "device": "cpu", "seed": 3, "momentum_img": 0.9, "checkpoint_every": STOP, "method_args": args}
    return build_config(None, {**values, **overrides})


def scramble() -> None:
    """A new session's process-wide generators are wherever they are: the checkpoint must restore them."""
    torch.manual_seed(987654)
    random.seed(11)
    np.random.seed(12)


def kill(it, metrics):
    if it == STOP:
        raise Stop


def run_until_stop(cfg, data, folder: Path) -> None:
    """Run until the checkpoint of iteration STOP is written, then 'die'."""
    with pytest.raises(Stop):
        distill(cfg, [kill], dataset=data, checkpoint=RunCheckpoint.for_run(cfg, folder))
    assert load_checkpoint(folder).state["iteration"] == STOP


def interrupted_then_resumed(cfg, data, folder: Path):
    """:func:`run_until_stop`, then resume in a fresh run; the resumed run's result and the iterations it ran."""
    run_until_stop(cfg, data, folder)
    scramble()
    seen, messages = [], []
    resumed = distill(cfg, [lambda it, m: seen.append(it)], dataset=data,
                      checkpoint=RunCheckpoint.for_run(cfg, folder, notify=messages.append))
    assert messages and messages[0].startswith(f"resuming from iteration {STOP} (checkpoint of ")
    return resumed, seen


def assert_same_result(a, b) -> None:
    sa, sb = a.synthetic_set, b.synthetic_set
    assert torch.equal(sa.images, sb.images)
    assert torch.equal(sa.labels, sb.labels)
    assert sa.learned_lr == sb.learned_lr
    assert torch.equal(a.initial_set.images, b.initial_set.images)
    assert torch.equal(a.initial_set.labels, b.initial_set.labels)
    assert a.loss_history == b.loss_history
    assert a.iterations_run == b.iterations_run and a.skipped_iterations == b.skipped_iterations
    assert sa.metadata == sb.metadata


def test_every_learning_method_is_checked():
    assert set(LEARNING) == {m for m in METHODS.names() if METHODS.get(m).learns}


@pytest.mark.parametrize("method", LEARNING)
def test_resume_is_bit_identical(setup, tmp_path, method):
    data, experts = setup
    cfg = config(method, experts)
    scramble()
    uninterrupted = distill(cfg, dataset=data)  # no checkpoint at all
    resumed, seen = interrupted_then_resumed(cfg, data, tmp_path / "checkpoint")
    assert seen == list(range(STOP + 1, TOTAL + 1))  # it resumed: it did not start again from zero
    assert_same_result(uninterrupted, resumed)
    assert [it for it, _ in resumed.loss_history] == list(range(1, TOTAL + 1))


def test_resume_keeps_the_best_iterate_selection(setup, tmp_path):
    data, experts = setup
    cfg = config("dm", experts, select_every=2, val_size=6, select_num_eval=1, select_epochs=1, eval_batch=8)
    uninterrupted = distill(cfg, dataset=data)
    resumed, _ = interrupted_then_resumed(cfg, data, tmp_path / "checkpoint")
    assert_same_result(uninterrupted, resumed)
    assert resumed.selection == uninterrupted.selection and len(resumed.selection) == 3  # 2, 4 and the last


def test_max_seconds_counts_the_earlier_sessions(setup, tmp_path):
    """A checkpoint whose optimisation time already reached --max-seconds resumes into no more steps."""
    data, experts = setup
    from datadistill.io.checkpoint import write_checkpoint

    cfg = config("dm", experts, max_seconds=1000.0)
    folder = tmp_path / "checkpoint"
    run_until_stop(cfg, data, folder)
    state = load_checkpoint(folder).state
    assert 0 < state["seconds"] < 1000
    state["seconds"] = 1000.0  # as if the earlier sessions had used the whole budget
    write_checkpoint(folder, state)
    result = distill(cfg, dataset=data, checkpoint=RunCheckpoint.for_run(cfg, folder))
    assert result.iterations_run == STOP and len(result.loss_history) == STOP
    assert result.synthetic_set.metadata["iterations"] == STOP


# -- a new process ------------------------------------------------------------------------------------
RESUME_SCRIPT = """
import json, sys
sys.path.insert(0, {tests!r})
import torch
torch.set_num_threads(1)
from datadistill.api import distill
from datadistill.api.checkpointing import RunCheckpoint
from datadistill.config import DistillConfig
from datadistill.models import MODELS
from helpers import TINY_MODEL, make_tiny_dataset, tiny_builder
MODELS._items[TINY_MODEL] = tiny_builder
cfg = DistillConfig(**json.loads(sys.argv[1]))
seen = []
result = distill(cfg, [lambda it, m: seen.append(it)], dataset=make_tiny_dataset(),
                 checkpoint=RunCheckpoint.for_run(cfg, sys.argv[2]))
torch.save({{"images": result.synthetic_set.images, "labels": result.synthetic_set.labels}}, sys.argv[3])
print(json.dumps({{"seen": seen, "history": result.loss_history, "lr": result.synthetic_set.learned_lr}}))
"""


@pytest.mark.parametrize("method", ["datm"])
def test_resume_in_a_new_process(setup, tmp_path, method):
    data, experts = setup
    cfg = config(method, experts)
    uninterrupted = distill(cfg, dataset=data)
    folder = tmp_path / "checkpoint"
    run_until_stop(cfg, data, folder)
    tests = str(Path(__file__).parent)
    values = {**cfg.as_dict(), "checkpoint_every": cfg.checkpoint_every}
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(datadistill.__file__).parents[1])}
    proc = subprocess.run([sys.executable, "-c", RESUME_SCRIPT.format(tests=tests), json.dumps(values), str(folder),
                           str(tmp_path / "out.pt")], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["seen"] == list(range(STOP + 1, TOTAL + 1))
    assert [tuple(h) for h in out["history"]] == uninterrupted.loss_history
    assert out["lr"] == uninterrupted.synthetic_set.learned_lr
    saved = torch.load(tmp_path / "out.pt", weights_only=True)
    assert torch.equal(saved["images"], uninterrupted.synthetic_set.images)
    assert torch.equal(saved["labels"], uninterrupted.synthetic_set.labels)
