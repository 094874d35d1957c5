"""Expert trajectories on disk: every epoch written (no temporary files), a killed run resumed to the
uninterrupted trajectories, settings checked against the folder's, ExpertBuffer loading and its errors,
and the distillers' checks of the experts they are given (epochs, model, presence)."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import torch

import datadistill.io.tensor_file as tensor_file_mod
import datadistill.trajectory.experts as experts_mod
from datadistill.data import SplitDataset
from datadistill.errors import ConfigError, TrajectoryFileError
from datadistill.models import build_model
from datadistill.trajectory import ExpertBuffer, train_experts
from helpers import DSA_ON, make_distiller
from trajectory_helpers import CPU, distiller, epoch_file, expert_settings, files_under, read_epoch, small_args


def test_train_experts_writes_every_epoch(experts, tiny_model):
    expected = ["experts.json"] + [f"expert_{k:03d}/epoch_{e:03d}.safetensors" for k in range(2) for e in range(5)]
    assert files_under(experts) == sorted(expected)  # no temporary files left behind
    manifest = json.loads((experts / "experts.json").read_text())
    assert manifest["dataset"] == "tiny" and manifest["model"] == tiny_model
    assert manifest["settings"]["epochs"] == 4 and manifest["preprocessing"]["zca_eps"] is None
    for k in range(2):
        for e in range(5):
            tensors, meta = read_epoch(epoch_file(experts, k, e))
            assert meta["expert"] == k and meta["epoch"] == e and "__rng_state__" in tensors
            assert (meta["test_accuracy"] is None) == (e == 0)
    a, _ = read_epoch(epoch_file(experts, 0, 0))
    b, _ = read_epoch(epoch_file(experts, 0, 1))
    c, _ = read_epoch(epoch_file(experts, 1, 0))
    assert not torch.equal(a["classifier.weight"], b["classifier.weight"])  # training moves the weights
    assert not torch.equal(a["classifier.weight"], c["classifier.weight"])  # expert k uses seed + k


def assert_same_folders(a: Path, b: Path) -> None:
    assert files_under(a) == files_under(b)
    for name in files_under(a):
        if not name.endswith(".safetensors"):
            continue
        ta, ma = read_epoch(a / name)
        tb, mb = read_epoch(b / name)
        assert ta.keys() == tb.keys(), name
        for k in ta:
            assert torch.equal(ta[k], tb[k]), (name, k)
        assert ma == mb, name


class Killed(RuntimeError):
    pass


# src/datadistill/trajectory/experts.py, train_experts: the resume loop is
# ``for epoch in range(done + 1 if done >= 0 else 0, settings.epochs)`` where ``done`` is the last epoch FILE on
# disk (files 0 … done = ``done`` epochs trained) and training epoch ``epoch`` (0-based) writes file ``epoch + 1``.
# Resuming therefore skips one training epoch: with files 0 … 2 it trains only epoch 3 and writes its parameters
# (3 epochs of training) as epoch_004, epoch_003 is never written; with files 0 … 3 it trains nothing and the
# expert never finishes. Expected ``range(max(done, 0), settings.epochs)``.

@pytest.mark.parametrize("kill_at", [
    pytest.param(0, id="expert0_epoch0"),
    pytest.param(5, id="expert1_epoch0"),
    pytest.param(1, id="expert0_epoch1"),
    pytest.param(3, id="expert0_epoch3"),
    pytest.param(7, id="expert1_epoch2"),
    pytest.param(9, id="expert1_epoch4"),
])
def test_killed_run_resumes_to_the_uninterrupted_trajectories(tiny_dataset, tiny_model, tmp_path, monkeypatch,
                                                              kill_at):
    """Kill the run while it writes its ``kill_at``-th epoch file (0-based, expert 0's five files first)."""
    # momentum and DSA on: the resume must restore the momentum buffers and the shuffle/augmentation stream
    settings = expert_settings(tiny_model, momentum=0.9, dsa_strategy=DSA_ON)
    full = train_experts(tiny_dataset, tmp_path / "full", settings, CPU)
    real_save = tensor_file_mod.save_file
    calls = []

    def dying(tensors, path, metadata=None):
        calls.append(path)
        if len(calls) == kill_at + 1:
            Path(path).write_bytes(b"half a file")
            raise Killed("killed while writing")
        return real_save(tensors, path, metadata=metadata)

    monkeypatch.setattr(tensor_file_mod, "save_file", dying)
    killed = tmp_path / "killed"
    with pytest.raises(Killed):
        train_experts(tiny_dataset, killed, settings, CPU)
    left = [f for f in files_under(killed) if f != "experts.json"]  # whole epochs only, no temporary file
    assert len(left) == kill_at and all(f.endswith(".safetensors") and "/epoch_" in f for f in left)
    monkeypatch.setattr(tensor_file_mod, "save_file", real_save)
    train_experts(tiny_dataset, killed, settings, CPU)
    assert_same_folders(full, killed)


def test_resume_after_losing_the_last_epochs(experts, tiny_dataset, tiny_model, tmp_path):
    reference = tmp_path / "reference"
    shutil.copytree(experts, reference)
    for k, e in [(0, 4), (1, 3), (1, 4)]:
        epoch_file(experts, k, e).unlink()
    train_experts(tiny_dataset, experts, expert_settings(tiny_model), CPU)
    assert_same_folders(reference, experts)


def test_finished_folder_is_not_retrained(experts, tiny_dataset, tiny_model, monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("a finished epoch was written again")

    monkeypatch.setattr(experts_mod, "_save_epoch", fail)
    assert train_experts(tiny_dataset, experts, expert_settings(tiny_model), CPU) == experts


@pytest.mark.parametrize("change", [{"lr": 0.02}, {"epochs": 5}, {"seed": 1}, {"num_experts": 3}, {"zca_eps": 0.1},
                                   {"model": "convnet"}, {"dataset": "other"}])
def test_other_settings_in_the_same_folder_raise(experts, tiny_dataset, tiny_model, change):
    change = dict(change)
    model = change.pop("model", tiny_model)
    data = tiny_dataset
    if "dataset" in change:
        spec = dataclasses.replace(tiny_dataset.spec, name=change.pop("dataset"))
        data = SplitDataset(spec, tiny_dataset.train, tiny_dataset.test)
    manifest = (experts / "experts.json").read_text()
    before = files_under(experts)
    with pytest.raises(ConfigError, match="holds experts with other settings"):
        train_experts(data, experts, expert_settings(model, **change), CPU)
    assert (experts / "experts.json").read_text() == manifest and files_under(experts) == before


def test_expert_buffer_load_reads_the_trajectories(experts, tiny_dataset, tiny_model):
    net = build_model(tiny_model, 1, 3, (28, 28))
    names = [n for n, _ in net.named_parameters()]
    buf = ExpertBuffer.load(experts, names)
    assert buf.num_experts == 2 and buf.epochs == 4 and all(len(t) == 5 for t in buf.trajectories)
    for k in range(2):
        for e in range(5):
            tensors, meta = read_epoch(epoch_file(experts, k, e))
            assert list(buf.trajectories[k][e]) == names
            for n in names:
                assert torch.equal(buf.trajectories[k][e][n], tensors[n])
            assert buf.test_accuracy[k][e] == meta["test_accuracy"]
    everything = ExpertBuffer.load(experts)
    assert set(everything.trajectories[0][0]) == set(net.state_dict())  # no RNG or optimiser state
    # an unfinished expert (killed, or still training) is left out; the finished one is complete
    epoch_file(experts, 0, 4).unlink()
    partial = ExpertBuffer.load(experts, names)
    assert partial.num_experts == 1 and partial.epochs == 4
    for n in names:
        assert torch.equal(partial.trajectories[0][4][n], buf.trajectories[1][4][n])


def test_expert_buffer_load_errors(experts, tmp_path):
    with pytest.raises(TrajectoryFileError, match="experts.json"):
        ExpertBuffer.load(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(TrajectoryFileError, match="experts.json"):
        ExpertBuffer.load(tmp_path / "empty")
    # a manifest but no finished epoch (only the initial parameters)
    only_start = tmp_path / "only_start"
    only_start.mkdir()
    shutil.copy(experts / "experts.json", only_start / "experts.json")
    with pytest.raises(TrajectoryFileError):
        ExpertBuffer.load(only_start)
    epoch_file(only_start, 0, 0).parent.mkdir()
    shutil.copy(epoch_file(experts, 0, 0), epoch_file(only_start, 0, 0))
    with pytest.raises(TrajectoryFileError, match="finished"):
        ExpertBuffer.load(only_start)
    # a trajectory lacking a parameter the student has
    with pytest.raises(TrajectoryFileError, match="lacks"):
        ExpertBuffer.load(experts, ["features.0.weight", "no_such.weight"])
    # foreign manifest, broken manifest
    foreign = tmp_path / "foreign"
    shutil.copytree(experts, foreign)
    (foreign / "experts.json").write_text(json.dumps({"format": "something else"}))
    with pytest.raises(TrajectoryFileError, match="format"):
        ExpertBuffer.load(foreign)
    (foreign / "experts.json").write_text("{not json")
    with pytest.raises(TrajectoryFileError):
        ExpertBuffer.load(foreign)
    # a corrupt epoch file
    epoch_file(experts, 1, 2).write_bytes(b"garbage")
    with pytest.raises(TrajectoryFileError, match="epoch_002"):
        ExpertBuffer.load(experts)


def test_check_compatible(experts, tiny_model):
    buf = ExpertBuffer.load(experts)
    buf.check_compatible("tiny", tiny_model, None)
    for dataset, model, zca_eps, needle in [("mnist", tiny_model, None, "tiny"), ("tiny", "convnet", None, "model"),
                                            ("tiny", tiny_model, 0.1, "ZCA")]:
        with pytest.raises(ConfigError, match=needle):
            buf.check_compatible(dataset, model, zca_eps)


@pytest.mark.parametrize("method", ["mtt", "datm", "pad"])
def test_start_plus_expert_epochs_must_fit_the_experts(experts, tiny_dataset, method):
    distiller(method, tiny_dataset, experts, max_start_epoch=2, expert_epochs=2)  # 2 + 2 = 4 epochs: fits
    with pytest.raises(ConfigError, match="exceeds"):
        distiller(method, tiny_dataset, experts, max_start_epoch=3, expert_epochs=2)


def test_mtt_needs_experts(tiny_dataset, tiny_model, tmp_path):
    with pytest.raises(ConfigError, match="expert"):
        make_distiller("mtt", tiny_dataset, **small_args("mtt"))  # experts = ""
    (tmp_path / "empty").mkdir()
    with pytest.raises(TrajectoryFileError):
        distiller("mtt", tiny_dataset, tmp_path / "empty")


def test_mtt_refuses_experts_of_another_model(experts, tiny_dataset):
    with pytest.raises(ConfigError, match="model"):
        distiller("mtt", tiny_dataset, experts, model="convnet")
