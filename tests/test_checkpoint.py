"""Checkpoints of ``distill`` (issue #19, items 1, 2, 3 and 6): the folder format (io/checkpoint.py),
when a run writes it, resuming and the refusal of other settings, the signals, and faults while
writing (ENOSPC, an unwritable folder) or reading (a truncated or corrupt checkpoint)."""

from __future__ import annotations

import errno
import json
import math
import os
import signal

import pytest
import torch
from click.testing import CliRunner

from datadistill import __version__
from datadistill.api import distill, run_distill
from datadistill.api.checkpointing import RunCheckpoint
from datadistill.cli import main
from datadistill.config import DistillConfig, build_config
from datadistill.errors import CheckpointError
from datadistill.io import checkpoint as ckio
from datadistill.io import load_synthetic_set
from helpers import TINY_MODEL, assert_clean_failure


# -- the folder format ---------------------------------------------------------------------------------
def test_state_round_trip_is_exact(tmp_path):
    t = torch.randn(3, 4)
    state = {"a": t, "same": t, "view": t[1], "int_keys": {0: {"buf": torch.ones(2)}, 1: None},
             "tuple": (1, 2.5, "x"), "floats": [0.1, 1e-300, math.inf, -0.0], "flag": True, "none": None,
             "empty": torch.zeros(0), "bytes": torch.ByteTensor([1, 2, 255]), "nested": [[1, [2, (3,)]]]}
    ckio.write_checkpoint(tmp_path / "ck", state)
    back = ckio.load_checkpoint(tmp_path / "ck").state
    assert torch.equal(back["a"], t) and torch.equal(back["same"], t) and torch.equal(back["view"], t[1])
    assert list(back["int_keys"]) == [0, 1] and torch.equal(back["int_keys"][0]["buf"], torch.ones(2))
    assert back["tuple"] == (1, 2.5, "x") and back["floats"] == [0.1, 1e-300, math.inf, -0.0]
    assert math.copysign(1, back["floats"][3]) == -1
    assert back["flag"] is True and back["none"] is None and back["nested"] == [[1, [2, (3,)]]]
    assert back["empty"].shape == (0,) and back["bytes"].dtype == torch.uint8
    assert sorted(os.listdir(tmp_path / "ck")) == ["manifest.json", "state.json", "state.safetensors"]


def test_a_new_checkpoint_replaces_the_old_one_atomically(tmp_path):
    folder = tmp_path / "ck"
    ckio.write_checkpoint(folder, {"iteration": 1})
    ckio.write_checkpoint(folder, {"iteration": 2})
    assert ckio.load_checkpoint(folder).state == {"iteration": 2}
    assert sorted(os.listdir(tmp_path)) == ["ck", "ck.prev"]  # the previous one, kept as a fallback
    # killed between the two renames: FOLDER gone, FOLDER.tmp complete, FOLDER.prev complete
    ckio.write_checkpoint(tmp_path / "x", {"iteration": 3})
    os.rename(folder, ckio.sibling(folder, ".tmp"))
    os.rename(tmp_path / "x", folder)
    os.rename(folder, ckio.sibling(folder, ".prev").with_name("gone"))
    loaded = ckio.load_checkpoint(folder)
    assert loaded.state == {"iteration": 2} and loaded.path.name == "ck.tmp"


def test_an_incomplete_write_is_no_checkpoint(tmp_path):
    folder = tmp_path / "ck"
    tmp = ckio.sibling(folder, ".tmp")
    tmp.mkdir()
    (tmp / "state.safetensors").write_bytes(b"partial")
    assert ckio.load_checkpoint(folder) is None


@pytest.mark.parametrize("damage", ["truncate", "flip", "manifest", "delete"])
def test_a_damaged_checkpoint_falls_back_to_the_previous_one_or_is_refused(tmp_path, damage):
    folder = tmp_path / "ck"
    ckio.write_checkpoint(folder, {"iteration": 1, "x": torch.arange(1000.0)})
    ckio.write_checkpoint(folder, {"iteration": 2, "x": torch.arange(1000.0) + 1})
    target = folder / ("manifest.json" if damage == "manifest" else "state.safetensors")
    data = target.read_bytes()
    if damage == "truncate":
        target.write_bytes(data[: len(data) // 2])
    elif damage == "flip":
        target.write_bytes(data[:-8] + bytes(8))
    elif damage == "manifest":
        target.write_bytes(data[:10])
    else:
        target.unlink()
    loaded = ckio.load_checkpoint(folder)
    assert loaded.state["iteration"] == 1 and loaded.path.name == "ck.prev"
    assert len(loaded.skipped) == 1 and str(folder) in loaded.skipped[0]
    ckio.remove_checkpoint(ckio.sibling(folder, ".prev"))  # no previous one left: refused, naming it
    with pytest.raises(CheckpointError, match=f"cannot resume: the checkpoint {folder} is .*--restart"):
        ckio.load_checkpoint(folder)


@pytest.mark.parametrize("err", [errno.ENOSPC, errno.EACCES])
def test_a_failed_write_is_one_error_and_keeps_the_previous_checkpoint(tmp_path, monkeypatch, err):
    folder = tmp_path / "ck"
    ckio.write_checkpoint(folder, {"iteration": 1, "x": torch.ones(5)})

    def fail(path, data):
        raise OSError(err, os.strerror(err), str(path))

    monkeypatch.setattr(ckio, "_write_bytes", fail)
    with pytest.raises(CheckpointError, match=f"cannot write the checkpoint {folder}: {os.strerror(err)}"):
        ckio.write_checkpoint(folder, {"iteration": 2, "x": torch.zeros(5)})
    assert sorted(os.listdir(tmp_path)) == ["ck"]  # no partial folder left behind
    assert ckio.load_checkpoint(folder).state["iteration"] == 1


# -- runs ----------------------------------------------------------------------------------------------
def cfg(**kw) -> DistillConfig:
    base = {"method": "dm", "ipc": 2, "iterations": 4, "batch_real": 4, "model": TINY_MODEL, "num_eval": 0,
            "eval_epochs": 1, "eval_batch": 8, "device": "cpu", "seed": 1}
    return build_config(None, {**base, **kw})


class Stop(Exception):
    pass


def stop_at(k):
    def callback(it, metrics):
        if it == k:
            raise Stop
    return callback


def test_checkpoint_settings_leave_the_result_unchanged():
    plain = DistillConfig()
    other = DistillConfig(checkpoint_every=5, checkpoint_seconds=0, keep_checkpoint=True)
    assert plain.as_dict() == other.as_dict() and "checkpoint_seconds" not in plain.as_dict()
    rebuilt = DistillConfig.build(other, {"ipc": 3})
    assert (rebuilt.checkpoint_every, rebuilt.checkpoint_seconds, rebuilt.keep_checkpoint) == (5, 0, True)
    assert DistillConfig.from_mapping({"checkpoint_seconds": "30"}).checkpoint_seconds == 30.0
    for bad in ({"checkpoint_every": -1}, {"checkpoint_seconds": -2}, {"checkpoint_seconds": math.inf}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            build_config(None, bad)


def test_when_checkpoints_are_written(tmp_path):
    """Every 5 iterations and at most 10 s apart, whichever comes first (a fake clock: 4 s a step)."""
    now, it, written = [0.0], [0], []
    ck = RunCheckpoint(tmp_path / "ck", {}, every=5, seconds=10, clock=lambda: now[0])
    ck.bind(lambda done: written.append(it[0]) or {"iteration": it[0]})
    with ck.loop():
        for it[0] in range(1, 9):
            now[0] += 4.0
            ck.after_step(it[0])
    assert written == [3, 5, 8]  # 12 s; the 5th iteration; 12 s after it
    assert ckio.load_checkpoint(tmp_path / "ck").state["iteration"] == 8
    assert not RunCheckpoint(tmp_path / "x", {}, every=0, seconds=0).periodic


def test_the_stop_message_says_how_to_resume(tmp_path):
    ck = RunCheckpoint(tmp_path / "ck", {}, restart=True)
    assert "before any checkpoint was written" in ck._stopped(signal.SIGTERM, "at once")
    ck.written_iteration = 7
    message = ck._stopped(signal.SIGINT, "after iteration 7")
    assert "holds iteration 7" in message and "rerun the same command without --restart" in message
    plain = RunCheckpoint(tmp_path / "ck", {})
    plain.written_iteration = 3
    assert "rerun the same command with the same output folder to resume" in plain._stopped(signal.SIGINT, "x")


def test_run_distill_resumes_and_removes_its_checkpoint(mnist_root, tiny_model, tmp_path):
    c = cfg(data_root=str(mnist_root), checkpoint_every=2)
    whole = run_distill(c, tmp_path / "whole")
    out = tmp_path / "out"
    with pytest.raises(Stop):
        run_distill(c, out, [stop_at(3)])
    assert sorted(os.listdir(out)) == ["checkpoint"]  # iteration 2's; no final files yet
    assert ckio.load_checkpoint(out / "checkpoint").state["iteration"] == 2
    messages = []
    again = run_distill(c, out, notify=messages.append)
    assert messages == [messages[0]] and messages[0].startswith("resuming from iteration 2 (checkpoint of ")
    assert torch.equal(again.synthetic_set.images, whole.synthetic_set.images)
    assert again.loss_history == whole.loss_history
    assert sorted(os.listdir(out)) == sorted(whole_files := os.listdir(tmp_path / "whole"))
    assert "checkpoint" not in whole_files
    log = (out / "distill.log").read_text()
    assert log.count(f"datadistill {__version__}: ") == 2 and "resuming from iteration 2" in log  # both sessions' lines
    kept = run_distill(cfg(data_root=str(mnist_root), keep_checkpoint=True, checkpoint_every=1), tmp_path / "kept")
    assert "checkpoint" in os.listdir(tmp_path / "kept") and "checkpoint.prev" not in os.listdir(tmp_path / "kept")
    assert ckio.load_checkpoint(tmp_path / "kept" / "checkpoint").state["loop_done"] is True
    assert kept.iterations_run == 4


def test_a_kill_during_the_evaluation_does_not_redo_the_distillation(mnist_root, tiny_model, tmp_path, monkeypatch):
    from datadistill.api import pipeline

    c = cfg(data_root=str(mnist_root), num_eval=1)
    real_evaluate = pipeline.evaluate_synthetic_set
    monkeypatch.setattr(pipeline, "evaluate_synthetic_set", lambda *a, **k: (_ for _ in ()).throw(Stop()))
    with pytest.raises(Stop):
        run_distill(c, tmp_path / "out")
    assert ckio.load_checkpoint(tmp_path / "out" / "checkpoint").state["loop_done"] is True
    monkeypatch.setattr(pipeline, "evaluate_synthetic_set", real_evaluate)
    steps = []
    result = run_distill(c, tmp_path / "out", [lambda it, m: steps.append(it)])
    assert steps == [] and result.iterations_run == 4 and len(result.loss_history) == 4
    assert result.evaluation is not None


def test_other_settings_are_refused_in_one_line(mnist_root, tiny_model, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(Stop):
        run_distill(cfg(data_root=str(mnist_root), checkpoint_every=1), out, [stop_at(2)])
    before = {p.name: p.read_bytes() for p in (out / "checkpoint").iterdir()}
    changed = cfg(data_root=str(mnist_root), checkpoint_every=1, ipc=3, method_args={"batch_real": 5})
    with pytest.raises(CheckpointError) as info:
        run_distill(changed, out)
    message = str(info.value)
    assert "\n" not in message and str(out / "checkpoint") in message and "--restart" in message
    assert "ipc = 2 there, 3 here" in message and "method_args" in message
    assert {p.name: p.read_bytes() for p in (out / "checkpoint").iterdir()} == before  # nothing overwritten
    # a different data_root or checkpoint interval is not a different run
    assert RunCheckpoint.for_run(cfg(data_root="/elsewhere", checkpoint_seconds=5), out / "checkpoint").prepare()
    result = run_distill(changed, out, restart=True)  # --restart discards it
    assert result.iterations_run == 4 and not (out / "checkpoint").exists()


def test_corrupt_checkpoint_through_the_cli(mnist_root, tiny_model, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(Stop):
        run_distill(cfg(data_root=str(mnist_root), checkpoint_every=1, iterations=2, ipc=1), out, [stop_at(1)])
    st = out / "checkpoint" / "state.safetensors"
    st.write_bytes(st.read_bytes()[:100])
    args = ["distill", "--data-root", mnist_root, "--out", out, "--quiet", "--method", "dm", "--ipc", 1,
            "--iterations", 2, "--batch-real", 4, "--model", TINY_MODEL, "--num-eval", 0, "--device", "cpu",
            "--seed", 1, "--checkpoint-every", 1]
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert_clean_failure(result, str(out / "checkpoint"), "truncated", "--restart")
    assert result.exit_code == 2
    assert st.stat().st_size == 100  # left as it was for the user to look at
    result = CliRunner().invoke(main, [str(a) for a in args] + ["--restart"])
    assert result.exit_code == 0, result.output
    assert load_synthetic_set(out / "synthetic.safetensors").metadata["iterations"] == 2


def test_enospc_during_a_run_is_one_error_and_the_run_resumes(mnist_root, tiny_model, tmp_path, monkeypatch):
    c = cfg(data_root=str(mnist_root), checkpoint_every=1)
    whole = distill(c)
    out = tmp_path / "out"
    real_write, calls = ckio._write_bytes, []

    def full_disk(path, data):
        calls.append(path)
        if len(calls) > 2:  # the first checkpoint (state.json, manifest.json) fits; the second does not
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        real_write(path, data)

    monkeypatch.setattr(ckio, "_write_bytes", full_disk)
    with pytest.raises(CheckpointError, match="No space left on device"):
        run_distill(c, out)
    monkeypatch.setattr(ckio, "_write_bytes", real_write)
    assert sorted(os.listdir(out)) == ["checkpoint"]
    assert ckio.load_checkpoint(out / "checkpoint").state["iteration"] == 1
    again = run_distill(c, out)
    assert torch.equal(again.synthetic_set.images, whole.synthetic_set.images)
    assert again.loss_history == whole.loss_history


def test_a_full_disk_through_the_cli_is_one_error_line(mnist_root, tiny_model, tmp_path, monkeypatch):
    def full_disk(path, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(ckio, "_write_bytes", full_disk)
    out = tmp_path / "out"
    args = ["distill", "--data-root", mnist_root, "--out", out, "--quiet", "--method", "dm", "--ipc", 1,
            "--iterations", 2, "--batch-real", 4, "--model", TINY_MODEL, "--num-eval", 0, "--device", "cpu",
            "--checkpoint-every", 1]
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert_clean_failure(result, f"cannot write the checkpoint {out / 'checkpoint'}", "No space left on device")
    assert result.exit_code == 2 and os.listdir(out) == []


@pytest.mark.parametrize("sig, status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_finishes_the_step_writes_a_checkpoint_and_exits(mnist_root, tiny_model, tmp_path, sig, status):
    out = tmp_path / "out"
    args = ["distill", "--data-root", mnist_root, "--out", out, "--quiet", "--method", "dm", "--ipc", 2,
            "--iterations", 4, "--batch-real", 4, "--model", TINY_MODEL, "--num-eval", 0, "--device", "cpu",
            "--seed", 1, "--checkpoint-seconds", 0]
    steps, handlers = [], {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

    def send(it, metrics):
        steps.append(it)
        if it == 2:
            os.kill(os.getpid(), sig)  # arrives before step 3, which is then finished before the run stops

    from datadistill.api import pipeline

    real = pipeline.distill
    pipeline.distill = lambda config, callbacks=(), **kw: real(config, [*callbacks, send], **kw)
    try:
        result = CliRunner().invoke(main, [str(a) for a in args])
    finally:
        pipeline.distill = real
    assert result.exit_code == status, result.output
    assert steps == [1, 2]  # step 3 ran to its end (its checkpoint below); the run stopped before later callbacks
    assert isinstance(result.exception, SystemExit) and "Traceback" not in result.output
    line = result.stderr.strip().splitlines()[-1]
    assert f"interrupted by {signal.Signals(sig).name} after iteration 3" in line and "rerun the same command" in line
    state = ckio.load_checkpoint(out / "checkpoint").state
    assert state["iteration"] == 3 and len(state["history"]) == 3
    assert {s: signal.getsignal(s) for s in handlers} == handlers  # the run's handlers are gone
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    assert "resuming from iteration 3" in result.stderr
    assert len(json.loads((out / "metrics.json").read_text())["loss_history"]) == 4
