"""Progress bars and a clean terminal (issue #23, items 1 and 2).

In a pseudo-terminal (``pty``: the command's stdout and stderr are a terminal, as for a user) the
bars are drawn and advance, ``--quiet`` draws none, and the summary is the last thing printed;
outside a terminal (CliRunner, CI logs) there is no bar. ``-v`` shows INFO lines on stderr. The
progress hooks read the training's own logits only, so an evaluation gives bit-identical networks
with or without them.
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import datadistill
from datadistill import __version__
from datadistill.cli import main
from datadistill.cli import progress as cli_progress
from datadistill.evaluation import EvalProgress, EvalSettings, evaluate_synthetic_set
from datadistill.io import SyntheticSet
from helpers import TINY_MODEL, write_fake_mnist

ENV = {**{k: v for k, v in os.environ.items() if k != "RANK"}, "OMP_NUM_THREADS": "1",
       "PYTHONPATH": str(Path(datadistill.__file__).parents[1])}
CPU = torch.device("cpu")
BAR = re.compile(r"\d+%\|")  # tqdm's "42%|" before the bar itself
EVAL_ARGS = ("--num-eval", "2", "--eval-epochs", "3", "--models", "convnet_w32", "--dsa-strategy", "none",
             "--device", "cpu")


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def run_in_terminal(*args, timeout: float = 180.0) -> tuple[int, str]:
    """``python -m datadistill ARGS`` with stdin, stdout and stderr on a pseudo-terminal of 160
    columns; returns the exit status and everything the terminal received."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
    proc = subprocess.Popen([sys.executable, "-m", "datadistill", *map(str, args)], stdin=slave, stdout=slave,
                            stderr=slave, env=ENV, close_fds=True)
    os.close(slave)
    chunks, deadline = [], time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the command ended and closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        else:
            proc.kill()
            pytest.fail(f"datadistill {' '.join(map(str, args))} did not end in {timeout} s")
        proc.wait(timeout=30)
    finally:
        os.close(master)
    return proc.returncode, b"".join(chunks).decode("utf-8", "replace")


def frames(text: str) -> list[str]:
    """What the terminal showed, one frame per carriage return or line (tqdm redraws with '\\r')."""
    return [f.strip() for f in re.split(r"[\r\n]+", re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", text)) if f.strip()]


@pytest.fixture(scope="module")
def fake_run(tmp_path_factory):
    """A fake MNIST on disk and a 1-image-per-class DM set distilled from it (no evaluation)."""
    root = tmp_path_factory.mktemp("data")
    write_fake_mnist(root)
    out = tmp_path_factory.mktemp("progress") / "run"
    result = run("distill", "--data-root", root, "--out", out, "--quiet", "--method", "dm", "--ipc", 1,
                 "--iterations", 2, "--num-eval", 0, "--batch-real", 4, "--model", "convnet_w32")
    assert result.exit_code == 0, result.output + repr(result.exception)
    return root, out / "synthetic.safetensors"


# ------------------------------------------------------------------------------------- in a terminal
def test_evaluate_in_a_terminal_shows_its_progress_advance(fake_run):
    root, syn = fake_run
    status, text = run_in_terminal("evaluate", syn, "--data-root", root, *EVAL_ARGS)
    assert status == 0, text
    shown = frames(text)
    bars = [f for f in shown if BAR.search(f)]
    assert bars, text
    first = next(i for i, f in enumerate(shown) if "convnet_w32 network 1/2" in f)
    second = next(i for i, f in enumerate(shown) if "convnet_w32 network 2/2" in f)
    assert first < second  # network k of K advances
    counts = [int(m.group(1)) for f in bars if (m := re.search(r"\| *(\d+)/6 ", f))]
    assert counts == sorted(counts) and counts[-1] == 6 and len(set(counts)) >= 2, bars  # 2 networks × 3 epochs
    assert any(re.search(r"epoch [123]/3, train \d+\.\d%", f) for f in bars), bars  # epoch and training accuracy
    assert all(re.search(r"\[\d\d:\d\d<(\d\d:\d\d|\?)", f) for f in bars), bars  # elapsed < time left
    assert "last test" in bars[-1]
    # the results table comes after the bars: the summary is the last thing on the terminal
    assert shown[-2].split()[:3] == ["model", "test", "accuracy"] and shown[-1].split()[0] == "convnet_w32", shown[-3:]


def test_quiet_draws_no_bar_in_a_terminal(fake_run):
    root, syn = fake_run
    status, text = run_in_terminal("--quiet", "evaluate", syn, "--data-root", root, *EVAL_ARGS)
    assert status == 0, text
    assert not BAR.search(text) and "network 1/2" not in text
    assert frames(text)[-1].split()[0] == "convnet_w32"


def test_distill_in_a_terminal_ends_with_its_summary(fake_run, tmp_path):
    """A verbose run with an evaluation: bars, INFO lines, then the summary lines last; the run's
    per-iteration losses are in distill.log only."""
    root, _ = fake_run
    out = tmp_path / "run"
    status, text = run_in_terminal("-v", "distill", "--data-root", root, "--out", out, "--method", "dm", "--ipc", 1,
                                   "--iterations", 12, "--num-eval", 1, "--eval-epochs", 2, "--batch-real", 4,
                                   "--model", "convnet_w32")
    assert status == 0, text
    shown = frames(text)
    assert any(BAR.search(f) and "/12 " in f for f in shown), shown  # the optimisation's bar
    assert any(BAR.search(f) and "evaluation network 1/1" in f for f in shown), shown  # then the evaluation's
    assert any(f.startswith("evaluation network 1 of 1: test accuracy") for f in shown), shown  # -v: INFO
    summary = [i for i, f in enumerate(shown) if f.startswith("distilled mnist with dm")]
    assert len(summary) == 1 and shown[summary[0] + 1].startswith("test accuracy (convnet_w32, 1 models, 2 epochs, protocol ours)")
    assert shown[summary[0] + 2].startswith("wrote ") and len(shown) == summary[0] + 3, shown[summary[0]:]
    assert not re.search(r"iteration \d+ loss", text)
    log = (out / "distill.log").read_text()
    assert "INFO iteration 1 loss " in log and "INFO iteration 12 loss " in log


# ------------------------------------------------------------------------------ not in a terminal
def test_no_bar_when_output_is_not_a_terminal(fake_run):
    root, syn = fake_run
    result = run("evaluate", syn, "--data-root", root, *EVAL_ARGS)
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert not BAR.search(result.output) and "network 1/2" not in result.output
    assert result.stderr == ""  # default verbosity: no INFO line either
    assert result.stdout.splitlines()[2].split()[0] == "convnet_w32"


def test_distill_stdout_ends_with_the_summary(fake_run, tmp_path):
    root, _ = fake_run
    out = tmp_path / "run"
    result = run("distill", "--data-root", root, "--out", out, "--method", "dm", "--ipc", 1, "--iterations", 20,
                 "--num-eval", 1, "--eval-epochs", 1, "--batch-real", 4, "--model", "convnet_w32")
    assert result.exit_code == 0, result.output + repr(result.exception)
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["distilled", "test", "wrote"], lines
    assert lines[-1] == f"wrote {out}/synthetic.safetensors, synthetic.png, init.png, metrics.json"
    assert "loss" not in result.output and result.stderr == ""
    assert (out / "distill.log").read_text().count(" loss ") == 20


def test_verbose_shows_info_lines_and_quiet_only_warnings(fake_run, tmp_path):
    root, syn = fake_run
    verbose = run("-v", "evaluate", syn, "--data-root", root, *EVAL_ARGS)
    assert verbose.exit_code == 0, verbose.output + repr(verbose.exception)
    info = verbose.stderr.splitlines()
    assert [line.split(":")[0] for line in info] == ["convnet_w32 network 1 of 2", "convnet_w32 network 2 of 2"], info
    assert all("test accuracy" in line for line in info)
    assert "network 1 of 2" not in verbose.stdout  # the results stay alone on stdout
    baseline = run("--verbose", "baseline", "--data-root", root, "--epochs", 2, "--model", "convnet_w32",
                   "--out", tmp_path / "base")
    assert baseline.exit_code == 0 and "epoch 2: train accuracy" in baseline.stderr, baseline.output
    quiet = run("--quiet", "baseline", "--data-root", root, "--epochs", 1, "--model", "convnet_w32",
                "--out", tmp_path / "base")
    assert quiet.exit_code == 0 and quiet.stderr == "" and "whole data" in quiet.stdout, quiet.output


def test_resume_notices_are_shown_at_every_verbosity(fake_run, tmp_path):
    root, _ = fake_run
    args = ["distill", "--data-root", root, "--out", tmp_path / "run", "--method", "dm", "--ipc", 1, "--iterations",
            3, "--num-eval", 0, "--batch-real", 4, "--model", "convnet_w32", "--keep-checkpoint",
            "--checkpoint-every", 1]
    assert run(*args).exit_code == 0
    again = run("--quiet", *args)
    assert again.exit_code == 0, again.output
    assert again.stderr.startswith("resuming from iteration 3"), again.stderr


def test_version_and_verbosity_options_are_on_the_group():
    assert run("--version").stdout.strip() == f"datadistill, version {__version__}"
    text = run("--help").stdout
    assert "-v, --verbose" in text and "--quiet" in text


def test_no_bar_off_rank_0(monkeypatch):
    monkeypatch.setenv("RANK", "1")
    assert cli_progress.bars_on() is False and not cli_progress.main_process()
    monkeypatch.setenv("RANK", "0")
    assert cli_progress.bars_on() is None  # tqdm decides: drawn on a terminal only
    assert cli_progress.bars_on(quiet=True) is False


# ------------------------------------------------------------------------- the library's progress
def _set() -> SyntheticSet:
    gen = torch.Generator().manual_seed(0)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    return SyntheticSet(torch.randn(6, 1, 28, 28, generator=gen), labels, metadata={"num_classes": 3})


@pytest.mark.parametrize("vectorise", [False, True])
def test_evaluation_progress_changes_no_result(tiny_dataset, tiny_model, vectorise):
    """The same networks, bit for bit, with or without on_epoch; one report per epoch and network
    (all K at once when vectorised) and a last one per network with its test accuracy."""
    settings = EvalSettings(model=TINY_MODEL, num_eval=2, epochs=3, batch_size=4, vectorise=vectorise)
    runs = []
    for watch in (None, []):
        weights = {}
        result = evaluate_synthetic_set(_set(), tiny_dataset.test, settings, CPU, seed=5,
                                        on_model=lambda k, net: weights.update({k: net.state_dict()}),
                                        on_epoch=None if watch is None else watch.append)
        runs.append((result, weights, watch))
    (plain, plain_weights, _), (watched, watched_weights, events) = runs
    assert watched.vectorised is vectorise
    assert watched.accuracies == plain.accuracies and watched.train_accuracies == plain.train_accuracies
    for k in plain_weights:
        assert all(torch.equal(plain_weights[k][n], watched_weights[k][n]) for n in plain_weights[k])
    assert all(isinstance(e, EvalProgress) and e.model == TINY_MODEL and e.num_eval == 2 for e in events)
    epochs = [e for e in events if e.test_accuracy is None]
    if vectorise:
        assert [(e.networks, e.epoch) for e in epochs] == [(range(0, 2), n) for n in (1, 2, 3)]
    else:
        assert [(e.networks, e.epoch) for e in epochs] == [(range(k, k + 1), n) for k in (0, 1) for n in (1, 2, 3)]
    assert all(0.0 <= e.train_accuracy <= 100.0 for e in epochs)
    last = [e for e in events if e.test_accuracy is not None]
    assert [e.test_accuracy for e in last] == watched.accuracies and all(e.epoch == 3 and not e.reused for e in last)


def test_eval_bar_positions(monkeypatch):
    """Network k's epoch e of one key is at k·E + e; K networks trained together advance K at a time;
    a reused network jumps without counting in the rate; a second key starts after the first."""
    bar = cli_progress.EvalBar(["a", "b"], 2, 3)
    moves = []
    monkeypatch.setattr(bar.bar, "goto", lambda n, desc, postfix, step, skip: moves.append((n, desc, step, skip)))
    bar("a", EvalProgress("m", range(0, 1), 2, 2, 3, 50.0))
    bar("a", EvalProgress("m", range(1, 2), 2, 3, 3, 60.0, 40.0, reused=True))
    bar("b", EvalProgress("m", range(0, 2), 2, 1, 3, 50.0))
    assert moves == [(2, "a network 1/2", 1, False), (6, "a network 2/2", 1, True), (8, "b networks 1–2/2", 2, False)]
