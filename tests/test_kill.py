"""Real kills of ``datadistill distill`` on real MNIST (issue #19, items 2 and 3; marked slow): DM at IPC 10
for 30 iterations in subprocesses. SIGKILL at a random moment after the first checkpoint, then the same
command resumes and writes a synthetic-set file byte-identical to an uninterrupted run's; SIGTERM ends
the run with status 143 and a checkpoint, and the same command then finishes it identically.

They fail, rather than skip, when MNIST is missing: run ``datadistill data prepare mnist`` first.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import datadistill
from datadistill.io import load_synthetic_set
from datadistill.io.checkpoint import load_checkpoint

ITERATIONS = 30
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(datadistill.__file__).parents[1])}


def command(out: Path, *extra) -> list[str]:
    return [sys.executable, "-m", "datadistill", "distill", "--dataset", "mnist", "--method", "dm", "--model",
            "convnet_w32", "--ipc", "10", "--iterations", str(ITERATIONS), "--num-eval", "0", "--seed", "1",
            "--device", "cpu", "--out", str(out), "--quiet", *extra]


def finish(cmd: list[str]) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc


def start(cmd: list[str]) -> subprocess.Popen:
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)


def wait_for_checkpoint(proc: subprocess.Popen, folder: Path, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not (folder / "manifest.json").exists():
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, "no checkpoint written"
        time.sleep(0.02)


def assert_same_run(out: Path, reference: Path) -> None:
    assert (out / "synthetic.safetensors").read_bytes() == (reference / "synthetic.safetensors").read_bytes()
    a, b = load_synthetic_set(out / "synthetic.safetensors"), load_synthetic_set(reference / "synthetic.safetensors")
    assert a.metadata["iterations"] == b.metadata["iterations"] == ITERATIONS
    ma, mb = (json.loads((p / "metrics.json").read_text()) for p in (out, reference))
    assert ma["loss_history"] == mb["loss_history"] and len(ma["loss_history"]) == ITERATIONS
    assert not (out / "checkpoint").exists() and not (out / "checkpoint.prev").exists()


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("kill") / "uninterrupted"
    finish(command(out, "--checkpoint-seconds", "0"))  # no checkpoint at all
    return out


@pytest.mark.slow
def test_sigkill_then_the_same_command_resumes(uninterrupted, tmp_path):
    out = tmp_path / "run"
    cmd = command(out, "--checkpoint-every", "3")
    proc = start(cmd)
    wait_for_checkpoint(proc, out / "checkpoint")
    delay = random.uniform(0.0, 2.0)  # anywhere in the run, a checkpoint write included
    print(f"SIGKILL {delay:.2f} s after the first checkpoint")
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    killed_at = None
    if proc.returncode == -signal.SIGKILL:  # (a fast machine may have finished already)
        loaded = load_checkpoint(out / "checkpoint")
        killed_at = loaded.state["iteration"]
        assert killed_at % 3 == 0 or killed_at == ITERATIONS  # at most one interval lost
    again = finish(cmd)
    if killed_at is not None:
        assert f"resuming from iteration {killed_at} (checkpoint of " in again.stderr
    assert_same_run(out, uninterrupted)


@pytest.mark.slow
def test_sigterm_exits_143_with_a_checkpoint_then_resumes(uninterrupted, tmp_path):
    out = tmp_path / "run"
    cmd = command(out, "--checkpoint-every", "4")
    proc = start(cmd)
    wait_for_checkpoint(proc, out / "checkpoint")
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143, stderr
    assert "Traceback" not in stderr
    line = stderr.strip().splitlines()[-1]
    assert line.startswith("interrupted by SIGTERM after iteration ") and "rerun the same command" in line, line
    stopped = int(line.split("after iteration ")[1].split(";")[0])
    assert 4 <= stopped < ITERATIONS
    assert load_checkpoint(out / "checkpoint").state["iteration"] == stopped  # written after the finished step
    assert not (out / "synthetic.safetensors").exists()
    again = finish(cmd)
    assert f"resuming from iteration {stopped} (checkpoint of " in again.stderr
    assert_same_run(out, uninterrupted)


@pytest.mark.slow
def test_a_compare_grid_killed_mid_cell_resumes_the_cell(uninterrupted, tmp_path):
    """``compare`` with one DM cell (the settings of ``uninterrupted``): SIGKILL once the cell has a
    checkpoint, then the same command resumes that cell from its checkpoint (not from zero) and the
    cell's set is byte-identical to the uninterrupted distillation's."""
    grid = tmp_path / "grid.yaml"
    grid.write_text(f"out: {tmp_path / 'grid'}\n"
                    f"base: {{dataset: mnist, model: convnet_w32, iterations: {ITERATIONS}, num_eval: 0, device: cpu,\n"
                    "       checkpoint_every: 3}\nmethods: [dm]\nipc: [10]\ninit: [real]\nseeds: [1]\n")
    cmd = [sys.executable, "-m", "datadistill", "compare", "--config", str(grid)]
    cell = tmp_path / "grid" / "cells" / "dm_ipc10_real_seed1"
    proc = start(cmd)
    wait_for_checkpoint(proc, cell / "checkpoint")
    time.sleep(random.uniform(0.0, 1.0))
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert not (cell / "synthetic.safetensors").exists()  # killed mid-cell
    killed_at = load_checkpoint(cell / "checkpoint").state["iteration"]
    assert 0 < killed_at < ITERATIONS

    proc = finish(cmd)
    log = (cell / "distill.log").read_text()
    assert "resuming from iteration" in log + proc.stdout + proc.stderr
    assert (cell / "synthetic.safetensors").read_bytes() == (uninterrupted / "synthetic.safetensors").read_bytes()
