"""Launching ``datadistill`` in several processes (issue #20, items 1 and 6): ``--nproc``, torchrun with
a rank that fails or is killed, and two torchrun agents on localhost. DM on a fake MNIST (10 classes,
IPC 2, 5 iterations, a checkpoint every 2) in subprocesses; the set of every multi-process run is
byte-identical to the one-process run's (DM's sharded set is bit-identical,
tests/test_distributed_methods.py). Each test starts 2–3 Python processes that import torch: 15–17 s
each on the 2-core machine, and the killed-rank test, which starts them twice, 23 s (marked slow).
"""

from __future__ import annotations

import os
import socket
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import datadistill
from datadistill.cli import main
from datadistill.cli.launch import threads_per_process, without_nproc

ENTRY = str(Path(__file__).with_name("torchrun_entry.py"))
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(datadistill.__file__).parents[1])}
TIMEOUT = 240  # seconds: a hang fails the test instead of blocking the suite


def distill_args(data: Path, out: Path) -> list[str]:
    return ["distill", "--dataset", "mnist", "--data-root", str(data), "--method", "dm", "--model", "convnet_w32",
            "--ipc", "2", "--batch-real", "8", "--iterations", "5", "--num-eval", "0", "--seed", "1", "--device",
            "cpu", "--checkpoint-every", "2", "--out", str(out), "--quiet"]


def torchrun(*options: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", *options]


def start(cmd: list[str], **env: str) -> subprocess.Popen:
    """A launcher in its own process group, so that :func:`stop` also ends the workers it started."""
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**ENV, **env},
                            start_new_session=True)


def stop(proc: subprocess.Popen) -> None:
    """Kill the launcher's whole process group (no orphaned rank outlives a failed or hung test)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def run(cmd: list[str], **env: str) -> subprocess.CompletedProcess:
    proc = start(cmd, **env)
    try:
        out, err = proc.communicate(timeout=TIMEOUT)
    finally:
        stop(proc)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def reference(fake_mnist_root, tmp_path_factory) -> bytes:
    """The synthetic-set file of one process."""
    out = tmp_path_factory.mktemp("one") / "run"
    proc = run([sys.executable, ENTRY, *distill_args(fake_mnist_root, out)])
    assert proc.returncode == 0, proc.stderr
    return (out / "synthetic.safetensors").read_bytes()


def test_nproc_runs_the_command_in_two_processes(fake_mnist_root, reference, tmp_path):
    out = tmp_path / "run"
    proc = run([sys.executable, "-m", "datadistill", "--nproc", "2", *distill_args(fake_mnist_root, out)])
    assert proc.returncode == 0, proc.stderr
    assert (out / "synthetic.safetensors").read_bytes() == reference
    assert proc.stdout.count("distilled mnist with dm") == 1  # rank 0 alone prints
    assert not (out / "checkpoint").exists()


def test_an_error_on_one_rank_ends_every_rank_with_its_message(fake_mnist_root, tmp_path):
    args = distill_args(fake_mnist_root, tmp_path / "run")
    proc = run(torchrun("--standalone", "--nproc-per-node", "2", ENTRY, *args), DATADISTILL_TEST_FAULT="raise:1:3")
    assert proc.returncode != 0
    assert "error (rank 1 of 2): injected failure at iteration 3" in proc.stderr
    assert not (tmp_path / "run" / "synthetic.safetensors").exists()


@pytest.mark.slow
def test_a_killed_rank_is_restarted_and_the_run_resumes_to_the_same_set(fake_mnist_root, reference, tmp_path):
    """Rank 1 is SIGKILLed after iteration 3 (checkpoint of iteration 2 on disk); torchrun restarts both
    ranks, which resume from rank 0's checkpoint and finish with the uninterrupted run's set."""
    out = tmp_path / "run"
    proc = run(torchrun("--standalone", "--nproc-per-node", "2", "--max-restarts", "1", ENTRY,
                        *distill_args(fake_mnist_root, out)), DATADISTILL_TEST_FAULT="kill:1:3")
    assert proc.returncode == 0, proc.stderr
    assert "resuming from iteration 2" in proc.stderr
    assert (out / "synthetic.safetensors").read_bytes() == reference


def test_two_torchrun_agents_on_localhost(fake_mnist_root, reference, tmp_path):
    """Two nodes (--nnodes 2, one process each) meeting at a c10d rendezvous on localhost."""
    out, port = tmp_path / "run", free_port()
    agents = [start(torchrun("--nnodes", "2", "--nproc-per-node", "1", "--node-rank", str(node),
                             "--rdzv-backend", "c10d", "--rdzv-endpoint", f"localhost:{port}",
                             "--rdzv-id", "two-nodes", ENTRY, *distill_args(fake_mnist_root, out)))
              for node in (0, 1)]
    try:
        results = [a.communicate(timeout=TIMEOUT) for a in agents]
    finally:
        for a in agents:
            stop(a)
    assert [a.returncode for a in agents] == [0, 0], [err for _, err in results]
    assert (out / "synthetic.safetensors").read_bytes() == reference
    assert sum(stdout.count("distilled mnist with dm") for stdout, _ in results) == 1


def test_nproc_is_refused_inside_a_launched_process(monkeypatch, tmp_path):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    result = CliRunner().invoke(main, ["--nproc", "2", "list"])
    assert result.exit_code == 2
    assert "error (rank 1 of 2): --nproc cannot be given inside a process started by torchrun" in result.stderr


def test_without_nproc_keeps_everything_else():
    argv = ["-v", "--nproc", "2", "--quiet", "distill", "--nproc", "3", "--ipc", "1"]
    assert without_nproc(argv, "distill") == ["-v", "--quiet", "distill", "--nproc", "3", "--ipc", "1"]
    assert without_nproc(["--nproc=4", "list"], "list") == ["list"]


def test_threads_per_process_shares_the_cores():
    cores = len(os.sched_getaffinity(0))
    assert threads_per_process(1) == cores
    assert threads_per_process(cores * 2) == 1
